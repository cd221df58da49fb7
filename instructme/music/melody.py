"""Melody generation for the procedural arranger.

One melody is generated per song *group* and shared by every style the group is arranged
in (each style may only transpose it by octaves and change articulation), so that a remix
target keeps the source's melody and harmony exactly (InstructME, arXiv 2308.14360,
Sec. 4.1: remix edits keep melody and chords). The melody

- follows the chords: chord tones on strong beats and long notes, stepwise scale or
  chromatic-adjusted passing/neighbour tones on weak eighths;
- has phrase structure: 4-bar phrases built from 2-3 one-bar rhythm motifs (a a' b cadence),
  a long cadence note ending each phrase, exact repetition of a phrase whenever the same
  chords come back (A sections sound the same), and a final note on the tonic;
- rests wherever the chord is ``"N"``.
Times are beats on the 4/4 grid of :mod:`instructme.music.harmony`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instructme.music.harmony import (
    BEATS_PER_BAR,
    ChordSlot,
    Ev,
    chord_scale,
    clip_velocity,
    slot_at,
)

#: One-bar rhythm motifs in eighths: (onset, duration) with onsets 0..7.
MOTIFS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 2), (2, 2), (4, 2), (6, 2)),
    ((0, 3), (3, 1), (4, 4)),
    ((0, 1), (1, 1), (2, 2), (4, 1), (5, 1), (6, 2)),
    ((0, 2), (2, 1), (3, 1), (4, 3), (7, 1)),
    ((1, 1), (2, 2), (4, 2), (6, 2)),
    ((0, 4), (4, 2), (6, 2)),
    ((0, 2), (3, 3), (6, 2)),
    ((0, 1), (1, 1), (2, 1), (3, 1), (4, 4)),
    ((0, 3), (3, 3), (6, 2)),
    ((2, 2), (4, 1), (5, 1), (6, 2)),
)
#: Phrase-ending bars: a long note (on the downbeat or after a short pickup).
CADENCE_MOTIFS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 8),), ((0, 2), (2, 6)), ((0, 4), (4, 4)), ((0, 1), (1, 1), (2, 6)),
)
LOW, HIGH = 60, 81  # melody register (the lead range is 60-84; styles may shift octaves)
CENTER = 69.0


def _weights_pick(rng: np.random.Generator, cands: Sequence[int], w: Sequence[float]) -> int:
    arr = np.asarray(w, dtype=np.float64)
    return int(cands[int(rng.choice(len(cands), p=arr / arr.sum()))])


def _chord_tone(rng: np.random.Generator, pcs: Sequence[int], prev: int | None,
                prefer: Sequence[int] = ()) -> int:
    """A chord tone near ``prev`` (small leaps favoured, pulled toward the centre)."""
    cands = [p for p in range(LOW, HIGH + 1) if p % 12 in pcs]
    ref = CENTER if prev is None else prev
    w = []
    for p in cands:
        d = abs(p - ref)
        wt = np.exp(-d / 2.5) * np.exp(-abs(p - CENTER) / 9.0)
        if prev is not None and p == prev:
            wt *= 0.4
        if p % 12 in prefer:
            wt *= 3.0
        w.append(wt + 1e-9)
    return _weights_pick(rng, cands, w)


def _passing_tone(rng: np.random.Generator, scale: Sequence[int], prev: int,
                  direction: int) -> int:
    """A scale step (or third) away from ``prev``, mostly in ``direction``."""
    cands = [p for p in range(max(LOW, prev - 4), min(HIGH, prev + 4) + 1)
             if p % 12 in scale and p != prev]
    if not cands:
        return prev
    w = []
    for p in cands:
        step = abs(p - prev)
        wt = 1.0 if step <= 2 else 0.3
        wt *= 2.5 if np.sign(p - prev) == direction else 1.0
        w.append(wt)
    return _weights_pick(rng, cands, w)


def _phrase_notes(rng: np.random.Generator, timeline: Sequence[ChordSlot], scale: Sequence[int],
                  tonic: int, first_bar: int, rhythms: Sequence[Sequence[tuple[int, int]]],
                  prev: int | None, song_end: bool) -> list[Ev]:
    """Pitches for one phrase (one rhythm per bar); ``prev`` is the last pitch before it."""
    onsets = [(first_bar + b, on, du) for b, motif in enumerate(rhythms) for on, du in motif]
    notes: list[Ev] = []
    direction = 1 if (prev or CENTER) < CENTER else -1
    for k, (bar, on, du) in enumerate(onsets):
        beat = bar * BEATS_PER_BAR + on / 2
        chord = timeline[slot_at(timeline, beat)].chord
        if chord.is_none:
            continue
        last = k == len(onsets) - 1
        strong = on % 4 == 0 or du >= 3 or last
        if last and song_end and tonic in chord.pcs:
            pitch = _chord_tone(rng, (tonic,), prev)
        elif last:  # phrase end: root or third
            pitch = _chord_tone(rng, chord.pcs, prev,
                                (chord.root, (chord.root + (chord.third or 4)) % 12))
        elif strong or prev is None:
            pitch = _chord_tone(rng, chord.pcs, prev)
        else:
            if rng.random() < 0.25:
                direction = -direction
            if prev >= HIGH - 3:
                direction = -1
            elif prev <= LOW + 3:
                direction = 1
            pitch = _passing_tone(rng, chord_scale(chord, scale), prev, direction)
        accent = 10 if on == 0 else (5 if on == 4 else 0)
        vel = clip_velocity(82 + accent + int(rng.integers(-6, 7)))
        notes.append(Ev(beat, du / 2, pitch, vel))
        prev = pitch
    return notes


def generate_melody(rng: np.random.Generator, timeline: Sequence[ChordSlot], bars: int,
                    scale: Sequence[int], tonic: int) -> list[Ev]:
    """The group's melody over ``bars`` bars of ``timeline``: list of :class:`Ev` in beats,
    pitches in ``[LOW, HIGH]``, onsets on the eighth grid, no overlaps."""
    picks = rng.choice(len(MOTIFS), size=3, replace=False)
    a, b, c = (MOTIFS[int(i)] for i in picks)
    cad1, cad2 = (CADENCE_MOTIFS[int(i)] for i in rng.choice(len(CADENCE_MOTIFS), 2))
    plans = ((a, b, a, cad1), (a, b, c, cad2))  # antecedent / consequent rhythm plans
    cache: dict[tuple, list[Ev]] = {}
    out: list[Ev] = []
    prev: int | None = None
    for p, start in enumerate(range(0, bars, 4)):
        n = min(4, bars - start)
        plan = plans[p % 2]
        rhythms = list(plan[: n - 1]) + [plan[-1]] if n > 1 else [plan[-1]]
        song_end = start + n >= bars
        if song_end:
            rhythms[-1] = ((0, 8),)
        lo, hi = start * BEATS_PER_BAR, (start + n) * BEATS_PER_BAR
        chords = tuple((s.start - lo, s.dur, s.chord.label) for s in timeline
                       if lo <= s.start < hi)
        key = (p % 2, n, song_end, chords)
        if key in cache:  # the same chords again: repeat the phrase exactly
            notes = [e._replace(start=e.start + lo) for e in cache[key]]
        else:
            notes = _phrase_notes(rng, timeline, scale, tonic, start, rhythms, prev, song_end)
            cache[key] = [e._replace(start=e.start - lo) for e in notes]
        out += notes
        if notes:
            prev = notes[-1].pitch
    first = next((s for s in timeline if not s.chord.is_none and s.start < bars * BEATS_PER_BAR),
                 None)
    if not out and first is not None:  # every onset fell on "N": hold the first chord's tone
        out = [Ev(first.start, first.dur, _chord_tone(rng, first.chord.pcs, None), 86)]
    return out
