"""Discriminators for adversarial training of the audio VAE (training only, never shipped).

InstructME's autoencoder (arXiv 2308.14360; VAE encoder E, decoder D) follows latent-diffusion
practice: reconstruction losses plus an adversarial loss with feature matching. Two families:

- :class:`STFTDiscriminator` per resolution (UnivNet / Vocos "MRD"): 2-D convs over
  STFT log-magnitudes at several resolutions; cheap on CPU.
- :class:`PeriodDiscriminator` per period (HiFi-GAN "MPD"): 2-D convs over the waveform folded by a
  period; sharper on periodic structure, costlier.

Each sub-discriminator returns ``(logits, features)``; :class:`Discriminator` concatenates the
lists. Losses (hinge GAN, L1 feature matching) are functions at the bottom of this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from instructme.config import Config

Outputs = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


@dataclasses.dataclass
class DiscriminatorConfig(Config):
    """Which sub-discriminators to build and how wide (empty tuple = family off)."""

    stft_sizes: tuple[int, ...] = (256, 512, 1024)
    periods: tuple[int, ...] = ()
    channels: int = 16

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(stft_sizes=(128, 256), periods=(2, 3), channels=4),
        "small": dict(),
        "large": dict(stft_sizes=(512, 1024, 2048), periods=(2, 3, 5, 7, 11), channels=32),
    }


def _conv_stack(convs: nn.ModuleList, out: nn.Module, h: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack then the output conv: ``(logits [B, *], per-layer features)``."""
    feats = []
    for conv in convs:
        h = F.leaky_relu(conv(h), 0.1)
        feats.append(h)
    h = out(h)
    feats.append(h)
    return h.flatten(1), feats


class STFTDiscriminator(nn.Module):
    """One resolution: ``x: [B, 1, N]`` -> log-magnitude ``[B, 1, T, F]`` -> 2-D conv stack."""

    def __init__(self, n_fft: int, channels: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        ch = channels
        # Strided early (frequency, then time) so that the 2-D stack stays cheap on CPU.
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(2, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(2, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x[:, 0], self.n_fft, self.n_fft // 4, window=self.window,
                          return_complex=True).abs()
        h = torch.log(spec + 1e-5).transpose(1, 2)[:, None]  # [B, 1, T, F]
        return _conv_stack(self.convs, self.out, h)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: ``x: [B, 1, N]`` folded to ``[B, 1, N/p, p]``."""

    def __init__(self, period: int, channels: int) -> None:
        super().__init__()
        self.period = period
        chs = [1, channels, 2 * channels, 4 * channels, 4 * channels]
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(chs[i], chs[i + 1], (5, 1), stride=(3, 1), padding=(2, 0)))
            for i in range(len(chs) - 1)
        ])
        self.out = weight_norm(nn.Conv2d(chs[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, _, n = x.shape
        pad = (-n) % self.period
        h = F.pad(x, (0, pad), mode="reflect" if pad < n else "constant")
        h = h.view(b, 1, -1, self.period)
        return _conv_stack(self.convs, self.out, h)


class Discriminator(nn.Module):
    """All configured sub-discriminators. ``x: [B, 1, N]`` -> ``(logits list, features list)``."""

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        subs: list[nn.Module] = [STFTDiscriminator(n, config.channels) for n in config.stft_sizes]
        subs += [PeriodDiscriminator(p, config.channels) for p in config.periods]
        if not subs:
            raise ValueError("DiscriminatorConfig enables no sub-discriminator")
        self.subs = nn.ModuleList(subs)

    def forward(self, x: torch.Tensor) -> Outputs:
        logits, feats = [], []
        for d in self.subs:
            lo, fe = d(x)
            logits.append(lo)
            feats.append(fe)
        return logits, feats


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss for the discriminator (``fake`` computed from detached audio)."""
    losses = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]
    return torch.stack(losses).mean()


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss for the generator."""
    return torch.stack([F.relu(1 - f).mean() for f in fake]).mean()


def feature_matching_loss(real_feats: list[list[torch.Tensor]],
                          fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean over layers of ``L1(fake, real) / mean|real|`` (real features detached)."""
    terms = []
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            r = r.detach()
            terms.append((f - r).abs().mean() / (r.abs().mean() + 1e-5))
    return torch.stack(terms).mean()
