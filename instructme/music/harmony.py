"""Harmony for the procedural arranger: keys, modes, chord labels, progressions, voicings.

The arranger (docs/ARCHITECTURE.md, "Data": procedural multi-style arrangements over real or
generated progressions) needs music whose chords are known exactly, because InstructME
conditions the editor on a chord matrix (arXiv 2308.14360, Sec. 3.2) and scores harmony
preservation with chord recognition accuracy (Sec. 4). This module provides

- chord labels in ``mir_eval`` syntax, parsed with :func:`mir_eval.chord.encode`;
- keys in four modes (major, minor, dorian, mixolydian) and key estimation from chords;
- functional progressions: Markov walks over scale degrees with phrase cadences (half and
  authentic), secondary dominants and AABA section repetition;
- voice-led chord voicings (minimal total voice movement between consecutive chords).

Times on the arranger's grid are in beats (4/4: a bar is :data:`BEATS_PER_BAR` beats).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import mir_eval.chord
import numpy as np

from instructme.errors import InstructMEError

BEATS_PER_BAR = 4
NOTE_NAMES: tuple[str, ...] = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

#: Scale intervals of the supported modes.
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
_MODE_ALIASES = {
    "major": "major", "maj": "major", "ionian": "major", "minor": "minor", "min": "minor",
    "aeolian": "minor", "dorian": "dorian", "dor": "dorian", "mixolydian": "mixolydian",
    "mix": "mixolydian",
}
#: Chord-tone sets (semitones above the root) -> mir_eval quality.
QUALITIES: dict[tuple[int, ...], str] = {
    (0, 4, 7): "maj", (0, 3, 7): "min", (0, 3, 6): "dim", (0, 4, 8): "aug",
    (0, 4, 7, 10): "7", (0, 4, 7, 11): "maj7", (0, 3, 7, 10): "min7", (0, 3, 6, 10): "hdim7",
    (0, 3, 6, 9): "dim7",
}


@dataclass(frozen=True)
class Chord:
    """A parsed chord: ``root`` pitch class (-1 = no chord), ``intervals`` above the root
    (0 first, ascending), ``bass`` pitch class (differs from the root for slash chords)."""

    label: str
    root: int
    intervals: tuple[int, ...]
    bass: int

    @property
    def is_none(self) -> bool:
        return self.root < 0

    @property
    def pcs(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)

    def _first(self, *options: int) -> int | None:
        return next((i for i in options if i in self.intervals), None)

    @property
    def third(self) -> int | None:
        return self._first(4, 3, 5, 2)

    @property
    def fifth(self) -> int | None:
        return self._first(7, 6, 8)

    @property
    def seventh(self) -> int | None:
        return self._first(10, 11, 9)

    @property
    def is_minor(self) -> bool:
        return 3 in self.intervals and 4 not in self.intervals


class ChordSlot(NamedTuple):
    """One chord on the grid: ``start`` and ``dur`` in beats."""

    start: float
    dur: float
    chord: Chord


class Ev(NamedTuple):
    """A note event on the grid: ``start``/``dur`` in beats, MIDI ``pitch``, ``vel`` 1-127."""

    start: float
    dur: float
    pitch: int
    vel: int


NO_CHORD = Chord("N", -1, (), -1)


def clip_velocity(v: float) -> int:
    """MIDI velocity in 1-127 (plain Python: called once per note)."""
    return max(1, min(127, int(v)))


@lru_cache(maxsize=4096)
def parse_chord(label: str) -> Chord:
    """mir_eval chord label -> :class:`Chord` (``"N"``/``"X"`` give :data:`NO_CHORD`)."""
    if not isinstance(label, str) or not label.strip():
        raise InstructMEError(f"invalid chord label {label!r}")
    try:
        root, bitmap, bass = mir_eval.chord.encode(label.strip())
    except (mir_eval.chord.InvalidChordException, ValueError, TypeError):
        raise InstructMEError(
            f"invalid chord label {label!r} (use mir_eval syntax: 'C:maj', 'A:min7', 'N')"
        ) from None
    if root < 0:
        return Chord(label.strip(), -1, (), -1)
    intervals = tuple(int(i) for i in np.flatnonzero(np.asarray(bitmap) > 0)) or (0,)
    if intervals[0] != 0:
        intervals = (0, *intervals)
    return Chord(label.strip(), int(root), intervals, (int(root) + int(bass)) % 12)


def chord_label(root: int, intervals: Sequence[int]) -> str:
    """Root pitch class + interval set -> mir_eval label (``"D:min7"``)."""
    key = tuple(sorted({i % 12 for i in intervals}))
    if key not in QUALITIES:
        raise ValueError(f"no mir_eval quality for intervals {key}")
    return f"{NOTE_NAMES[root % 12]}:{QUALITIES[key]}"


def normalize_mode(name: str) -> str:
    mode = _MODE_ALIASES.get(name.strip().lower())
    if mode is None:
        raise InstructMEError(f"unknown mode {name!r} (known: {', '.join(MODES)})")
    return mode


def parse_key(key: str) -> tuple[int, str | None]:
    """``"D"``, ``"D:min"``, ``"Eb major"``, ``"F# dorian"`` -> (tonic pc, mode or None)."""
    words = key.replace(":", " ").split() if isinstance(key, str) else []
    if not 1 <= len(words) <= 2:
        raise InstructMEError(f"invalid key {key!r} (expected e.g. 'D:min' or 'Eb')")
    name = words[0][0].upper() + words[0][1:]
    try:
        tonic = mir_eval.chord.pitch_class_to_semitone(name)
    except (mir_eval.chord.InvalidChordException, TypeError, KeyError, ValueError):
        raise InstructMEError(f"invalid key {key!r}: unknown tonic {words[0]!r}") from None
    return int(tonic) % 12, normalize_mode(words[1]) if len(words) == 2 else None


def key_label(tonic: int, mode: str) -> str:
    """Key label with the parent quality of the mode: ``"D:min"`` for D minor or D dorian."""
    return f"{NOTE_NAMES[tonic % 12]}:{'min' if MODES[mode][2] == 3 else 'maj'}"


def scale_pcs(tonic: int, mode: str) -> tuple[int, ...]:
    return tuple((tonic + i) % 12 for i in MODES[mode])


def chord_scale(chord: Chord, scale: Sequence[int]) -> tuple[int, ...]:
    """Key scale adjusted to a chord: chord tones outside the scale replace their neighbours
    (G# instead of G over E7 in C major), so passing tones do not clash with the harmony."""
    pcs = set(scale)
    for pc in chord.pcs:
        if pc not in pcs:
            pcs -= {(pc - 1) % 12, (pc + 1) % 12}
            pcs.add(pc)
    return tuple(sorted(pcs))


def estimate_key(chords: Sequence[Chord], tonic: int | None = None) -> tuple[int, str]:
    """Major/minor key that best explains a chord sequence, optionally with a fixed ``tonic``.

    Score: twice the scale coverage of the chord tones, plus the tonic chord at the start and
    end, plus dominant -> tonic resolutions (the sequence read as a loop, since a bar-wise
    progression often ends on its turnaround V). Deterministic; ties go to major and the
    lower tonic."""
    real = [c for c in chords if not c.is_none]
    if not real:
        raise InstructMEError("progression has no chords (only 'N')")
    best, best_score = (0, "major"), -math.inf
    for mode in ("major", "minor"):
        for t in range(12) if tonic is None else (tonic % 12,):
            scale = set(scale_pcs(t, mode)) | ({(t + 11) % 12} if mode == "minor" else set())
            score = 2.0 * sum(len(set(c.pcs) & scale) / len(c.pcs) for c in real)
            fits = [c.root == t and c.is_minor == (mode == "minor") for c in real]
            dom = [c.root == (t + 7) % 12 and 4 in c.intervals for c in real]
            resolves = sum(d and f for d, f in zip(dom, fits[1:] + fits[:1]))
            score += fits[0] + fits[-1] + 0.5 * sum(fits) / len(real) + resolves
            if score > best_score + 1e-9:
                best, best_score = (t, mode), score
    return best


# ---------------------------------------------------------------------------- progressions
# Degree -> {next degree: weight}: functional harmony (T -> S -> D -> T) and modal vamps.
_TRANSITIONS: dict[str, dict[int, dict[int, float]]] = {
    "major": {
        0: {1: 1.5, 2: 0.5, 3: 3.0, 4: 2.5, 5: 2.0}, 1: {4: 4.0, 3: 0.5, 6: 0.5},
        2: {5: 2.0, 3: 2.0}, 3: {0: 1.5, 1: 1.5, 4: 3.0, 6: 0.3}, 4: {0: 4.0, 5: 1.5, 3: 0.4},
        5: {1: 2.0, 3: 3.0, 4: 1.0, 2: 0.5}, 6: {0: 3.0, 5: 0.5},
    },
    "minor": {
        0: {3: 3.0, 5: 2.0, 4: 2.0, 6: 1.5, 2: 1.0, 1: 0.3}, 1: {4: 4.0},
        2: {5: 2.0, 3: 2.0, 6: 1.0}, 3: {4: 3.0, 0: 1.5, 6: 1.0, 1: 0.5}, 4: {0: 4.0, 5: 1.5},
        5: {3: 2.0, 4: 2.0, 6: 2.0, 2: 0.5}, 6: {2: 2.5, 0: 2.0, 5: 0.5},
    },
    "dorian": {
        0: {3: 4.0, 6: 3.0, 2: 1.0, 1: 1.0, 4: 1.0}, 1: {2: 2.0, 0: 1.0, 3: 1.0},
        2: {3: 2.0, 6: 2.0, 0: 1.0}, 3: {0: 3.0, 6: 2.0, 4: 1.0}, 4: {0: 2.0, 3: 1.0, 6: 1.0},
        6: {0: 3.0, 3: 2.0, 2: 1.0},
    },
    "mixolydian": {
        0: {6: 4.0, 3: 3.0, 4: 1.0, 5: 1.0}, 1: {4: 1.0, 6: 1.0, 0: 1.0},
        3: {0: 3.0, 6: 1.5, 4: 1.0}, 4: {0: 1.5, 3: 2.0, 6: 1.0}, 5: {3: 2.0, 1: 1.0, 6: 1.0},
        6: {3: 2.5, 0: 3.0},
    },
}
#: Per mode: half-cadence chords, chords before the final tonic, B-section openings.
_HALF = {"major": (4,), "minor": (4,), "dorian": (3, 6), "mixolydian": (6, 3)}
_PRE_FINAL = {"major": (4,), "minor": (4,), "dorian": (6, 3, 4), "mixolydian": (6, 4)}
_B_START = {"major": (3, 5), "minor": (3, 5), "dorian": (3, 6), "mixolydian": (3, 6)}
#: Targets a secondary dominant may precede (functional modes only).
_TONICIZABLE = {"major": (1, 2, 3, 4, 5), "minor": (2, 3, 5)}


def degree_chord(tonic: int, mode: str, degree: int) -> tuple[int, tuple[int, ...]]:
    """Diatonic triad on a scale degree -> (root pc, intervals); minor uses a major V."""
    scale = MODES[mode]
    root = scale[degree]
    ivs = tuple(sorted((scale[(degree + k) % 7] - root) % 12 for k in (0, 2, 4)))
    if mode == "minor" and degree == 4:
        ivs = (0, 4, 7)  # harmonic minor dominant
    return (tonic + root) % 12, ivs


def _choose(rng: np.random.Generator, weights: dict[int, float]) -> int:
    keys = sorted(weights)
    w = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _phrase(rng: np.random.Generator, mode: str, n: int, start: int,
            ending: list[int]) -> list[int]:
    """``n`` degrees: ``start``, a Markov walk, then the fixed cadence ``ending``; the last
    free chord is weighted by how well it leads into the cadence."""
    table = _TRANSITIONS[mode]
    if n <= len(ending):
        return ending[len(ending) - n:]
    degs = [start]
    free = n - 1 - len(ending)
    for i in range(free):
        opts = table[degs[-1]]
        if i == free - 1 and ending:
            target = ending[0]
            opts = {d: w * (table[d].get(target, 0.05) if d in table else 0.05)
                    * (0.2 if d == target else 1.0) for d, w in opts.items()}
        degs.append(_choose(rng, opts))
    return degs + ending


def _phrase_labels(rng: np.random.Generator, tonic: int, mode: str, degs: list[int],
                   cadence: bool) -> list[str]:
    """Degrees -> labels, with secondary dominants and a dominant seventh at cadences."""
    chords = [degree_chord(tonic, mode, d) for d in degs]
    labels = [chord_label(r, ivs) for r, ivs in chords]
    if mode in _TONICIZABLE and len(degs) >= 3 and rng.random() < 0.4:
        spots = [i for i in range(1, len(degs) - 1)
                 if degs[i + 1] in _TONICIZABLE[mode] and chords[i + 1][1] in ((0, 4, 7), (0, 3, 7))
                 and not (cadence and i == len(degs) - 2)]
        if spots:
            i = spots[int(rng.integers(len(spots)))]
            labels[i] = chord_label(chords[i + 1][0] + 7, (0, 4, 7, 10))
    if cadence and mode in ("major", "minor") and len(degs) >= 2 and degs[-2] == 4:
        if rng.random() < 0.5:
            labels[-2] = chord_label(chords[-2][0], (0, 4, 7, 10))
    return labels


def progression_for(rng: np.random.Generator, bars: int, tonic: int, mode: str) -> list[str]:
    """Per-bar labels: 8-bar sections (4-bar antecedent ending on a half cadence, 4-bar
    consequent ending on an authentic cadence) in an A A B A ... form; ends on the tonic."""
    if bars < 1:
        raise InstructMEError(f"bars must be >= 1, got {bars}")

    def section(start: int, n: int) -> list[str]:
        if n < 8:  # a short closing section: one cadential phrase
            ending = [int(rng.choice(_PRE_FINAL[mode])), 0]
            return _phrase_labels(rng, tonic, mode, _phrase(rng, mode, n, start, ending), True)
        half = [int(rng.choice(_HALF[mode]))]
        first = _phrase(rng, mode, 4, start, half)
        final = [int(rng.choice(_PRE_FINAL[mode])), 0]
        second = _phrase(rng, mode, n - 4, start, final)
        return (_phrase_labels(rng, tonic, mode, first, False)
                + _phrase_labels(rng, tonic, mode, second, True))

    sec_a = section(0, 8) if bars >= 8 else []
    sec_b = section(int(rng.choice(_B_START[mode])), 8) if bars >= 24 else []
    out: list[str] = []
    form = ("A", "A", "B", "A")
    i = 0
    while bars - len(out) >= 8:
        name = form[i % len(form)] if sec_b else "A"
        out += sec_a if name == "A" else sec_b
        i += 1
    rest = bars - len(out)
    if rest:  # a closing section; after a full section it opens away from the tonic
        out += section(int(rng.choice(_B_START[mode])) if out else 0, rest)
    return out


def generate_progression(rng: np.random.Generator, bars: int, key: str | None = None,
                         mode: str | None = None) -> tuple[str, list[str]]:
    """Random key/mode (unless given) and a per-bar progression; returns (key label, labels).

    ``key`` may be a tonic (``"D"``) or tonic and mode (``"D:min"``, ``"A dorian"``); ``mode``
    overrides the key's mode. The key label carries the parent quality (``"D:min"`` for D
    dorian); :func:`generate_progression_in` also returns the mode."""
    key_lab, _, labels = generate_progression_in(rng, bars, key, mode)
    return key_lab, labels


def generate_progression_in(rng: np.random.Generator, bars: int, key: str | None = None,
                            mode: str | None = None) -> tuple[str, str, list[str]]:
    """Like :func:`generate_progression` but returns (key label, mode, labels)."""
    tonic, key_mode = parse_key(key) if key is not None else (int(rng.integers(12)), None)
    if mode is not None:
        key_mode = normalize_mode(mode)
    if key_mode is None:
        key_mode = str(rng.choice(list(MODES), p=[0.45, 0.3, 0.13, 0.12]))
    return key_label(tonic, key_mode), key_mode, progression_for(rng, bars, tonic, key_mode)


# ---------------------------------------------------------------------------- timeline
def build_timeline(labels: Sequence[str], chords_per_bar: int) -> list[ChordSlot]:
    """Labels (``chords_per_bar`` per bar) -> equally long chord slots in beats."""
    dur = BEATS_PER_BAR / chords_per_bar
    return [ChordSlot(i * dur, dur, parse_chord(lab)) for i, lab in enumerate(labels)]


def slot_at(timeline: Sequence[ChordSlot], beat: float) -> int:
    """Index of the slot sounding at ``beat`` (clamped to the timeline)."""
    starts = [s.start for s in timeline]
    return max(0, min(len(timeline) - 1, bisect.bisect_right(starts, beat + 1e-9) - 1))


# ---------------------------------------------------------------------------- voicings
def voice_chord(pcs: Sequence[int], lo: int, hi: int, prev: Sequence[int] | None = None,
                center: float | None = None, drop2: bool = False) -> tuple[int, ...]:
    """Voice pitch classes (root-position order) between ``lo`` and ``hi``.

    Candidates are all inversions in every octave (close position, or drop-2 for four
    voices); the chosen one minimises total voice movement from ``prev`` plus a pull toward
    ``center`` that stops the voicing drifting out of the register."""
    order = list(dict.fromkeys(p % 12 for p in pcs))
    if not order:
        return ()
    n = len(order)
    mid = (lo + hi) / 2 if center is None else center
    best: tuple[int, ...] = ()
    best_cost = math.inf
    for r in range(n):
        rot = order[r:] + order[:r]
        for base in range(lo - lo % 12 - 12, hi + 1, 12):
            notes = [base + rot[0]]
            for pc in rot[1:]:
                notes.append(notes[-1] + ((pc - notes[-1]) % 12 or 12))
            if drop2 and n >= 4:
                notes[-2] -= 12
                notes.sort()
            if notes[0] < lo or notes[-1] > hi:
                continue
            mean = sum(notes) / n
            cost = 0.35 * abs(mean - mid) * n
            if prev:
                if len(prev) == n:
                    cost += sum(abs(a - b) for a, b in zip(notes, sorted(prev)))
                else:
                    cost += abs(mean - sum(prev) / len(prev)) * n
            if cost < best_cost - 1e-9:
                best, best_cost = tuple(notes), cost
    if not best:  # range too narrow for a stacked voicing: fold each tone into range
        folded = set()
        for pc in order:
            p = lo + (pc - lo) % 12
            folded.add(p if p <= hi else p - 12)
        best = tuple(sorted(p for p in folded if lo <= p <= hi)) or (lo,)
    return best


def pitch_near(pc: int, target: float, lo: int, hi: int) -> int:
    """The pitch with pitch class ``pc`` in ``[lo, hi]`` nearest to ``target``."""
    cands = [p for p in range(lo, hi + 1) if p % 12 == pc % 12]
    if not cands:
        raise ValueError(f"no pitch class {pc} in [{lo}, {hi}]")
    return min(cands, key=lambda p: (abs(p - target), p))
