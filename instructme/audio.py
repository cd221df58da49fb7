"""Audio I/O: load anything libsndfile reads, resample (soxr), downmix, normalise, save.

All loaders return ``float32`` arrays. Mono audio is ``[N]``; multichannel is ``[C, N]``.
Bad files raise :class:`~instructme.errors.AudioError` with a one-line message naming the
file and the problem; the CLI turns that into ``error: ...`` and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
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
    cut = wav_truncation(p)
    if cut is not None:
        declared, present = cut
        full = info.frames * declared / max(present, 1) / info.samplerate
        raise AudioError(f"{p}: truncated WAV file (its header declares {full:.2f} s of audio, "
                         f"the file holds {info.frames / info.samplerate:.2f} s); repair or "
                         "re-export it")
    return AudioInfo(str(p), info.samplerate, info.channels, info.frames)


def wav_truncation(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE file whose ``data`` chunk runs past the
    end of the file (a cut-off download or copy), else None (also for other formats, and for
    the unset sizes 0 and 0xFFFFFFFF of streaming writers). libsndfile reads such files
    silently as the shorter audio; the header says what is missing."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk = f.read(8)
                n = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"data":
                    present = size - pos - 8
                    if n in (0, 0xFFFFFFFF) or n <= present:
                        return None
                    return n, present
                pos += 8 + n + (n & 1)
    except OSError:
        return None
    return None


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
    expected = max(0, min(info.frames, stop if stop is not None else info.frames) - start)
    if data.shape[0] < expected:  # the header promised more than the decoder found
        raise AudioError(f"{path}: truncated or damaged audio (decoded {data.shape[0]} of "
                         f"{expected} frames)")
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
    """Write ``x: [N]`` or ``[C, N]`` atomically (format from the suffix: .wav, .flac, .ogg).

    A failed write (disk full, file size limit, permissions) is a one-line
    :class:`AudioError`; the old file, if any, is left as it was."""
    return save_all([(path, x)], sample_rate, subtype)[0]


def save_all(outputs: Sequence[tuple[str | os.PathLike[str], np.ndarray]], sample_rate: int,
             subtype: str | None = None) -> list[Path]:
    """Write several ``(path, x)`` files all or none: each is written to its temporary file
    first, and only when every one is complete are they renamed into place (a failure
    leaves every destination as it was). One-line :class:`AudioError` on failure."""
    checked = [_checked(Path(path), x) for path, x in outputs]
    paths: list[Path] = []
    current = checked[0][0] if checked else Path()
    try:
        with contextlib.ExitStack() as stack:
            for path, data, fmt in checked:
                current = path
                tmp = stack.enter_context(atomic_path(path))
                st = subtype or {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
                try:
                    sf.write(str(tmp), data, sample_rate, format=fmt, subtype=st)
                except (sf.LibsndfileError, OSError) as e:
                    raise AudioError(f"{path}: could not write ({_write_reason(e)})") from None
                paths.append(path)
    except OSError as e:  # creating the folder or the temporary file, or the final rename
        raise AudioError(f"{current}: could not write ({_write_reason(e)})") from None
    return paths


def _checked(path: Path, x: np.ndarray) -> tuple[Path, np.ndarray, str]:
    """``(path, samples [N] or [N, C], libsndfile format)`` of one output, checked."""
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unsupported output format (use .wav, .flac or .ogg)")
    return path, (x.T if x.ndim == 2 else x), fmt


def _write_reason(e: BaseException) -> str:
    """A short reason for a failed write (libsndfile's "System error." says little)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    msg = _short(e)
    if isinstance(e, sf.LibsndfileError) and "System error" in msg:
        return "system error: disk full, file size limit or permissions?"
    return msg


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__
