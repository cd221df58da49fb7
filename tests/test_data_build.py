"""End to end: `instructme data build --preset tiny` renders stems, writes manifests whose
targets are exact, splits by group, resumes, is deterministic, and `data stats` reports."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from instructme.cli import main
from instructme.config import DataConfig
from instructme.dataset.build import build_dataset
from instructme.dataset.folder import TripletDataset, read_manifest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "tiny"
    assert main(["data", "build", "--preset", "tiny", "--out", str(out), "--workers", "2",
                 "--quiet"]) == 0
    return out


def _records(root: Path) -> list[dict]:
    return [r for s in ("train", "val", "test") for r in read_manifest(root / "manifests" /
                                                                        f"{s}.jsonl")]


def test_build_writes_songs_manifests_and_splits(tiny):
    info = json.loads((tiny / "build.json").read_text())
    assert info["status"] == "complete" and info["songs"] >= 6
    recs = _records(tiny)
    assert {r["task"] for r in recs} >= {"add", "remove", "extract", "replace", "remix"}
    splits = json.loads((tiny / "manifests" / "splits.json").read_text())
    group_split: dict[str, set[str]] = {}
    for sid, split in splits.items():
        group = json.loads((tiny / "songs" / sid / "song.json").read_text())["group"]
        group_split.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in group_split.values()), "a group straddles two splits"
    for r in recs:
        assert splits[r["song"]] == r["split"]
        for p in r["source"] + r["target"] + r["edited"]:
            assert (tiny / p).is_file()


def test_targets_are_exact_sums(tiny):
    ds = TripletDataset(tiny, "train")
    seen = set()
    for i, r in enumerate(ds.records):
        if r["task"] in seen or r["task"] not in ("add", "remove", "extract"):
            continue
        seen.add(r["task"])
        item = ds[i]
        if r["task"] == "add":
            np.testing.assert_allclose(item["source"] + item["edited"], item["target"], atol=1e-5)
        elif r["task"] == "remove":
            np.testing.assert_allclose(item["target"] + item["edited"], item["source"], atol=1e-5)
        else:
            np.testing.assert_array_equal(item["target"], item["edited"])
        # The edited stem really sounds in the window (silent windows are skipped).
        assert np.sqrt(np.mean(item["edited"] ** 2)) > 1e-3
    assert seen == {"add", "remove", "extract"}


def test_resume_skips_finished_jobs_and_refuses_other_settings(tiny, capsys):
    before = (tiny / "manifests" / "train.jsonl").read_text()
    summary = build_dataset(tiny, preset="tiny", workers=1, quiet=True)
    assert summary["rendered_stem_seconds"] == 0.0  # nothing re-rendered
    assert (tiny / "manifests" / "train.jsonl").read_text() == before
    assert main(["data", "build", "--preset", "tiny", "--out", str(tiny), "--seed", "1"]) == 2
    assert "was built with preset 'tiny' seed 0" in capsys.readouterr().err


def test_stats_command(tiny, capsys):
    assert main(["data", "stats", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert "triplets by task" in out and "remix" in out and "stems by instrument" in out
    assert main(["data", "stats", str(tiny / "songs")]) == 2


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "build.json"
            and "jobs" not in p.parts}


def test_deterministic_across_runs_and_worker_counts(tmp_path):
    cfg = dataclasses.replace(DataConfig.preset("tiny"), corpus_pieces=1, arranger_songs=1)
    build_dataset(tmp_path / "a", preset="custom", workers=1, seed=5, quiet=True, config=cfg)
    build_dataset(tmp_path / "b", preset="custom", workers=2, seed=5, quiet=True, config=cfg)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and any(k.endswith(".flac") for k in a)


def test_plan_has_one_job_per_song():
    # The corpus holds some pieces in two formats; two jobs for one song id would race.
    from instructme.dataset.build import plan_jobs
    from instructme.music.corpus import song_id_for

    jobs = plan_jobs(DataConfig.preset("small"), seed=0)
    corpus = [song_id_for(j["path"]) for j in jobs if j["kind"] == "corpus"]
    groups = [j["group"] for j in jobs if j["kind"] == "arranger"]
    assert len(corpus) == len(set(corpus)) > 250 and len(groups) == len(set(groups)) == 300


def test_build_from_your_own_stems(tmp_path, capsys):
    """A MUSDB18-style folder becomes a dataset: stems resampled to 16 kHz mono, "other" kept
    in every mix but never named, triplets for add/remove/extract."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for split, song in (("train", "Song A"), ("train", "Song B"), ("test", "Song C"),
                        ("test", "Song D")):
        d = tmp_path / "musdb" / split / song
        d.mkdir(parents=True)
        for k, name in enumerate(("mixture", "drums", "bass", "vocals", "other")):
            t = np.arange(44_100 * 12) / 44_100
            x = 0.2 * np.sin(2 * np.pi * (110 * (k + 1)) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(d / f"{name}.wav", np.stack([x, x], 1).astype(np.float32), 44_100)
    out = tmp_path / "mine"
    assert main(["data", "build", "--from-stems", str(tmp_path / "musdb"), "--preset", "tiny",
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    song = json.loads((out / "songs" / "Song_A" / "song.json").read_text())
    assert song["source"] == "stems" and song["sample_rate"] == 16_000
    assert sorted(s["instrument"] for s in song["stems"].values()) == [
        "bass", "drums", "other", "vocals"]
    recs = _records(out)
    assert {r["task"] for r in recs} >= {"add", "remove", "extract"}
    for r in recs:
        assert r["args"].get("instrument") != "other"
        if r["task"] in ("add", "remove"):
            assert any(p.endswith("-other.flac") for p in r["source"] + r["target"])
    # A missing folder is a one-line error.
    assert main(["data", "build", "--from-stems", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "folder not found" in capsys.readouterr().err
