"""music21 corpus pieces -> multitrack :class:`~instructme.music.score.Song` s.

The music21 wheel ships real part-writing (Bach chorales, Palestrina masses, Monteverdi
madrigals, string quartets, ...). Each score part becomes one :class:`Part` (one stem) played by
a per-song ensemble of General MIDI programs, so the data has real harmony and voice leading
(docs/ARCHITECTURE.md, "Data"; InstructME, arXiv 2308.14360, Sec. 4.1 builds its triplets from
multitrack music). Chord labels come from the score itself, so the chord recognizer and the
chord-accuracy metric (paper Sec. 3.2 and 4.3) have exact ground truth: per beat, the
longest vertical slice of the score (what ``chordify`` computes), labelled by root + quality.

Times are seconds. Repeats are not expanded. Tempo: the score's first metronome marks (tempo
changes are followed), else a seeded tempo of 60-96 beats per minute.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from music21 import converter, corpus, meter, stream, tempo

from instructme.errors import InstructMEError
from instructme.music.chord_labels import beat_labels, chord_label, key_label, merge_labels
from instructme.music.score import ChordSegment, Note, Part, Song
from instructme.vocab import program_to_class

#: Seconds of silence left after the last note (release and reverb tail) when not truncated.
TAIL_SECONDS = 1.0
__all__ = ["bar_progression", "beat_labels", "chord_label", "key_label", "list_corpus_pieces",
           "load_corpus_song", "merge_labels", "song_id_for", "variant_program"]

# ----------------------------------------------------------------------------- ensembles
#: GM programs by register position: "top" (melody), "middle" (inner voices), "bottom" (bass).
POSITION_PROGRAMS: dict[str, tuple[int, ...]] = {
    "top": (0, 4, 11, 12, 16, 19, 24, 40, 48, 52, 56, 68, 71, 73, 74, 80, 81),
    "middle": (0, 4, 11, 16, 19, 24, 25, 26, 41, 42, 48, 49, 52, 57, 60, 65, 66, 69, 71, 88, 89),
    "bottom": (0, 19, 32, 33, 34, 38, 42, 43, 57, 58, 70),
}

#: Section ensembles: (top, middle voices (cycled), bottom) programs.
SECTION_ENSEMBLES: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "string_quartet": ((40,), (40, 41, 41), (42,)),
    "woodwind_quartet": ((73,), (68, 71, 69), (70,)),
    "brass_quartet": ((56,), (56, 60, 57), (58,)),
    "choir": ((52,), (52,), (52,)),
    "organ_strings": ((19,), (19,), (48,)),
    "piano_strings": ((0,), (48, 49), (43,)),
    "organ": ((19,), (19,), (19,)),
}
#: Probability of the "mixed" ensemble (every part a different instrument class). Section
#: ensembles (every part one class) give no add/remove/extract triplets, so they are rarer.
MIXED_PROBABILITY = 0.75

_VELOCITY = {"melody": 90, "bass": 84, "voice": 78}


def _position(rank: int, n: int) -> str:
    if rank == 0:
        return "top"
    return "bottom" if rank == n - 1 else "middle"


def _choose_ensemble(n: int, rng: np.random.Generator) -> tuple[str, list[int]]:
    """Programs for ``n`` parts ordered from highest to lowest (rank 0 = top)."""
    if n >= 2 and rng.random() < MIXED_PROBABILITY:
        used: set[str] = set()
        programs = []
        for rank in range(n):
            pool = POSITION_PROGRAMS[_position(rank, n)]
            by_class: dict[str, list[int]] = {}
            for p in pool:
                by_class.setdefault(program_to_class(p) or "other", []).append(p)
            free = sorted(c for c in by_class if c not in used) or sorted(by_class)
            cls = free[int(rng.integers(len(free)))]
            used.add(cls)
            programs.append(int(rng.choice(by_class[cls])))
        return "mixed", programs
    names = sorted(SECTION_ENSEMBLES)
    name = names[int(rng.integers(len(names)))]
    top, middle, bottom = SECTION_ENSEMBLES[name]
    programs = []
    for rank in range(n):
        pos = _position(rank, n)
        pool = top if pos == "top" else bottom if pos == "bottom" else middle
        programs.append(int(pool[(rank - 1) % len(pool)] if pos == "middle" else pool[0]))
    return name, programs


def variant_program(part: Part, rng: np.random.Generator, exclude: set[str] | None = None) -> int:
    """A GM program of another instrument class that suits ``part``'s register (for "replace").

    ``exclude``: instrument classes not to use (e.g. all classes already in the song).
    """
    pos = {"melody": "top", "bass": "bottom"}.get(part.role, "middle")
    bad = set(exclude or ()) | {part.instrument}
    options = [p for p in POSITION_PROGRAMS[pos] if program_to_class(p) not in bad]
    if not options:
        raise InstructMEError(f"no replacement program for part {part.name!r}")
    return int(rng.choice(options))


# ----------------------------------------------------------------------------- listing
@functools.lru_cache(maxsize=1)
def _corpus_index() -> tuple[tuple[str, int], ...]:
    """(corpus path, number of parts) of every single-work core-corpus file with >= 2 parts.

    From music21's bundled metadata (no score is parsed); about 1.5 s, cached in memory.
    """
    bundle = corpus.corpora.CoreCorpus().search(
        lambda n: n is not None and int(n) >= 2, "numberOfParts")
    out = {}
    for i in range(len(bundle)):  # MetadataBundle has no cheap iterator; ~2,000 entries
        entry = bundle[i]
        if entry.number is None and entry.metadata is not None:
            out[str(entry.sourcePath)] = int(entry.metadata.numberOfParts)
    return tuple(sorted(out.items()))


@functools.lru_cache(maxsize=1)
def _chorale_stems() -> frozenset[str]:
    """Corpus paths without extension of the 371 Riemenschneider chorales (350 distinct)."""
    return frozenset(corpus.chorales.Iterator(returnType="filename"))


def list_corpus_pieces(limit: int | None = None, seed: int = 0, min_parts: int = 2,
                       max_parts: int = 8) -> list[str]:
    """Deterministic list of corpus paths (e.g. ``"bach/bwv269.mxl"``) with ``min_parts`` to
    ``max_parts`` parts: Bach chorales first (seeded order), then other multi-part works
    interleaved by composer folder so that a short list is varied. Parses no score."""
    if limit is not None and limit < 0:
        raise InstructMEError(f"limit must be >= 0, got {limit}")
    if min_parts < 2 or max_parts < min_parts:
        raise InstructMEError(f"need 2 <= min_parts <= max_parts, got {min_parts}, {max_parts}")
    rng = np.random.default_rng(seed)
    chorales_stems = _chorale_stems()
    chorales: list[str] = []
    others: dict[str, list[str]] = {}
    for path, n_parts in _corpus_index():
        if not min_parts <= n_parts <= max_parts:
            continue
        if path.rsplit(".", 1)[0] in chorales_stems:
            chorales.append(path)
        else:
            others.setdefault(path.split("/", 1)[0], []).append(path)
    out = [chorales[i] for i in rng.permutation(len(chorales))]
    folders = [sorted(others)[i] for i in rng.permutation(len(others))]
    queues = [[others[f][i] for i in rng.permutation(len(others[f]))] for f in folders]
    depth = max((len(q) for q in queues), default=0)
    out += [q[k] for k in range(depth) for q in queues if k < len(q)]
    return out if limit is None else out[:limit]


def song_id_for(path: str) -> str:
    """Safe, stable song id from a corpus path: ``"bach/bwv1.6.mxl"`` -> ``"bach_bwv1_6"``."""
    p = Path(path)
    if p.is_absolute():
        p = Path(*p.parts[-2:])
    stem = str(p.with_suffix("")) if p.suffix in {".mxl", ".xml", ".krn", ".abc", ".musicxml",
                                                   ".mid", ".midi"} else str(p)
    return re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_") or "piece"


# ----------------------------------------------------------------------------- progressions
def _reduce(label: str) -> str:
    """Label -> one of maj / min / 7 / dim (the arranger's vocabulary); ``N`` stays ``N``."""
    if label == "N" or ":" not in label:
        return "N"
    root, quality = label.split(":", 1)
    if quality == "7":
        return label
    if quality in ("min", "min6", "min7", "minmaj7", "min9", "min11", "min13"):
        return f"{root}:min"
    if quality in ("dim", "dim7", "hdim7"):
        return f"{root}:dim"
    return f"{root}:maj"


def bar_progression(song: Song, bars: int) -> list[str]:
    """One chord label per bar (maj/min/7/dim), the label sounding longest in each bar.

    Uses ``song.meta["bar_times"]`` (corpus songs) or 4 beats per bar at ``song.tempo``; a
    pickup bar is skipped; bars without a chord repeat the previous one; a song shorter than
    ``bars`` bars wraps around to its start.
    """
    if bars < 1:
        raise InstructMEError(f"bars must be >= 1, got {bars}")
    starts = list(song.meta.get("bar_times") or [])
    if song.meta.get("pickup") and len(starts) > 1:
        starts = starts[1:]
    if not starts:
        bar = 4 * 60.0 / song.tempo
        starts = list(np.arange(0.0, song.duration, bar))
    edges = [*starts, song.duration]
    labels = []
    for a, b in zip(edges[:-1], edges[1:]):
        weights: Counter[str] = Counter()
        for seg in song.chords:
            overlap = min(b, seg.end) - max(a, seg.start)
            lab = _reduce(seg.label)
            if overlap > 1e-9 and lab != "N":
                weights[lab] += overlap
        # The longest label wins; ties go to the earliest in the bar (dicts keep order).
        labels.append(max(weights, key=lambda k: round(weights[k], 6)) if weights else "N")
    known = [lab for lab in labels if lab != "N"]
    if not known:
        raise InstructMEError(f"song {song.song_id!r} has no chords to take a progression from")
    prev = known[0]
    filled = []
    for lab in labels:
        prev = lab if lab != "N" else prev
        filled.append(prev)
    return [filled[i % len(filled)] for i in range(bars)]


# ----------------------------------------------------------------------------- loading
class _TempoMap:
    """Quarter-length offsets -> seconds, following metronome marks (piecewise constant)."""

    def __init__(self, marks: list[tuple[float, float]]):
        self.ql = np.array([q for q, _ in marks], dtype=np.float64)
        self.spq = np.array([60.0 / bpm for _, bpm in marks], dtype=np.float64)
        self.sec = np.concatenate([[0.0], np.cumsum(np.diff(self.ql) * self.spq[:-1])])

    def __call__(self, q: float | np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        i = np.clip(np.searchsorted(self.ql, q, side="right") - 1, 0, len(self.ql) - 1)
        return self.sec[i] + (q - self.ql[i]) * self.spq[i]


def _parse(path: str):
    """A corpus path (``"bach/bwv269"``) or a score file (MusicXML, kern, ABC, MIDI) -> Score."""
    try:
        with warnings.catch_warnings():  # music21 warns about overfull measures etc.
            warnings.simplefilter("ignore")
            if Path(path).is_file():
                score = converter.parse(path, forceSource=True, storePickle=False)
            else:
                score = corpus.parse(path, forceSource=True)
    except Exception as e:  # music21 raises many kinds (CorpusException, parse errors, ...)
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InstructMEError(f"corpus piece {path!r} could not be parsed ({msg})") from None
    if isinstance(score, stream.Opus):
        scores = list(score.scores)
        if not scores:
            raise InstructMEError(f"corpus piece {path!r} is an empty collection")
        score = scores[0]
    if not isinstance(score, stream.Score) or not score.parts:
        raise InstructMEError(f"corpus piece {path!r} has no parts")
    if any(p.atSoundingPitch is False for p in score.parts):  # e.g. a Bb clarinet part
        score.toSoundingPitch(inPlace=True)
    return score


def _part_notes(part, to_sec: _TempoMap, rng: np.random.Generator, velocity: int) -> list[Note]:
    """Pitched notes of a music21 part in seconds; ties merged, grace notes and rests skipped."""
    elements = []
    for el in part.flatten().notes:
        ql = float(el.quarterLength)
        if ql <= 0 or not hasattr(el, "pitches"):
            continue
        for p in el.pitches:
            tie = el.tie.type if el.tie is not None else None
            if el.isChord:
                sub = next((n for n in el.notes if n.pitch is p), None)
                tie = sub.tie.type if sub is not None and sub.tie is not None else tie
            elements.append((float(el.offset), float(el.offset) + ql, int(p.midi), tie))
    elements.sort(key=lambda e: (e[0], e[2]))
    notes: list[Note] = []
    open_ties: dict[int, tuple[Note, float]] = {}
    for start_q, end_q, midi, tie in elements:
        if not 0 <= midi <= 127:
            continue
        held = open_ties.get(midi)
        if tie in ("stop", "continue") and held is not None and abs(held[1] - start_q) < 1e-6:
            held[0].end = float(to_sec(end_q))
            open_ties[midi] = (held[0], end_q)
            if tie == "stop":
                del open_ties[midi]
            continue
        vel = int(np.clip(velocity + rng.integers(-6, 7), 1, 127))
        note = Note(midi, float(to_sec(start_q)), float(to_sec(end_q)), vel)
        notes.append(note)
        if tie in ("start", "continue"):
            open_ties[midi] = (note, end_q)
        else:
            open_ties.pop(midi, None)
    return notes


def _beats(score, highest: float) -> tuple[list[float], list[float], bool, str, float]:
    """Measure starts and beat starts (quarter lengths) from the first part's measures."""
    measures = list(score.parts[0].getElementsByClass(stream.Measure))
    ts = None
    first_ts = None
    bar_q, beat_q, pickup = [], [], False
    for k, m in enumerate(measures):
        ts = m.timeSignature or ts
        if ts is None:
            ts = meter.TimeSignature("4/4")
        first_ts = first_ts or ts
        start = float(m.offset)
        length = float(m.duration.quarterLength) or float(ts.barDuration.quarterLength)
        if k == 0 and length < float(ts.barDuration.quarterLength) - 1e-6:
            pickup = True
        bar_q.append(start)
        step = float(ts.beatDuration.quarterLength)
        beat_q.extend(float(b) for b in np.arange(start, start + length - 1e-6, step))
    if not measures:
        first_ts = meter.TimeSignature("4/4")
        bar_q = list(np.arange(0.0, highest, 4.0))
        beat_q = list(np.arange(0.0, highest, 1.0))
    assert first_ts is not None
    return bar_q, beat_q, pickup, first_ts.ratioString, float(first_ts.beatDuration.quarterLength)


def load_corpus_song(path: str, seed: int, max_seconds: float | None = 120.0) -> Song:
    """Parse a music21 corpus piece (or a score file) into a multitrack :class:`Song`.

    Every part with pitched notes becomes a :class:`Part` (exact duplicates of another part are
    dropped); parts are ranked by mean pitch: the highest is ``"melody"``, the lowest ``"bass"``,
    the others ``"voice"``. Programs come from a seeded ensemble (a section such as a string
    quartet, or "mixed": one instrument class per part). Chords are per-beat labels of the
    score's vertical slices (:func:`beat_labels`), merged; they cover ``[0, duration]``
    (``"N"`` where nothing sounds).
    ``max_seconds`` truncates at the last bar line before it (or exactly at it).
    """
    if max_seconds is not None and max_seconds <= 0:
        raise InstructMEError(f"max_seconds must be > 0, got {max_seconds}")
    score = _parse(path)
    rng = np.random.default_rng(seed)
    highest = float(score.highestTime)
    if highest <= 0:
        raise InstructMEError(f"corpus piece {path!r} is empty")
    bar_q, beat_q, pickup, ts_label, beat_ql = _beats(score, highest)

    marks: dict[float, float] = {}
    for mm in score.recurse().getElementsByClass(tempo.MetronomeMark):
        bpm = mm.getQuarterBPM()
        off = float(mm.getOffsetInHierarchy(score))
        if bpm and 10 <= bpm <= 400 and off not in marks:
            marks[off] = float(bpm)
    tempo_source = "score" if marks else "seeded"
    if not marks:
        marks[0.0] = round(float(rng.uniform(60.0, 96.0)) * beat_ql, 1)
    items = sorted(marks.items())
    items[0] = (0.0, items[0][1])
    to_sec = _TempoMap(items)

    raw_parts = []
    seen: set[tuple] = set()
    for idx, mpart in enumerate(score.parts):
        notes = _part_notes(mpart, to_sec, rng, 80)
        sig = tuple((n.pitch, round(n.start, 6), round(n.end, 6)) for n in notes)
        if not notes or sig in seen:
            continue
        seen.add(sig)
        raw_parts.append((idx, mpart.partName or "", notes))
    if not raw_parts:
        raise InstructMEError(f"corpus piece {path!r} has no pitched notes")

    end = max(n.end for _, _, notes in raw_parts for n in notes)
    duration, truncated = end + TAIL_SECONDS, False
    bar_times = [float(t) for t in to_sec(np.array(bar_q))] if bar_q else []
    if max_seconds is not None and duration > max_seconds:
        truncated = True
        cuts = [t for t in bar_times if 0.5 * max_seconds <= t <= max_seconds]
        duration = cuts[-1] if cuts else float(max_seconds)
    bar_times = [t for t in bar_times if t < duration - 1e-6]

    clipped = []  # parts that still play before the cut
    for idx, pname, notes in raw_parts:
        kept = [Note(x.pitch, x.start, min(x.end, duration), x.velocity)
                for x in notes if x.start < duration - 1e-6]
        if kept:
            clipped.append((idx, pname, kept))
    n = len(clipped)
    order = sorted(range(n), key=lambda i: -np.mean([x.pitch for x in clipped[i][2]]))
    ensemble, programs = _choose_ensemble(n, rng)
    parts: list[Part | None] = [None] * n
    used_names: set[str] = set()
    for rank, i in enumerate(order):
        idx, pname, notes = clipped[i]
        role = "melody" if rank == 0 else "bass" if rank == n - 1 and n > 1 else "voice"
        for x in notes:
            x.velocity = int(np.clip(x.velocity - 80 + _VELOCITY[role], 1, 127))
        base = re.sub(r"[^a-z0-9]+", "_", pname.lower()).strip("_") or f"part{idx + 1}"
        name, k = base, 2
        while name in used_names:
            name, k = f"{base}_{k}", k + 1
        used_names.add(name)
        program = programs[rank]
        parts[i] = Part(name, program, program_to_class(program) or "other", role, notes)
    final = [p for p in parts if p is not None]

    music_end = min(duration, float(to_sec(highest)))
    beat_sec = [t for t in (float(x) for x in to_sec(np.array(beat_q))) if t < music_end - 1e-9]
    labels = beat_labels(final, beat_sec, music_end)
    chords = merge_labels(beat_sec, labels, music_end)
    if not chords or chords[0].start > 0:
        chords.insert(0, ChordSegment(0.0, chords[0].start if chords else duration, "N"))
    if chords[-1].end < duration - 1e-9:
        chords.append(ChordSegment(chords[-1].end, duration, "N"))

    sid = song_id_for(path)
    key = key_label([x for _, _, notes in raw_parts for x in notes])  # whole piece
    return Song(
        song_id=sid, source="corpus", group=sid, tempo=float(items[0][1]),
        key=key, duration=float(duration), parts=final, chords=chords,
        meta={"corpus_path": path, "ensemble": ensemble, "time_signature": ts_label,
              "tempo_source": tempo_source, "bar_times": bar_times, "pickup": pickup,
              "truncated": truncated, "dropped_parts": len(score.parts) - len(final)},
    )
