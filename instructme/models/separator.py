"""An instruction-conditioned stem separator: one network for every instrument class.

The STFT is split into sub-bands, narrow at low frequencies, and each band's compressed
magnitudes are projected to a ``dim``-vector (the band-split front and back ends of Luo &
Yu, "Music Source Separation with Band-split RNN", 2022). Between them, residual blocks
alternate sequence modelling along time and along the bands. BSRNN's LSTMs cost about
1 MFLOP per band-frame here, several seconds per training step on a 2-core CPU; so time is
modelled with dilated depthwise-separable convolutions (the TCN of Conv-TasNet, Luo &
Mesgarani 2019; dilations 1, 2, 4, ... give a receptive field of seconds), and the bands
are mixed by a learned linear map across them (token mixing of MLP-Mixer, Tolstikhin et al.
2021). The class to separate conditions every block by FiLM, feature-wise affine modulation
from a learned class embedding (as the Conditioned-U-Net of Meseguer-Brocal & Peeters, 2019,
conditions on the instrument), so one model answers "extract the bass" and "remove the
drums" alike. A head per band predicts a ratio mask ``M`` in ``[0, 1]``::

    x [B, N] --STFT--> X [B, F, T] --bands, FiLM(class), TCN + band mixing--> M [B, F, T]
    extracted = iSTFT(M * X),   removed = x - extracted      (they sum to x)

Long inputs: the mask is computed in chunks of frames that overlap and are cross-faded
(:meth:`Separator.mask`), so any length runs in bounded memory. The pipeline applies masks
at the user's own rate and channels (docs/ARCHITECTURE.md, "Tasks").
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from instructme.config import Config
from instructme.models.attention import crossfade_window
from instructme.vocab import INSTRUMENT_CLASSES


def default_band_edges() -> tuple[float, ...]:
    """16 band edges in Hz up to 8 kHz: 100 Hz wide up to 500 Hz, widening above."""
    return (0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0,
            2500.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0)


@dataclasses.dataclass
class SeparatorConfig(Config):
    """Shapes of the band-split separator (see the module docstring)."""

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 256
    band_edges_hz: tuple[float, ...] = dataclasses.field(default_factory=default_band_edges)
    dim: int = 64
    #: Blocks; block ``i`` convolves with dilation ``2 ** (i % 6)``.
    layers: int = 8
    instruments: tuple[str, ...] = INSTRUMENT_CLASSES
    #: Chunked inference: frames per chunk and overlap (cross-faded).
    chunk_frames: int = 625
    overlap_frames: int = 64

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(n_fft=256, hop_length=64, dim=16, layers=2, chunk_frames=64,
                     overlap_frames=16,
                     band_edges_hz=(0.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)),
        "small": dict(),
        "large": dict(n_fft=2048, hop_length=512, dim=128, layers=24),
    }

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


class FiLM(nn.Module):
    """``h * (1 + gamma(e)) + beta(e)`` over the last axis (gamma, beta start at zero)."""

    def __init__(self, embed: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``h: [B, ..., D]``, ``e: [B, E]``."""
        gamma, beta = self.proj(e).chunk(2, dim=-1)
        shape = (e.shape[0],) + (1,) * (h.dim() - 2) + (h.shape[-1],)
        return h * (1 + gamma.view(shape)) + beta.view(shape)


class TimeBlock(nn.Module):
    """Residual dilated depthwise conv along time + pointwise projection, on
    ``h: [B, K, T, D]``."""

    def __init__(self, dim: int, dilation: int, kernel: int = 3) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel - 1) // 2,
                              dilation=dilation, groups=dim)
        self.act = nn.GELU()
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, k, t, d = h.shape
        y = self.norm(h).reshape(b * k, t, d).transpose(1, 2)
        y = self.act(self.conv(y)).transpose(1, 2).reshape(b, k, t, d)
        return h + self.proj(y)


class BandMix(nn.Module):
    """Residual learned linear map across the ``K`` bands of ``h: [B, K, T, D]``."""

    def __init__(self, dim: int, bands: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Linear(bands, bands)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.norm(h).permute(0, 2, 3, 1)  # [B, T, D, K]
        return h + self.mix(y).permute(0, 3, 1, 2)


class Separator(nn.Module):
    """Mask estimator; ``forward(x [B, N], classes [B]) -> extracted [B, N]``."""

    config_class = SeparatorConfig

    def __init__(self, config: SeparatorConfig) -> None:
        super().__init__()
        self.config = c = config
        hz_per_bin = c.sample_rate / c.n_fft
        edges = sorted({min(c.n_bins, round(f / hz_per_bin)) for f in c.band_edges_hz} |
                       {0, c.n_bins})
        self.bands = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        self.embed = nn.Embedding(len(c.instruments), c.dim)
        self.split = nn.ModuleList(nn.Sequential(nn.LayerNorm(b - a), nn.Linear(b - a, c.dim))
                                   for a, b in self.bands)
        self.films = nn.ModuleList(FiLM(c.dim, c.dim) for _ in range(c.layers))
        self.blocks = nn.ModuleList(nn.Sequential(TimeBlock(c.dim, 2 ** (i % 6)),
                                                  BandMix(c.dim, len(self.bands)))
                                    for i in range(c.layers))
        self.heads = nn.ModuleList(nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, 2 * c.dim),
                                                 nn.Tanh(), nn.Linear(2 * c.dim, b - a))
                                   for a, b in self.bands)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)

    def class_index(self, instrument: str) -> int:
        if instrument not in self.config.instruments:
            raise KeyError(instrument)
        return self.config.instruments.index(instrument)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` -> complex ``[B, F, T]``."""
        c = self.config
        return torch.stft(x, c.n_fft, c.hop_length, window=self.window, return_complex=True)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.config
        return torch.istft(spec, c.n_fft, c.hop_length, window=self.window, length=length)

    def _mask(self, mag: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Compressed magnitudes ``[B, F, T]`` -> mask ``[B, F, T]`` in ``[0, 1]``."""
        feats = mag.transpose(1, 2)  # [B, T, F]
        h = torch.stack([proj(feats[..., a:b]) for proj, (a, b) in zip(self.split, self.bands)],
                        dim=1)  # [B, K, T, D]
        e = self.embed(classes)
        for film, block in zip(self.films, self.blocks):
            h = block(film(h, e))
        mask = torch.cat([head(h[:, i]) for i, head in enumerate(self.heads)], dim=-1)
        return torch.sigmoid(mask).transpose(1, 2)

    def mask(self, spec: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Mask of ``spec: complex [B, F, T]`` for ``classes: long [B]``, computed over chunks
        of ``chunk_frames`` frames cross-faded over ``overlap_frames``."""
        c = self.config
        mag = spec.abs()
        scale = mag.pow(2).mean(dim=(1, 2), keepdim=True).clamp_min(1e-10).sqrt()
        mag = (mag / scale).pow(0.5)
        t = mag.shape[-1]
        if t <= c.chunk_frames:
            return self._mask(mag, classes)
        hop = c.chunk_frames - c.overlap_frames
        out = mag.new_zeros(mag.shape)
        weight = mag.new_zeros(t)
        for start in range(0, t - c.overlap_frames, hop):
            end = min(t, start + c.chunk_frames)
            w = crossfade_window(end - start, c.overlap_frames).to(mag)
            out[..., start:end] += self._mask(mag[..., start:end], classes) * w
            weight[start:end] += w
        return out / weight.clamp_min(1e-6)

    def forward(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` (model rate, mono), ``classes: long [B]`` -> extracted ``[B, N]``
        (inputs shorter than one STFT window are zero-padded to it)."""
        n = x.shape[-1]
        padded = nn.functional.pad(x, (0, max(0, self.config.n_fft - n)))
        spec = self.stft(padded)
        return self.istft(self.mask(spec, classes) * spec, padded.shape[-1])[..., :n]
