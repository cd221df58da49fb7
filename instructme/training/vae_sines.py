"""Teach a trained VAE's latents the bass partials: the first stage of adding a sine band.

A VAE without a sinusoidal low band (:mod:`instructme.models.vae_sines`) has latents that
do not say precisely where a held bass note's partials lie: its decoder could not use that
(it draws held notes on the 31.25 Hz latent grid), so training never asked for it. Simply
adding the band and training on (``instructme train vae --init M --sine-slots 45``) teaches
it too slowly: after 1,000 steps with the audio and adversarial losses the sine loss had
gone 3.5 -> 2.1 and held tones 0.60 -> 0.68 (``models/vae-medium/README.md``).

This stage trains only what the sine band depends on, fast and directly: the encoder (with
its new view of the bass), the decoder's latent-rate blocks and the sine head, on the sine
head's peak loss (:func:`~instructme.training.vae.sine_loss`) plus ``keep_weight`` x the
mean squared distance of the latent means from the init's (so the latents change only as
much as the bass needs, and the frame-rate decoder still fits them roughly). No iSTFT, no
discriminator: ~5 steps/s on two CPU threads. The frame-rate decoder then adapts to the
new latents in a second stage, ``instructme train vae --init OUT --freeze-encoder``.

InstructME (arXiv 2308.14360) edits in the latent space of this autoencoder (method
overview, VAE E/D); a new latent space needs its editor retrained.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from instructme.checkpoint import load_model, read_config, save_model
from instructme.dataset.audio_folder import load_audio_folder
from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE
from instructme.models.vae_sines import SinePrediction
from instructme.training.vae import load_init_weights
from instructme.training.vae_data import CropSampler, load_split
from instructme.training.vae_losses import sine_loss

#: Parameter-name prefixes trained in this stage.
TRAINED = ("enc_", "dec_in", "dec_latent", "sine_head")


def train_vae_sines(init: str | Path, data_dir: str | Path, out: str | Path,
                    sine_slots: int = 45, steps: int = 2500, lr: float = 1e-3,
                    keep_weight: float = 1.0, batch_size: int = 8, segment: int = 16384,
                    extra_audio: str | Path | None = None, p_extra: float = 0.5,
                    seed: int = 0, warmup_steps: int = 50, log_every: int = 50,
                    quiet: bool = False) -> dict[str, Any]:
    """Add a ``sine_slots`` sine band to the VAE in ``init`` and train it (see the module
    docstring); writes a loadable VAE folder to ``out``; returns the last log record."""
    out = Path(out)
    if (out / "config.json").exists():
        raise CheckpointError(f"{out} already holds a model; choose another --out")
    source = load_model(AudioVAE, init).eval()
    if source.config.sine_slots and source.config.sine_slots != sine_slots:
        raise CheckpointError(f"{init} already has a sine band of {source.config.sine_slots} "
                              "slots")
    torch.manual_seed(seed)
    vae = AudioVAE(dataclasses.replace(source.config, sine_slots=sine_slots))
    load_init_weights(vae, source)
    for p in source.parameters():
        p.requires_grad_(False)
    trained = [p for n, p in vae.named_parameters() if n.startswith(TRAINED)]
    for n, p in vae.named_parameters():
        p.requires_grad_(n.startswith(TRAINED))
    opt = torch.optim.AdamW(trained, lr=lr)
    sr = vae.config.sample_rate
    extra = load_audio_folder(extra_audio, "train", sr) if extra_audio is not None else None
    sampler = CropSampler(load_split(data_dir, "train", sr), segment, 0.5, seed=seed,
                          extra=extra, p_extra=p_extra if extra else 0.0)
    t0 = time.time()
    record: dict[str, Any] = {}
    sums = {"sine": 0.0, "keep": 0.0}
    for step in range(1, steps + 1):
        x = torch.from_numpy(sampler.batch(batch_size))
        mean, logvar = vae.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        pred = SinePrediction(*vae.sine_head(vae.dec_latent(vae.dec_in(z))))
        l_sine = sine_loss(pred, x, vae.config)
        with torch.no_grad():
            target = source.encode(x)[0]
        keep = (mean - target).pow(2).mean()
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / max(1, warmup_steps))
        opt.zero_grad()
        (l_sine + keep_weight * keep).backward()
        torch.nn.utils.clip_grad_norm_(trained, 10.0)
        opt.step()
        sums["sine"] += float(l_sine.detach())
        sums["keep"] += float(keep.detach())
        if step % log_every == 0 or step == steps:
            n = step % log_every or log_every
            record = {"step": step, "sine": sums["sine"] / n, "keep": sums["keep"] / n,
                      "seconds": round(time.time() - t0, 1)}
            sums = {"sine": 0.0, "keep": 0.0}
            if not quiet:
                print(f"step {step}/{steps}  sine {record['sine']:.3f}  "
                      f"latent shift {record['keep']:.4f}  {record['seconds']:.0f} s",
                      flush=True)
    history = read_config(init).get("_extra", {}).get("history", str(init))
    save_model(vae, out, extra={"history": f"{history}; + a {sine_slots}-slot sine band, "
                                           f"{steps} steps of train vae-sines",
                                "sine_stage": record})
    return record
