"""What the VAE trainer shows: a loss-curve PNG and validation reconstructions (wav + PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from instructme.audio import save
from instructme.fileio import atomic_path
from instructme.metrics.codec import LogMel, multiscale_mel_distance
from instructme.training.plots import plot_losses

#: Loss terms plotted, if present in the log.
CURVES = ("mel", "stft", "kl", "adv", "fm", "disc", "val_mel")


def plot_vae_losses(log_path: Path, png_path: Path) -> None:
    """The VAE's loss terms (:data:`CURVES`) against the step."""
    plot_losses(log_path, png_path, CURVES)


@torch.no_grad()
def save_reconstructions(vae: torch.nn.Module, clips: list[tuple[str, np.ndarray]],
                         out_dir: Path) -> float:
    """Round-trip each clip ``x[N]`` (latent means), write ``<name>.wav``, ``<name>-ref.wav``
    and ``spectrograms.png`` (reference above reconstruction); returns the mean multi-scale
    mel distance."""
    sr = vae.config.sample_rate
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    pairs, dists = [], []
    for name, x in clips:
        y = vae(torch.from_numpy(x)[None].to(device), sample=False)[0][0, 0].cpu().numpy()
        save(out_dir / f"{name}.wav", np.clip(y, -1, 1), sr)
        save(out_dir / f"{name}-ref.wav", np.clip(x, -1, 1), sr)
        dists.append(multiscale_mel_distance(x, y, sr))
        pairs.append((name, x, y))
    vae.train(was_training)
    if pairs:
        _plot_spectrograms(pairs, sr, out_dir / "spectrograms.png")
    return float(np.mean(dists)) if dists else float("nan")


def _plot_spectrograms(pairs: list[tuple[str, np.ndarray, np.ndarray]], sr: int,
                       png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logmel = LogMel(sr, 1024)
    fig, axes = plt.subplots(2, len(pairs), figsize=(4 * len(pairs), 5), squeeze=False)
    for j, (name, x, y) in enumerate(pairs):
        for i, (sig, label) in enumerate(((x, "reference"), (y, "reconstruction"))):
            m = logmel(torch.from_numpy(np.ascontiguousarray(sig, dtype=np.float32))).numpy()
            axes[i, j].imshow(m, origin="lower", aspect="auto", vmin=-5, vmax=1, cmap="magma")
            axes[i, j].set_title(f"{name} {label}", fontsize=8)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=70)
    plt.close(fig)
