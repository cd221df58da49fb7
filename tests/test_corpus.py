"""music21 corpus pieces -> multitrack Songs (instructme.music.corpus)."""

from __future__ import annotations

import json

import mir_eval
import numpy as np
import pytest

from instructme.errors import InstructMEError
from instructme.music.chord_labels import beat_labels, chord_label, key_label, merge_labels
from instructme.music.corpus import (
    bar_progression,
    list_corpus_pieces,
    load_corpus_song,
    song_id_for,
    variant_program,
)
from instructme.music.score import ChordSegment, Note, Part, Song
from instructme.vocab import program_to_class

CHORALE = "bach/bwv269"  # G major, 3/4, pickup bar, 4 voices, no tempo mark


@pytest.fixture(scope="module")
def chorale() -> Song:
    return load_corpus_song(CHORALE, seed=3, max_seconds=30.0)


def test_chorale_parts_notes_and_roles(chorale):
    s = chorale
    assert s.song_id == "bach_bwv269" and s.source == "corpus" and s.group == s.song_id
    assert len(s.parts) >= 4 and s.key == "G:maj"
    assert s.meta["tempo_source"] == "seeded" and 40 <= s.tempo <= 200
    assert 15.0 <= s.duration <= 30.0 and s.meta["truncated"]
    names = [p.name for p in s.parts]
    assert names == ["soprano", "alto", "tenor", "bass"] and len(set(names)) == len(names)
    assert [p.role for p in s.parts] == ["melody", "voice", "voice", "bass"]
    for p in s.parts:
        assert p.instrument == program_to_class(p.program) and p.notes
        for n in p.notes:
            assert 0 <= n.start < n.end <= s.duration + 1e-9 and 1 <= n.velocity <= 127
            assert 0 <= n.pitch <= 127
    mean = [np.mean([n.pitch for n in p.notes]) for p in s.parts]
    assert mean == sorted(mean, reverse=True)
    # the real opening: soprano G4 G4 D5 over a bass G2 (checked against the score)
    assert [n.pitch for n in s.parts[0].notes[:3]] == [67, 67, 74]
    assert s.parts[-1].notes[0].pitch == 43
    json.dumps(s.to_dict())  # serialisable as song.json
    assert Song.from_dict(s.to_dict()) == s


def _write_tied_score(path) -> None:
    from music21 import meter, note, stream, tempo, tie

    hi = stream.Part()
    hi.partName = "Upper Voice"
    a, b = note.Note("C5", quarterLength=2), note.Note("C5", quarterLength=2)
    a.tie, b.tie = tie.Tie("start"), tie.Tie("stop")
    hi.append([meter.TimeSignature("4/4"), tempo.MetronomeMark(number=60), a, b,
               note.Note("D5", quarterLength=1), note.Rest(quarterLength=1),
               note.Note("D5", quarterLength=2)])
    lo = stream.Part()
    lo.partName = "Upper Voice"  # same name: stem names must still be unique
    lo.append([note.Note("C3", quarterLength=4), note.Note("G2", quarterLength=4)])
    score = stream.Score()
    score.insert(0, hi)
    score.insert(0, lo)
    score.write("musicxml", str(path))


def test_score_file_ties_rests_tempo_and_tail(tmp_path):
    path = tmp_path / "tied.musicxml"
    _write_tied_score(path)
    s = load_corpus_song(str(path), seed=0, max_seconds=None)
    assert s.tempo == 60.0 and s.meta["tempo_source"] == "score"
    hi, lo = s.parts
    assert [p.name for p in s.parts] == ["upper_voice", "upper_voice_2"]
    assert (hi.role, lo.role) == ("melody", "bass")
    got = [(n.pitch, round(n.start, 6), round(n.end, 6)) for n in hi.notes]
    assert got == [(72, 0.0, 4.0), (74, 4.0, 5.0), (74, 6.0, 8.0)]  # tie merged, rest skipped
    assert [(n.pitch, n.start, n.end) for n in lo.notes] == [(48, 0.0, 4.0), (43, 4.0, 8.0)]
    assert s.duration == pytest.approx(9.0)  # 8 s of music + release tail
    assert [c.label for c in s.chords] == ["C:1", "G:5", "G:1", "G:5", "N"]
    assert s.chords[-1].start == pytest.approx(8.0)


def test_chords_parse_and_cover_song(chorale):
    chords = chorale.chords
    assert chords[0].start == 0.0 and chords[-1].end == pytest.approx(chorale.duration)
    for a, b in zip(chords, chords[1:]):
        assert a.end == pytest.approx(b.start) and a.label != b.label
    for c in chords:
        mir_eval.chord.encode(c.label)
    labels = [c.label for c in chords]
    assert labels[0] == "G:maj" and sum(lab.startswith(("G:", "D:", "C:")) for lab in labels) > 5


def test_chord_label_templates():
    assert chord_label({0, 4, 7}) == "C:maj"
    assert chord_label({9, 0, 4}) == "A:min"
    assert chord_label({7, 11, 2, 5}) == "G:7"
    assert chord_label({11, 2, 5}) == "B:dim"
    assert chord_label({0, 4, 7, 2}) == "C:maj"  # passing tone
    assert chord_label({0, 4}, bass=0) == "C:maj"
    assert chord_label({0, 7}) == "C:5" and chord_label({3}) == "Eb:1" and chord_label(set()) == "N"
    assert chord_label({0, 3, 7, 9}, bass=9) == "A:hdim7"
    segs = merge_labels([0.0, 1.0, 2.0, 3.0], ["C:maj", "C:maj", "G:7", "C:maj"], 3.5)
    assert segs == [ChordSegment(0.0, 2.0, "C:maj"), ChordSegment(2.0, 3.0, "G:7"),
                    ChordSegment(3.0, 3.5, "C:maj")]


def test_transposing_part_sounds_at_concert_pitch(tmp_path):
    from music21 import instrument, note, stream

    cl = stream.Part([instrument.Clarinet(), note.Note("D5", quarterLength=4)])
    cl.atSoundingPitch = False  # written pitch: a Bb clarinet's D5 sounds C5
    bass = stream.Part([instrument.Violoncello(), note.Note("C3", quarterLength=4)])
    score = stream.Score([cl, bass])
    score.write("musicxml", str(tmp_path / "cl.musicxml"))
    s = load_corpus_song(str(tmp_path / "cl.musicxml"), seed=0)
    assert [p.notes[0].pitch for p in s.parts] == [72, 48]
    assert s.chords[0].label == "C:1"


def test_part_entering_after_the_cut_is_dropped(tmp_path):
    from music21 import note, stream, tempo

    late = stream.Part([tempo.MetronomeMark(number=60), note.Rest(quarterLength=8),
                        note.Note("C6", quarterLength=4)])
    mid = stream.Part([note.Note("E4", quarterLength=12)])
    low = stream.Part([note.Note("C3", quarterLength=12)])
    stream.Score([late, mid, low]).write("musicxml", str(tmp_path / "late.musicxml"))
    full = load_corpus_song(str(tmp_path / "late.musicxml"), seed=0, max_seconds=None)
    assert [p.role for p in full.parts] == ["melody", "voice", "bass"]
    cut = load_corpus_song(str(tmp_path / "late.musicxml"), seed=0, max_seconds=6.0)
    assert cut.duration == pytest.approx(4.0)  # the last bar line (4/4 at 60 bpm) before 6 s
    assert cut.meta["dropped_parts"] == 1 and cut.meta["truncated"]
    assert [p.role for p in cut.parts] == ["melody", "bass"]
    assert [p.notes[0].pitch for p in cut.parts] == [64, 48]


def test_beat_labels_longest_slice():
    up = Part("up", 0, "piano", "melody", [
        Note(64, 0.0, 0.5), Note(64, 0.5, 1.0),  # re-attacked E: one slice C:maj for 1 s
        Note(65, 1.0, 1.25), Note(67, 1.25, 2.0),  # F passing (0.25 s), then G (0.75 s)
    ])
    lo = Part("lo", 0, "piano", "bass", [Note(48, 0.0, 1.0), Note(43, 1.0, 2.0),
                                         Note(50, 2.0, 2.5)])
    mid = Part("mid", 0, "piano", "voice", [Note(55, 0.0, 1.0), Note(59, 1.0, 2.0)])
    labels = beat_labels([up, lo, mid], [0.0, 1.0, 2.0, 3.0], 3.5)
    # beat 2: {F,G,B} 0.25 s vs {G,B} 0.75 s -> G (bare third = major); then D alone; silence
    assert labels == ["C:maj", "G:maj", "D:1", "N"]


def test_key_label():
    def notes(pitches, lengths):
        t, out = 0.0, []
        for p, d in zip(pitches, lengths):
            out.append(Note(p, t, t + d))
            t += d
        return out

    c_major = notes([60, 62, 64, 65, 67, 69, 71, 72, 67, 60], [2, 1, 2, 1, 2, 1, 1, 2, 2, 3])
    assert key_label(c_major) == "C:maj"
    a_minor = notes([57, 59, 60, 62, 64, 65, 68, 69, 64, 57], [3, 1, 2, 1, 2, 1, 1, 2, 2, 3])
    assert key_label(a_minor) == "A:min"
    assert key_label([Note(p + 6, n.start, n.end) for p, n in
                      zip([x.pitch for x in c_major], c_major)]) == "F#:maj"
    assert key_label([]) == "N"


def test_seeded_ensembles_and_determinism():
    a = load_corpus_song(CHORALE, seed=11, max_seconds=10.0)
    b = load_corpus_song(CHORALE, seed=11, max_seconds=10.0)
    assert a == b
    songs = [load_corpus_song(CHORALE, seed=k, max_seconds=5.0) for k in range(8)]
    assert len({s.meta["ensemble"] for s in songs}) >= 3
    assert len({tuple(p.program for p in s.parts) for s in songs}) >= 5
    assert len({s.tempo for s in songs}) == 8  # seeded tempo (the chorale has no mark)
    for s in songs:
        if s.meta["ensemble"] == "mixed":
            assert len({p.instrument for p in s.parts}) == len(s.parts)
    prog = variant_program(a.parts[0], np.random.default_rng(0), {p.instrument for p in a.parts})
    assert program_to_class(prog) not in {p.instrument for p in a.parts}


def test_bar_progression(chorale):
    prog = bar_progression(chorale, 12)
    assert len(prog) == 12
    for lab in prog:
        assert lab.split(":")[1] in ("maj", "min", "7", "dim")
        mir_eval.chord.encode(lab)
    assert prog[0] == "G:maj"
    wrapped = bar_progression(chorale, 100)
    n_bars = len(chorale.meta["bar_times"]) - 1  # pickup skipped
    assert wrapped[n_bars: 2 * n_bars] == wrapped[:n_bars]
    with pytest.raises(InstructMEError):
        bar_progression(chorale, 0)


def test_list_corpus_pieces():
    pieces = list_corpus_pieces(limit=20, seed=0)
    assert len(pieces) == 20 and all(p.startswith("bach/") for p in pieces)
    assert pieces == list_corpus_pieces(limit=20, seed=0)
    assert pieces != list_corpus_pieces(limit=20, seed=1)
    everything = list_corpus_pieces(seed=0)
    assert len(everything) > 1000 and len(set(everything)) == len(everything)
    n_chorales = sum(p.startswith("bach/") for p in everything[:400])
    assert n_chorales >= 340
    tail = everything[n_chorales: n_chorales + 10]
    assert len({p.split("/")[0] for p in tail}) >= 5  # others interleave composers
    with pytest.raises(InstructMEError):
        list_corpus_pieces(min_parts=1)


def test_other_piece_and_errors():
    s = load_corpus_song("monteverdi/madrigal.3.1.mxl", seed=0, max_seconds=12.0)
    assert len(s.parts) == 5 and s.meta["tempo_source"] == "score" and s.tempo == 120.0
    assert not s.meta["pickup"] and s.meta["time_signature"] == "4/4"
    assert s.duration <= 12.0
    with pytest.raises(InstructMEError, match="no_such_piece"):
        load_corpus_song("bach/no_such_piece", seed=0)
    with pytest.raises(InstructMEError):
        load_corpus_song(CHORALE, seed=0, max_seconds=0)
    assert song_id_for("bach/bwv1.6.mxl") == "bach_bwv1_6"
    assert song_id_for("trecento/PMFC_06_Piero_1-All_onbra d_un perlato.xml") == \
        "trecento_PMFC_06_Piero_1_All_onbra_d_un_perlato"
