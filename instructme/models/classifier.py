"""Instrument-activity and style classifier: the judge of instruction accuracy, and FAD's embedding.

InstructME (arXiv 2308.14360, evaluation metrics) scores edits by whether the instruction was
carried out (add X: X present, remove X: X absent, extract X: only X, replace X with Y,
remix to a style) and by Fréchet audio distance. No pretrained audio tagger loads offline
here, so this model is trained on the project's rendered stems: a multi-label head over
:data:`~instructme.vocab.INSTRUMENT_CLASSES` (which classes sound in a clip) and a
single-label head over the arranger styles. Its penultimate layer is the FAD embedding.

Architecture (a small PANN-style CNN): log-mel spectrogram
(:class:`~instructme.models.features.LogMelSpectrogram`) -> minus its per-clip mean (gain
invariance) -> per-band batch norm -> conv
blocks (2x [3x3 conv, BN, ReLU], 2x2 average pool) -> mean over mel bands -> mean + max over
time -> linear ``embed_dim`` (the embedding) -> ReLU, dropout -> two linear heads.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from instructme.config import SAMPLE_RATE, Config
from instructme.models.features import LogMelSpectrogram
from instructme.vocab import INSTRUMENT_CLASSES, STYLES


def default_styles() -> tuple[str, ...]:
    """The arranger's styles (the remix vocabulary, :data:`instructme.vocab.STYLES`)."""
    return STYLES


@dataclasses.dataclass
class ClassifierConfig(Config):
    """Classifier hyper-parameters; ``instruments``/``styles`` name the head outputs."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop: int = 320  # 50 frames/s
    n_mels: int = 64
    fmin: float = 30.0
    fmax: float = 8000.0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    embed_dim: int = 128
    dropout: float = 0.2
    instruments: tuple[str, ...] = INSTRUMENT_CLASSES
    styles: tuple[str, ...] = STYLES
    #: Per-instrument presence thresholds calibrated on validation mixes
    #: (``instructme eval classifier --calibrate``); None: 0.5 for every class.
    thresholds: tuple[float, ...] | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(n_fft=512, n_mels=32, channels=(8, 16), embed_dim=32, dropout=0.0),
        "small": dict(),
        "large": dict(n_mels=128, channels=(32, 64, 128, 256, 512), embed_dim=512),
    }


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.AvgPool2d(2, ceil_mode=True),
    )


class InstrumentClassifier(nn.Module):
    """Audio ``[B, N]`` -> instrument logits ``[B, K]`` and style logits ``[B, S]``."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = LogMelSpectrogram(config.sample_rate, config.n_fft, config.hop,
                                          config.n_mels, config.fmin, config.fmax)
        self.bn0 = nn.BatchNorm1d(config.n_mels)
        chans = (1, *config.channels)
        self.cnn = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.fc = nn.Linear(2 * chans[-1], config.embed_dim)
        self.drop = nn.Dropout(config.dropout)
        self.instrument_head = nn.Linear(config.embed_dim, len(config.instruments))
        self.style_head = nn.Linear(config.embed_dim, max(len(config.styles), 1))

    @property
    def instrument_names(self) -> tuple[str, ...]:
        return tuple(self.config.instruments)

    @property
    def style_names(self) -> tuple[str, ...]:
        return tuple(self.config.styles)

    @property
    def thresholds(self) -> np.ndarray:
        """Presence thresholds ``[K]`` (calibrated ones, else 0.5 for every class)."""
        t = self.config.thresholds
        if t is None:
            return np.full(len(self.config.instruments), 0.5)
        if len(t) != len(self.config.instruments):
            raise ValueError(f"{len(t)} thresholds for {len(self.config.instruments)} classes")
        return np.asarray(t, dtype=np.float64)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` -> penultimate-layer embedding ``[B, D]`` (differentiable)."""
        h = self.frontend(x)  # [B, M, T] log-mel
        h = self.bn0(h - h.mean(dim=(1, 2), keepdim=True))  # per-clip level removed
        h = self.cnn(h.unsqueeze(1))  # [B, C, M', T']
        h = h.mean(dim=2)  # [B, C, T']
        h = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)  # [B, 2C]
        return self.fc(h)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x: [B, N]`` -> ``{"instruments": [B, K] logits, "style": [B, S] logits,
        "embedding": [B, D]}``."""
        e = self.embedding(x)
        h = self.drop(torch.relu(e))
        return {"instruments": self.instrument_head(h), "style": self.style_head(h),
                "embedding": e}

    def _device(self) -> torch.device:
        return self.fc.weight.device

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x: [B, N]`` -> ``{"instruments": [B, K] probabilities (independent sigmoids),
        "style": [B, S] probabilities (softmax)}``."""
        was = self.training
        self.eval()
        try:
            out = self(x.to(self._device()))
        finally:
            self.train(was)
        return {"instruments": torch.sigmoid(out["instruments"]),
                "style": torch.softmax(out["style"], dim=-1)}

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` -> FAD embedding ``[B, D]`` (eval mode)."""
        was = self.training
        self.eval()
        try:
            return self.embedding(x.to(self._device()))
        finally:
            self.train(was)
