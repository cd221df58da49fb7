"""FAD embedders: windowing, the log-mel baseline, callables/classifiers, madmom."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.errors import InstructMEError
from instructme.metrics.embeddings import (
    CallableEmbedding,
    LogMelStatsEmbedding,
    builtin_embedder,
    classifier_embedding,
    frame_windows,
)
from instructme.metrics.fad import fad
from instructme.metrics.madmom_models import madmom_available

SR = 16000


def noise(seconds: float, seed: int, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).normal(size=int(SR * seconds))).astype(np.float32)


def test_frame_windows_shapes():
    assert frame_windows(np.ones(16000, np.float32), SR, 1.0).shape == (1, 16000)
    assert frame_windows(np.ones(40000, np.float32), SR, 1.0).shape == (3, 16000)  # 0.5 s tail
    assert frame_windows(np.ones(35000, np.float32), SR, 1.0).shape == (2, 16000)  # short tail
    short = frame_windows(np.ones(100, np.float32), SR, 1.0)
    assert short.shape == (1, 16000) and short[0, 100:].sum() == 0
    with pytest.raises(InstructMEError):
        frame_windows(np.ones((2, 100), np.float32), SR, 1.0)


def test_logmel_stats_baseline():
    emb = LogMelStatsEmbedding()
    a = emb.embed(noise(3.0, 0), SR)
    assert a.shape == (3, 128) and np.isfinite(a).all()
    assert np.array_equal(a, emb.embed(noise(3.0, 0), SR))  # deterministic
    quiet = emb.embed(noise(3.0, 1, scale=0.001), SR)
    loud = np.concatenate([emb.embed(noise(3.0, s), SR) for s in range(2, 5)])
    same = np.concatenate([emb.embed(noise(3.0, s), SR) for s in range(5, 8)])
    # Same kind of audio is closer than a 40 dB quieter version of it.
    assert fad(loud, same) < fad(loud, quiet)
    assert builtin_embedder("logmel-stats").name == "logmel-stats"
    with pytest.raises(InstructMEError, match="unknown embedding"):
        builtin_embedder("vggish")


def test_callable_embedding_numpy_and_resampling():
    calls = []

    def fn(batch):
        calls.append(batch.shape)
        return np.stack([batch.mean(axis=1), batch.std(axis=1)], axis=1)

    emb = CallableEmbedding(fn, name="stats", sample_rate=8000, window_seconds=0.5, batch_size=3)
    out = emb.embed(noise(2.0, 0), SR)  # resampled to 8 kHz -> 4 windows of 4000
    assert out.shape == (4, 2)
    assert calls == [(3, 4000), (1, 4000)]
    bad = CallableEmbedding(lambda b: np.zeros((1, 2)), name="bad")
    with pytest.raises(InstructMEError, match="expected"):
        bad.embed(noise(3.0, 0), SR)


class _TinyClassifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(1, 4)
        self.config = type("Cfg", (), {"clip_seconds": 0.5, "sample_rate": SR})()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        assert isinstance(x, torch.Tensor) and not torch.is_grad_enabled()
        return self.proj(x.abs().mean(dim=1, keepdim=True))


def test_classifier_embedding_uses_penultimate_callable():
    emb = classifier_embedding(_TinyClassifier())
    assert emb.name == "classifier" and emb.window_seconds == 0.5
    assert emb.embed(noise(2.0, 0), SR).shape == (4, 4)
    with pytest.raises(InstructMEError):
        classifier_embedding(object())


@pytest.mark.skipif(not madmom_available(), reason="madmom (eval extra) not installed")
def test_madmom_chord_embedding():
    emb = builtin_embedder("madmom-cnn-chord")
    x = noise(3.0, 0)
    a = emb.embed(x, SR)
    assert a.shape == (3, 128) and np.isfinite(a).all()
    assert np.array_equal(a, emb.embed(x, SR))  # cached / deterministic
    assert fad(np.concatenate([a, a]), np.concatenate([a, a])) == pytest.approx(0.0, abs=1e-6)
