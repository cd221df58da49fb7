"""Audio I/O: formats, resampling, downmix, and a clear one-line error for every bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from instructme import audio
from instructme.errors import AudioError


def _sine(sr: int, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_load_formats_resample_and_downmix(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    sf.write(path, _sine(44_100, channels=2), 44_100)
    x, sr = audio.load(path)
    assert sr == 16_000 and x.ndim == 1 and x.dtype == np.float32
    assert abs(len(x) - 8000) <= 2
    # A 440 Hz sine survives resampling: its spectrum peaks at 440 Hz.
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * sr / len(x) - 440) < 5


def test_load_keeps_channels_and_segment(tmp_path):
    path = tmp_path / "st.wav"
    sf.write(path, _sine(16_000, seconds=2.0, channels=3), 16_000)
    x, sr = audio.load(path, mono=False, offset=0.5, duration=1.0)
    assert x.shape == (3, 16_000) and sr == 16_000


def _write_raw(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.wav", "file not found"),
        (lambda p: _write_raw(p / "text.wav", b"this is not audio at all"), "not a readable audio"),
        (lambda p: p, "is a folder"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, make, message):
    with pytest.raises(AudioError) as e:
        audio.load(make(tmp_path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_empty_nan_channels_and_rate_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="empty"):
        audio.load(empty)

    nan = tmp_path / "nan.wav"
    x = _sine(16_000)
    x[100] = np.nan
    sf.write(nan, x, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        audio.load(nan)

    many = tmp_path / "many.wav"
    sf.write(many, np.zeros((100, 9), dtype=np.float32), 16_000)
    with pytest.raises(AudioError, match="9 channels"):
        audio.load(many)

    slow = tmp_path / "slow.wav"
    sf.write(slow, np.zeros(100, dtype=np.float32), 100)
    with pytest.raises(AudioError, match="absurd sample rate"):
        audio.load(slow)


def test_save_is_atomic_and_refuses_nan(tmp_path):
    out = tmp_path / "out.wav"
    audio.save(out, _sine(16_000), 16_000)
    y, sr = audio.load(out, sample_rate=None)
    assert sr == 16_000 and np.allclose(y, _sine(16_000), atol=1e-3)
    with pytest.raises(AudioError, match="NaN"):
        audio.save(out, np.full(10, np.nan, dtype=np.float32), 16_000)
    # The earlier file is intact and no temporary files are left behind.
    assert np.allclose(audio.load(out, sample_rate=None)[0], y)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_levels():
    x = _sine(16_000)
    assert abs(audio.rms_db(audio.normalize_rms(x, -20.0)) + 20.0) < 1e-3
    assert np.max(np.abs(audio.peak_safe(x * 4))) <= audio.SAFE_PEAK + 1e-6
    assert np.array_equal(audio.peak_safe(x * 0.1), x * 0.1)
