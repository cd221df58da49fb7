"""Tests for the procedural multi-style arranger (instructme.music.arranger + helpers)."""

from __future__ import annotations

import json
import time

import mir_eval
import numpy as np
import pytest

from instructme import vocab
from instructme.errors import InstructMEError
from instructme.music.arranger import (
    ROLE_RANGES,
    STYLE_DESCRIPTIONS,
    STYLE_SPECS,
    STYLES,
    arrange_group,
    generate_progression,
    replacement_programs,
)
from instructme.music.harmony import parse_chord, parse_key, voice_chord
from instructme.music.score import Part, Song
from instructme.vocab import program_to_class

REQUIRED = ("pop", "rock", "jazz", "funk", "ballad", "electronic", "latin", "orchestral")


def _label_at(song: Song, t: float) -> str:
    for c in song.chords:
        if c.start <= t < c.end:
            return c.label
    raise AssertionError(f"no chord segment at {t}")


def _melody(song: Song) -> list[tuple[float, int]]:
    (part,) = [p for p in song.parts if p.role == "melody"]
    return [(round(n.start, 5), n.pitch % 12) for n in part.notes]


@pytest.fixture(scope="module")
def all_styles() -> list[Song]:
    return arrange_group("grp", STYLES, seed=7, bars=12)


def test_styles_exported() -> None:
    assert set(REQUIRED) <= set(STYLES)
    assert tuple(STYLE_SPECS) == vocab.STYLES  # one spec per style of the vocabulary, in order
    assert len(set(STYLES)) == len(STYLES) >= 8
    assert all(STYLE_DESCRIPTIONS[s].strip() for s in STYLES)


def test_deterministic_and_seed_dependent() -> None:
    a = arrange_group("g", ["pop", "jazz"], seed=3, bars=8)
    b = arrange_group("g", ["pop", "jazz"], seed=3, bars=8)
    c = arrange_group("g", ["pop", "jazz"], seed=4, bars=8)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    assert [s.to_dict() for s in a] != [s.to_dict() for s in c]
    # A style's song does not depend on which other styles are arranged with it.
    alone = arrange_group("g", ["jazz"], seed=3, bars=8)
    assert alone[0].to_dict() == a[1].to_dict()


def test_song_fields_and_json(all_styles: list[Song]) -> None:
    for style, song in zip(STYLES, all_styles):
        assert song.song_id == f"grp-{style}" and song.style == style
        assert song.source == "arranger" and song.group == "grp"
        assert song.meta["time_signature"] == "4/4" and len(song.meta["progression"]) == 12
        d = json.loads(json.dumps(song.to_dict()))
        assert Song.from_dict(d).to_dict() == song.to_dict()


def test_every_style_has_its_parts(all_styles: list[Song]) -> None:
    for song in all_styles:
        roles = [p.role for p in song.parts]
        assert {"bass", "comp", "melody"} <= set(roles)
        assert len(roles) == len(set(roles)) and set(roles) <= set(ROLE_RANGES)
        drums = [p for p in song.parts if p.is_drum]
        if song.style == "orchestral":
            assert not drums and "drums" not in roles
            assert all(p.program != 47 for p in song.parts)  # no timpani
        else:
            (d,) = drums
            assert (d.program, d.instrument, d.role, d.name) == (0, "drums", "drums", "drums")
            keys = {n.pitch for n in d.notes}
            assert {36, 49} <= keys  # kick and crash at least


def test_notes_valid_and_classes_distinct() -> None:
    for seed in range(6):
        for song in arrange_group(f"v{seed}", STYLES, seed=seed, bars=9):
            classes = [p.instrument for p in song.parts]
            assert len(classes) == len(set(classes)), (song.song_id, classes)
            for p in song.parts:
                assert p.notes, (song.song_id, p.name)
                assert p.instrument == program_to_class(p.program, p.is_drum)
                lo, hi = ROLE_RANGES[p.role]
                for n in p.notes:
                    assert lo <= n.pitch <= hi, (song.song_id, p.role, n)
                    assert 1 <= n.velocity <= 127
                    assert 0 <= n.start < n.end <= song.duration + 1e-6, (song.song_id, p.role, n)
                # same-pitch notes never overlap (every note-off belongs to its note)
                by_pitch: dict[int, float] = {}
                for n in sorted(p.notes, key=lambda n: (n.pitch, n.start)):
                    assert n.start >= by_pitch.get(n.pitch, -1.0) - 1e-9
                    by_pitch[n.pitch] = n.end


def test_chord_labels_parse_and_tile(all_styles: list[Song]) -> None:
    for song in all_styles:
        assert song.chords[0].start == 0.0
        assert song.chords[-1].end == pytest.approx(song.duration, abs=1e-5)
        for a, b in zip(song.chords, song.chords[1:]):
            assert a.end == pytest.approx(b.start) and a.label != b.label
        for c in song.chords:
            mir_eval.chord.encode(c.label)  # raises on a bad label


def test_remix_group_shares_tempo_chords_and_melody(all_styles: list[Song]) -> None:
    ref = all_styles[0]
    beat = 60.0 / ref.tempo
    times = np.arange(0.5, ref.duration / beat) * beat
    ref_labels = [_label_at(ref, t) for t in times]
    for song in all_styles[1:]:
        assert (song.tempo, song.key, song.duration) == (ref.tempo, ref.key, ref.duration)
        labels = [_label_at(song, t) for t in times]
        assert np.all(mir_eval.chord.majmin(ref_labels, labels) == 1), song.style
        assert _melody(song) == _melody(ref), song.style


def test_jazz_plays_sevenths_over_the_same_triads() -> None:
    pop, jazz = arrange_group("s", ["pop", "jazz"], seed=1, bars=4,
                              progression=["C:maj", "A:min", "D:min", "G:maj"])
    assert [c.label for c in pop.chords] == ["C:maj", "A:min", "D:min", "G:maj"]
    assert [c.label for c in jazz.chords] == ["C:maj7", "A:min7", "D:min7", "G:7"]


def test_provided_progression_is_honoured() -> None:
    prog = ["C:maj", "A:min", "F:maj", "G:7"]
    (song,) = arrange_group("p", ["rock"], seed=0, bars=8, progression=prog, tempo=120)
    bar = 4 * 60.0 / 120
    assert song.key == "C:maj" and song.tempo == 120 and song.duration == pytest.approx(8 * bar)
    for i in range(8):
        assert _label_at(song, (i + 0.5) * bar) == prog[i % 4]
    # Two chords per bar when there are exactly 2 * bars labels.
    half = ["D:min", "G:7", "C:maj", "A:min"] * 2
    (song,) = arrange_group("p", ["pop"], seed=0, bars=4, progression=half, tempo=120)
    for i in range(8):
        assert _label_at(song, (i + 0.5) * bar / 2) == half[i]
    assert song.key == "C:maj"
    # Bass plays the chord roots on the downbeats (slash chords: the bass note).
    (song,) = arrange_group("p", ["pop"], seed=0, bars=4, tempo=120,
                            progression=["C:maj", "C:maj/5", "F:maj", "E:min"])
    (bass,) = [p for p in song.parts if p.role == "bass"]
    downbeats = {round(n.start / bar): n.pitch % 12 for n in bass.notes
                 if abs(n.start / bar - round(n.start / bar)) < 1e-6}
    assert [downbeats[i] for i in range(4)] == [0, 7, 5, 4]


def test_no_chord_bars_rest_in_pitched_parts() -> None:
    (song,) = arrange_group("n", ["pop"], seed=2, bars=4, tempo=100,
                            progression=["C:maj", "N", "F:maj", "C:maj"])
    bar = 4 * 60.0 / 100
    for p in song.parts:
        if p.role in ("comp", "melody", "pad"):
            assert not [n for n in p.notes if bar + 1e-6 < n.start < 2 * bar - 1e-6], p.role
    assert _label_at(song, 1.5 * bar) == "N"


def test_melody_fits_chords_and_repeats() -> None:
    (song,) = arrange_group("m", ["pop"], seed=5, bars=24, tempo=100,
                            progression=["C:maj", "A:min", "D:min", "G:7",
                                         "C:maj", "F:maj", "G:7", "C:maj"])
    beat = 60.0 / 100
    (mel,) = [p for p in song.parts if p.role == "melody"]
    for n in mel.notes:
        if abs(n.start / (2 * beat) - round(n.start / (2 * beat))) < 1e-6:  # beats 1 and 3
            chord = parse_chord(_label_at(song, n.start + 1e-6))
            assert n.pitch % 12 in chord.pcs, n
    # The same 8 chords come back every 8 bars: the melody repeats exactly.
    sec = 8 * 4 * beat
    first = [(round(n.start, 4), n.pitch) for n in mel.notes if n.start < sec - 1e-6]
    second = [(round(n.start - sec, 4), n.pitch) for n in mel.notes
              if sec - 1e-6 <= n.start < 2 * sec - 1e-6]
    assert first == second and len(first) >= 16


def test_generate_progression() -> None:
    key, labels = generate_progression(np.random.default_rng(0), 16, key="D", mode="minor")
    assert key == "D:min" and len(labels) == 16
    tonic, _ = parse_key(key)
    assert parse_chord(labels[-1]).root == tonic and parse_chord(labels[-1]).is_minor
    assert parse_chord(labels[-2]).root == (tonic + 7) % 12  # authentic cadence V-i
    again = generate_progression(np.random.default_rng(0), 16, key="D", mode="minor")
    assert again == (key, labels)
    seen_modes = set()
    for seed in range(30):
        key, labels = generate_progression(np.random.default_rng(seed), 24)
        assert len(labels) == 24 and parse_key(key)[1] in ("major", "minor")
        tonic = parse_key(key)[0]
        assert parse_chord(labels[-1]).root == tonic
        assert labels[:8] == labels[8:16]  # A A B form
        for lab in labels:
            mir_eval.chord.encode(lab)
        assert any(a != b for a, b in zip(labels, labels[1:]))
        seen_modes.add(key.split(":")[1])
    assert seen_modes == {"maj", "min"}
    _, dorian = generate_progression(np.random.default_rng(1), 8, key="A:dorian")
    assert "D:maj" in dorian  # dorian's major IV


def test_voice_leading_moves_little() -> None:
    c = voice_chord([0, 4, 7], 52, 79)
    f = voice_chord([5, 9, 0], 52, 79, prev=c)
    assert sum(abs(a - b) for a, b in zip(c, f)) <= 3  # C-E-G -> C-F-A
    assert len(voice_chord([2, 5, 9, 0], 48, 76, drop2=True)) == 4


def test_feel_and_swing() -> None:
    ballad, rock, jazz = arrange_group("f", ["ballad", "rock", "jazz"], seed=0, bars=4,
                                       tempo=124)
    assert ballad.meta["feel"] == 0.5 and rock.meta["feel"] == 1.0
    (slow,) = arrange_group("f", ["rock"], seed=0, bars=4, tempo=70)
    assert slow.meta["feel"] == 2.0
    beat = 60.0 / 124
    (ride,) = [p for p in jazz.parts if p.is_drum]
    frac = {round((n.start / beat) % 1.0, 3) for n in ride.notes if n.pitch == 51}
    assert frac - {0.0} and all(f in (0.0, 0.667, 0.333, 0.833) for f in frac), frac
    (mel,) = [p for p in jazz.parts if p.role == "melody"]  # the melody stays straight
    assert all(abs(n.start / beat * 2 - round(n.start / beat * 2)) < 1e-4 for n in mel.notes)


def test_replacement_programs() -> None:
    rng = np.random.default_rng(0)
    for song in arrange_group("r", STYLES, seed=9, bars=4):
        present = {p.instrument for p in song.parts}
        for part in song.parts:
            opts = replacement_programs(part, song.style or "pop", rng)
            if part.is_drum:
                assert opts == []
                continue
            assert opts and len(opts) == len(set(opts))
            classes = {program_to_class(p) for p in opts}
            assert part.instrument not in classes and None not in classes
            assert "drums" not in classes
            rest = replacement_programs(part, song.style or "pop", rng, exclude_classes=present)
            assert rest and not {program_to_class(p) for p in rest} & present
    part = Part("melody", 73, "woodwinds", "melody")
    a = replacement_programs(part, "jazz", np.random.default_rng(1))
    assert a == replacement_programs(part, "jazz", np.random.default_rng(1))
    with pytest.raises(InstructMEError):
        replacement_programs(part, "polka", rng)


@pytest.mark.parametrize("kwargs", [
    dict(styles=["polka"]), dict(styles=["pop", "pop"]), dict(styles=[]), dict(bars=0),
    dict(progression=["H:maj"]), dict(progression=["N", "N"]), dict(progression=[]),
    dict(key="H:min"), dict(key="C:phrygianish"), dict(tempo=1000), dict(seed=-1),
    dict(progression=["C:maj"], chords_per_bar=3),
])
def test_bad_inputs_raise_clear_errors(kwargs: dict) -> None:
    args = dict(group_id="b", styles=["pop"], seed=0, bars=4) | kwargs
    with pytest.raises(InstructMEError):
        arrange_group(**args)


def test_to_pretty_midi(all_styles: list[Song]) -> None:
    song = all_styles[STYLES.index("latin")]
    pm = song.to_pretty_midi()
    assert len(pm.instruments) == len(song.parts)
    assert [i.is_drum for i in pm.instruments] == [p.is_drum for p in song.parts]
    assert pm.get_end_time() == pytest.approx(song.duration, abs=0.01)


def test_render_short_song_every_part_sounds() -> None:
    render = pytest.importorskip("instructme.dataset.render")
    try:
        render.check_synth()
    except InstructMEError as e:
        pytest.skip(str(e))
    (song,) = arrange_group("a", ["funk"], seed=0, bars=2, tempo=120)
    for part in song.parts:
        x = render.render_part(part, song.duration)
        assert np.sqrt(np.mean(np.square(x))) > 1e-4, part.name


def test_fast() -> None:
    arrange_group("w", ["pop"], seed=0, bars=4)  # warm-up (imports, caches)
    t = time.perf_counter()
    arrange_group("t", ["pop", "jazz"], seed=1, bars=24)
    assert time.perf_counter() - t < 0.5


def test_odd_progressions_keys_and_tempi_stay_valid() -> None:
    qualities = ["maj", "min", "7", "maj7", "min7", "dim", "aug", "sus4", "sus2", "hdim7",
                 "dim7", "9", "min6", "(1)", "maj/3", "min/b3", "7/b7"]
    roots = ["C", "C#", "Db", "E", "F#", "Gb", "Ab", "B", "Cb"]
    rng = np.random.default_rng(0)
    for case in range(40):
        bars = int(rng.integers(1, 10))
        cpb = int(rng.choice([1, 2, 4]))
        prog = ["N" if rng.random() < 0.15 else f"{rng.choice(roots)}:{rng.choice(qualities)}"
                for _ in range(int(rng.integers(1, bars * cpb + 3)))]
        prog[0] = "D:min" if all(p == "N" for p in prog) else prog[0]
        styles = [str(s) for s in rng.choice(STYLES, size=2, replace=False)]
        key = [None, "E", "F#:min", "Bb dorian", "G mixolydian"][case % 5]
        songs = arrange_group(f"o{case}", styles, seed=case, bars=bars, progression=prog,
                              key=key, tempo=float(rng.choice([30, 61.5, 200, 300])),
                              chords_per_bar=cpb)
        for song in songs:
            for p in song.parts:
                assert p.notes, (case, song.style, p.role, prog)
                lo, hi = ROLE_RANGES[p.role]
                assert all(lo <= n.pitch <= hi and 0 <= n.start < n.end <= song.duration + 1e-6
                           for n in p.notes), (case, song.style, p.role)
