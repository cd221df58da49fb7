"""The dataset over manifests: mixes are exact sums of stems over the window; chords are
clipped to the window; malformed folders and manifests give one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from instructme.dataset.folder import TripletDataset, load_window, read_manifest, window_chords
from instructme.errors import ManifestError

SR = 16_000


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    song = tmp_path / "songs" / "s1"
    song.mkdir(parents=True)
    stems = {}
    for name in ("a", "b", "c"):
        x = (0.1 * rng.standard_normal(SR * 3)).astype(np.float32)
        sf.write(song / f"{name}.flac", x, SR, subtype="PCM_16")
        stems[name] = sf.read(song / f"{name}.flac", dtype="float32")[0]
    (song / "song.json").write_text(json.dumps({
        "song_id": "s1", "chords": [
            {"start": 0.0, "end": 1.2, "label": "C:maj"},
            {"start": 1.2, "end": 3.0, "label": "A:min"},
        ]}))
    (tmp_path / "build.json").write_text(json.dumps({"sample_rate": SR}))
    rec = {"id": "t1", "task": "remove", "instruction": "remove the b", "args": {},
           "song": "s1", "start": 1.0, "duration": 1.5,
           "source": ["songs/s1/a.flac", "songs/s1/b.flac", "songs/s1/c.flac"],
           "target": ["songs/s1/a.flac", "songs/s1/c.flac"], "edited": ["songs/s1/b.flac"]}
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "train.jsonl").write_text(json.dumps(rec) + "\n")
    return tmp_path, stems


def test_mix_is_exact_sum_over_the_window(folder):
    root, stems = folder
    item = TripletDataset(root, "train")[0]
    a, b = SR, SR + int(1.5 * SR)
    assert item["source"].shape == (int(1.5 * SR),)
    np.testing.assert_allclose(item["source"], (stems["a"] + stems["b"] + stems["c"])[a:b],
                               atol=1e-6)
    np.testing.assert_allclose(item["target"] + item["edited"], item["source"], atol=1e-6)
    assert [(c.label, round(c.start, 3), round(c.end, 3)) for c in item["chords"]] == [
        ("C:maj", 0.0, 0.2), ("A:min", 0.2, 1.5)]


def test_window_past_the_end_is_zero_padded(folder):
    root, stems = folder
    x = load_window(root, ["songs/s1/a.flac"], start=2.5, duration=1.0)
    np.testing.assert_allclose(x[: SR // 2], stems["a"][int(2.5 * SR):], atol=1e-6)
    assert not x[SR // 2:].any()
    assert window_chords(root, "s1", 5.0, 1.0) == []


def test_bad_folders_and_manifests(folder, tmp_path_factory):
    root, _ = folder
    with pytest.raises(ManifestError, match="not a dataset folder"):
        TripletDataset(tmp_path_factory.mktemp("empty"), "train")
    with pytest.raises(ManifestError, match="manifest not found"):
        TripletDataset(root, "val")
    with pytest.raises(ManifestError, match="unknown split"):
        TripletDataset(root, "dev")
    bad = root / "manifests" / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(ManifestError, match=r"bad.jsonl:1: record lacks"):
        read_manifest(bad)
    bad.write_text("{nope\n")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="unreadable stem"):
        (root / "songs" / "s1" / "broken.flac").write_bytes(b"garbage")
        load_window(root, ["songs/s1/broken.flac"], 0.0, 1.0)
