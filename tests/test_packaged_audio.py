"""Real recordings from installed packages: music21's instrument, stempeg's band stems."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.dataset import packaged_audio
from instructme.errors import AudioError


def test_band_excerpt_decodes_into_equal_length_stems():
    tracks = packaged_audio.packaged_multitrack(16_000)
    assert tracks is not None, "stempeg (a dev dependency) should be installed"
    assert list(tracks) == list(packaged_audio.STEM_NAMES)
    lengths = {len(x) for x in tracks.values()}
    assert len(lengths) == 1 and 5.9 * 16_000 < lengths.pop() < 6.2 * 16_000
    for name, x in tracks.items():
        assert x.dtype == np.float32 and np.sqrt(np.mean(x**2)) > 0.01, name
    # the mix is (up to the codec) the sum of the stems, not any one of them
    stems = sum(tracks[k] for k in packaged_audio.STEM_NAMES[1:])
    corr = np.corrcoef(stems, tracks["mix"])[0, 1]
    assert corr > 0.95 and all(np.corrcoef(tracks[k], tracks["mix"])[0, 1] < 0.9
                               for k in packaged_audio.STEM_NAMES[1:])
    assert packaged_audio.music21_test_audio() is not None


def test_missing_package_or_ffmpeg(monkeypatch):
    path = packaged_audio.stempeg_example()
    monkeypatch.setattr(packaged_audio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg not found"):
        packaged_audio.decode_stream(path, 0, 16_000)
    monkeypatch.setattr(packaged_audio.importlib.util, "find_spec", lambda name: None)
    assert packaged_audio.packaged_multitrack(16_000) is None
    assert packaged_audio.music21_test_audio() is None


def test_undecodable_stream_is_one_line(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a media file")
    with pytest.raises(AudioError, match="could not decode stream 0"):
        packaged_audio.decode_stream(bad, 0, 16_000)
