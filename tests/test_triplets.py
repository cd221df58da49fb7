"""Triplet building on a synthetic rendered song: exact targets for every task, windows
with silent edited stems are skipped, splits never share a group, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.dataset.triplets import TripletBuilder, TripletSong, assign_splits
from instructme.instructions import parse_instruction

HZ = 10.0


def _song(song_id="g1-pop", group="g1", style="pop", seconds=60.0, silent_piano_after=None):
    frames = int(seconds * HZ)
    stems = {
        "s00-drums": ("songs/x/s00-drums.flac", "drums"),
        "s01-bass": ("songs/x/s01-bass.flac", "bass"),
        "s02-piano": ("songs/x/s02-piano.flac", "piano"),
        "s03-strings": ("songs/x/s03-strings.flac", "strings"),
        "s04-strings": ("songs/x/s04-strings.flac", "strings"),
    }
    variants = {"s02-piano-as-brass": ("songs/x/s02-piano-as-brass.flac", "brass", "s02-piano")}
    act = {n: np.ones(frames, dtype=bool) for n in [*stems, *variants]}
    if silent_piano_after is not None:
        act["s02-piano"][int(silent_piano_after * HZ):] = False
    return TripletSong(song_id, group, style, seconds, stems, variants, act, HZ)


def _names(paths):
    return sorted(p.rsplit("/", 1)[-1].removesuffix(".flac") for p in paths)


def test_every_task_has_an_exact_target():
    song, other = _song(), _song("g1-jazz", style="jazz")
    recs = TripletBuilder(window=10.0).build_song(song, [song, other], windows=3, multiround=3,
                                                  rng=np.random.default_rng(0))
    tasks = {r["task"] for r in recs}
    assert tasks == {"add", "remove", "extract", "replace", "remix", "multiround"}
    everything = _names(p for p, _ in song.stems.values())
    for r in recs:
        assert 0.0 <= r["start"] <= song.duration - 10.0
        src, tgt, edited = _names(r["source"]), _names(r["target"]), _names(r["edited"])
        if r["task"] != "multiround":
            assert parse_instruction(r["instruction"]) == (r["task"], r["args"])
        inst = r["args"].get("instrument")
        of_class = [n for n in everything if n.endswith(f"-{inst}")]
        if r["task"] == "add":
            assert tgt == everything and sorted(src + edited) == everything
            assert edited == of_class  # the unit is the class: both strings stems together
        elif r["task"] == "remove":
            assert src == everything and sorted(tgt + edited) == everything
        elif r["task"] == "extract":
            assert src == everything and tgt == edited == of_class
        elif r["task"] == "replace":
            assert r["args"] == {"instrument": "piano", "new_instrument": "brass"}
            assert tgt == sorted([n for n in everything if n != "s02-piano"]
                                 + ["s02-piano-as-brass"])
        elif r["task"] == "remix":
            assert r["args"] == {"style": "jazz"} and r["target_song_id"] == "g1-jazz"
        else:
            assert 2 <= len(r["rounds"]) <= 3 and r["target"] == r["rounds"][-1]["target"]
    assert len({r["id"] for r in recs}) == len(recs)


def test_silent_edited_stem_is_skipped():
    # The piano only plays in the first 5 s: no 10 s window has it sounding half the time
    # except those starting before 0 s, so piano is never the edited stem.
    song = _song(silent_piano_after=4.0)
    recs = TripletBuilder(window=10.0).build_song(song, [song], windows=20, multiround=0,
                                                  rng=np.random.default_rng(1))
    assert recs, "other instruments still give triplets"
    assert all(r["args"].get("instrument") != "piano" for r in recs)


def test_deterministic():
    def run():
        s = _song()
        return TripletBuilder().build_song(s, [s], 2, 2, np.random.default_rng(7))
    assert run() == run()


@pytest.mark.parametrize("n", [1, 3, 10, 57])
def test_splits_by_group(n):
    groups = [f"g{i}" for i in range(n)]
    split = assign_splits(groups, 0.1, 0.1, seed=3)
    assert set(split) == set(groups)
    counts = {s: list(split.values()).count(s) for s in ("train", "val", "test")}
    if n >= 3:
        assert counts["val"] >= 1 and counts["test"] >= 1 and counts["train"] >= 1
    assert split == assign_splits(list(reversed(groups)), 0.1, 0.1, seed=3)
