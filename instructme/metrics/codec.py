"""Codec fidelity metrics and the Opus reference codec.

The fidelity budget (``docs/ARCHITECTURE.md``) defines the yardstick the VAE (the latent
space of InstructME, arXiv 2308.14360, VAE E/D) is held to: the **multi-scale log-mel
distance** — for STFT sizes 512, 1024 and 2048 (hop n/4, Hann window, centred frames), 80
mel bands (Slaney scale and area normalisation, librosa's default filters, 0 Hz to Nyquist)
applied to the STFT *magnitude*, the L1 distance of ``log10(mel + 1e-5)`` averaged over
bands and frames, then averaged over the three sizes. :class:`LogMel` computes the same
features differentiably for the training loss. Also here: multi-resolution STFT distance
(``auraloss``), SI-SDR, and an Opus round trip through ``ffmpeg``/libopus.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import auraloss
import librosa
import numpy as np
import soundfile as sf
import torch
from torch import nn

from instructme.errors import DependencyError
from instructme.metrics.pairs import tensor_pair
from instructme.metrics.phase import bass_phase_distance

#: The fidelity metric's STFT sizes and mel bands.
MEL_FFT_SIZES: tuple[int, ...] = (512, 1024, 2048)
MEL_BANDS = 80
MEL_FLOOR = 1e-5
#: Frequency bands (Hz) of :func:`mel_distance_by_band`; the last edge is cut at Nyquist.
BAND_EDGES: tuple[float, ...] = (0.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)


class LogMel(nn.Module):
    """``x: [B, N]`` -> ``log10(mel(|STFT(x)|) + 1e-5)``: ``[B, n_mels, frames]`` (one scale)."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int = MEL_BANDS) -> None:
        super().__init__()
        self.n_fft = n_fft
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0,
                                 fmax=sample_rate / 2, htk=False, norm="slaney", dtype=np.float32)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)  # [n_mels, F]
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag = torch.stft(x, self.n_fft, self.n_fft // 4, window=self.window, center=True,
                         return_complex=True).abs()
        return torch.log10(torch.matmul(self.fb, mag) + MEL_FLOOR)


class MultiScaleMelDistance(nn.Module):
    """Mean over scales of L1(log-mel(est), log-mel(ref)); ``[B, N]`` pairs -> scalar.

    With the default sizes and bands this is exactly the fidelity metric; the trainer
    also uses it (plus extra scales) as its reconstruction loss.
    """

    def __init__(self, sample_rate: int, fft_sizes: Sequence[int] = MEL_FFT_SIZES,
                 n_mels: Sequence[int] | int = MEL_BANDS, low_weight: float = 1.0,
                 low_hz: float = 500.0) -> None:
        super().__init__()
        bands = [n_mels] * len(fft_sizes) if isinstance(n_mels, int) else list(n_mels)
        self.scales = nn.ModuleList([LogMel(sample_rate, n, m) for n, m in zip(fft_sizes, bands)])
        # Per-band weights (all 1 for the metric): ``low_weight`` for bands centred under
        # ``low_hz``, as a training loss that spends more of the model on the bass.
        for i, m in enumerate(bands):
            w = np.where(mel_band_centres(sample_rate, m) < low_hz, low_weight, 1.0)
            self.register_buffer(f"weight{i}", torch.tensor(w, dtype=torch.float32)[:, None],
                                 persistent=False)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        terms = [((s(est) - s(ref)).abs() * getattr(self, f"weight{i}")).mean()
                 for i, s in enumerate(self.scales)]
        return torch.stack(terms).mean()


def multiscale_mel_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """The fidelity metric for mono ``ref, est: [N]`` (lower is better)."""
    r, e = tensor_pair(ref, est)
    with torch.no_grad():
        return float(MultiScaleMelDistance(sample_rate)(e, r))


def mel_band_centres(sample_rate: int, n_mels: int = MEL_BANDS) -> np.ndarray:
    """Centre frequencies (Hz) ``[n_mels]`` of :class:`LogMel`'s Slaney filters."""
    return librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=sample_rate / 2)[1:-1]


def mel_distance_by_band(ref: np.ndarray, est: np.ndarray, sample_rate: int,
                         edges: Sequence[float] = BAND_EDGES) -> dict[str, float]:
    """The fidelity metric split by frequency: for each band ``[lo, hi)`` of ``edges``, the
    L1 log-mel distance over the mel bands whose centre lies in it (mean over bands and
    frames, then over the three STFT sizes). Keys ``"lo-hi"`` in Hz; the bands' mean,
    weighted by their mel-band counts, is :func:`multiscale_mel_distance`."""
    r, e = tensor_pair(ref, est)
    centres = mel_band_centres(sample_rate)
    top = sample_rate / 2
    bands = [(lo, min(hi, top)) for lo, hi in zip(edges[:-1], edges[1:]) if lo < top]
    bands[-1] = (bands[-1][0], top + 1.0)  # the last band keeps the top mel band
    out: dict[str, list[float]] = {}
    with torch.no_grad():
        for n_fft in MEL_FFT_SIZES:
            scale = LogMel(sample_rate, n_fft)
            err = (scale(e) - scale(r)).abs()[0].mean(dim=-1).numpy()  # [n_mels]
            for lo, hi in bands:
                sel = (centres >= lo) & (centres < hi)
                if sel.any():
                    key = f"{lo:.0f}-{min(hi, top):.0f}"
                    out.setdefault(key, []).append(float(err[sel].mean()))
    return {k: float(np.mean(v)) for k, v in out.items()}


def mrstft_distance(ref: np.ndarray, est: np.ndarray) -> float:
    """``auraloss`` multi-resolution STFT distance (spectral convergence + log magnitude)."""
    r, e = tensor_pair(ref, est)
    loss = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[256, 512, 1024, 2048],
                                                 hop_sizes=[64, 128, 256, 512],
                                                 win_lengths=[256, 512, 1024, 2048])
    with torch.no_grad():
        return float(loss(e[:, None], r[:, None]))


def si_sdr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) of ``est`` against ``ref``."""
    r = np.asarray(ref, dtype=np.float64)
    e = np.asarray(est, dtype=np.float64)[: len(r)]
    r = r - r.mean()
    e = e - e.mean()
    alpha = float(np.dot(e, r) / (np.dot(r, r) + eps))
    target = alpha * r
    noise = e - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


def codec_metrics(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> dict[str, float]:
    """All fidelity numbers for one clip (``bass_if``: :func:`~instructme.metrics.phase.
    bass_phase_distance`)."""
    return {"mel": multiscale_mel_distance(ref, est, sample_rate),
            "mrstft": mrstft_distance(ref, est), "si_sdr": si_sdr(ref, est),
            "bass_if": bass_phase_distance(ref, est, sample_rate)}


def opus_roundtrip(x: np.ndarray, sample_rate: int, kbps: float) -> np.ndarray:
    """Encode ``x: [N]`` with libopus at ``kbps`` and decode it back (same length, same rate)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DependencyError("ffmpeg is not installed (needed for the Opus reference)")
    with tempfile.TemporaryDirectory(prefix="instructme-opus-") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "enc.ogg"), Path(tmp, "dec.wav")
        sf.write(str(src), np.asarray(x, dtype=np.float32), sample_rate, subtype="FLOAT")
        for cmd in (
            [ffmpeg, "-y", "-loglevel", "error", "-i", str(src), "-c:a", "libopus",
             "-b:a", f"{kbps}k", str(enc)],
            [ffmpeg, "-y", "-loglevel", "error", "-i", str(enc), "-ar", str(sample_rate),
             "-ac", "1", "-c:a", "pcm_f32le", str(dec)],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                msg = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
                raise DependencyError(f"ffmpeg/libopus failed: {msg}")
        y, _ = sf.read(str(dec), dtype="float32")
    y = y[: len(x)]
    return np.pad(y, (0, len(x) - len(y))) if len(y) < len(x) else y
