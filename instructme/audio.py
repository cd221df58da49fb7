"""Audio I/O: load anything libsndfile reads, resample (soxr), downmix, normalise, save.

All loaders return ``float32`` arrays. Mono audio is ``[N]``; multichannel is ``[C, N]``.
Bad files raise :class:`~instructme.errors.AudioError` with a one-line message naming the
file and the problem; the CLI turns that into ``error: ...`` and a non-zero exit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from instructme.config import SAMPLE_RATE
from instructme.errors import AudioError
from instructme.fileio import atomic_path

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 8
#: Peak that :func:`peak_safe` scales down to (about -1 dBFS).
SAFE_PEAK = 0.891


@dataclass
class AudioInfo:
    """What was read from the file, before resampling and downmixing."""

    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read the header of an audio file and check it is usable (not the samples)."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file")
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(f"{p}: not a readable audio file ({_short(e)})") from None
    if not (MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE):
        raise AudioError(f"{p}: absurd sample rate {info.samplerate} Hz")
    if info.channels < 1 or info.channels > MAX_CHANNELS:
        raise AudioError(f"{p}: {info.channels} channels (at most {MAX_CHANNELS} are supported)")
    if info.frames == 0:
        raise AudioError(f"{p}: audio is empty (zero length)")
    return AudioInfo(str(p), info.samplerate, info.channels, info.frames)


def load(
    path: str | os.PathLike[str],
    sample_rate: int | None = SAMPLE_RATE,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Load audio, optionally a segment, resampled to ``sample_rate`` (None keeps the file's).

    Returns ``(x, sr)`` with ``x: [N]`` when ``mono`` else ``x: [C, N]`` (float32).
    """
    info = probe(path)
    start = int(round(offset * info.sample_rate))
    stop = None if duration is None else start + int(round(duration * info.sample_rate))
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{path}: could not decode audio ({_short(e)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio is empty (zero length)")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    x = data.T  # [C, N]
    if mono:
        x = x.mean(axis=0)
    if sample_rate is not None and sr != sample_rate:
        x = resample(x, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(x, dtype=np.float32), sr


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``x: [N]`` or ``[C, N]`` with soxr (high quality)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)
    return soxr.resample(x.T, sr_in, sr_out, quality="HQ").T.astype(np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    """``[C, N] -> [N]`` by averaging channels; ``[N]`` passes through."""
    return x if x.ndim == 1 else x.mean(axis=0)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (``-inf`` guarded to -120 dB)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-6))


def normalize_rms(x: np.ndarray, target_db: float = -20.0) -> np.ndarray:
    """Scale ``x`` to the given RMS level (silence is returned unchanged)."""
    level = rms_db(x)
    if level <= -119.0:
        return x
    return (x * 10.0 ** ((target_db - level) / 20.0)).astype(np.float32)


def peak_safe(x: np.ndarray, peak: float = SAFE_PEAK) -> np.ndarray:
    """Scale down (never up) so that ``max|x| <= peak``."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return x if m <= peak else (x * (peak / m)).astype(np.float32)


def save(path: str | os.PathLike[str], x: np.ndarray, sample_rate: int,
         subtype: str | None = None) -> Path:
    """Write ``x: [N]`` or ``[C, N]`` atomically (format from the suffix: .wav, .flac, .ogg)."""
    path = Path(path)
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    data = x.T if x.ndim == 2 else x
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported output format (use .wav, .flac or .ogg)")
    if subtype is None:
        subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
    return path


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__
