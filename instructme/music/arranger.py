"""Procedural multi-style arranger: one song group (melody + progression + tempo + key)
arranged in several styles, one :class:`~instructme.music.score.Song` per style.

InstructME trains on (source, instruction, target) triplets cut from multitrack music
(arXiv 2308.14360, Sec. 4.1); remixing ("play this as jazz") needs pairs of songs that share
melody and harmony but differ in style. Here the group's progression (generated with
functional harmony, or passed in, e.g. from a music21 corpus piece), melody and tempo are
fixed once; every style then picks its own instruments from a pool of General MIDI programs
(distinct instrument classes within a song, so "remove the piano" is unambiguous), drum
groove (half/double-time feel instead of another tempo), bass line, comping and optional
pad, and may only move the melody by octaves and change its articulation. So remix targets
are time-aligned and keep the melody's pitch classes and onsets and the chords (styles that
play sevenths label them: "C:maj" becomes "C:maj7" in jazz, the same major/minor triad).

Styles, timings and pools are in :data:`STYLE_SPECS` (one per style of
:data:`instructme.vocab.STYLES`, in that order); the music itself comes from
:mod:`~instructme.music.harmony`, :mod:`~instructme.music.melody`,
:mod:`~instructme.music.grooves` and :mod:`~instructme.music.accompaniment`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from instructme.errors import InstructMEError
from instructme.music.accompaniment import (
    BASS_RANGE,
    COMP_RANGE,
    PAD_RANGE,
    bass_events,
    comp_events,
)
from instructme.music.grooves import DRUM_RANGE, drum_events
from instructme.music.harmony import (
    BEATS_PER_BAR,
    Chord,
    ChordSlot,
    Ev,
    build_timeline,
    chord_label,
    clip_velocity,
    estimate_key,
    generate_progression,
    generate_progression_in,
    key_label,
    parse_chord,
    parse_key,
    scale_pcs,
)
from instructme.music.melody import generate_melody
from instructme.music.score import ChordSegment, Note, Part, Song
from instructme.vocab import STYLES, program_to_class

__all__ = [
    "ROLE_RANGES", "STYLES", "STYLE_DESCRIPTIONS", "STYLE_SPECS", "StyleSpec", "arrange_group",
    "generate_progression", "replacement_programs",
]

#: Allowed MIDI pitch range per part role.
ROLE_RANGES: dict[str, tuple[int, int]] = {
    "bass": BASS_RANGE, "melody": (60, 84), "comp": COMP_RANGE, "pad": PAD_RANGE,
    "drums": DRUM_RANGE,
}
MIN_NOTE_SECONDS = 0.03


@dataclass(frozen=True)
class StyleSpec:
    """One style: GM program pools per role, patterns, feel, swing, chord colour.

    ``swing`` is where the off-beat eighth falls inside a beat (0.5 straight, 2/3 triplet
    swing); ``feels`` are the groove speed factors allowed (0.5 half time, 2 double time);
    ``comp_patterns`` maps an instrument class (``"*"``: any other) to comp patterns;
    ``enrich`` adds sevenths to triads ("sevenths": maj7/min7/dominant 7/half-diminished,
    "funk": min7 and dominant 7 only)."""

    description: str
    tempo_range: tuple[float, float]
    bass: tuple[int, ...]
    comp: tuple[int, ...]
    melody: tuple[int, ...]
    pad: tuple[int, ...]
    bass_patterns: tuple[str, ...]
    comp_patterns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    feels: tuple[float, ...] = (1.0,)
    swing: float = 0.5
    pad_prob: float = 0.5
    melody_octaves: tuple[int, ...] = (0,)
    articulation: float = 0.95
    velocity_offset: int = 0
    enrich: str = "none"
    drums: bool = True


STYLE_SPECS: dict[str, StyleSpec] = {
    "pop": StyleSpec(
        "pop: four-on-the-snare backbeat, eighth-note hats, piano or strummed guitar, "
        "synth, flute or sax lead", (90, 128),
        bass=(33, 34, 38), comp=(0, 4, 25, 24, 1), melody=(80, 73, 65, 11, 81),
        pad=(89, 48, 88, 52), bass_patterns=("pop", "rock8"), feels=(1.0, 0.5), pad_prob=0.6,
        comp_patterns={"piano": ("block_pop", "arp8", "block_quarters"), "guitar": ("strum",),
                       "*": ("block_pop",)}),
    "rock": StyleSpec(
        "rock: driving eighth-note bass and hats, distorted power chords or rock organ",
        (100, 160), bass=(33, 34), comp=(29, 30, 16, 17, 18), melody=(30, 81, 18, 65, 62),
        pad=(48, 16, 89), bass_patterns=("rock8",), feels=(1.0, 2.0), pad_prob=0.3,
        articulation=0.9, velocity_offset=6,
        comp_patterns={"guitar": ("power8", "strum"), "organ": ("sustain", "halves"),
                       "*": ("halves",)}),
    "jazz": StyleSpec(
        "jazz: swung ride cymbal, walking upright bass, shell-voiced piano/guitar/vibes "
        "comping, sax or trumpet lead, seventh chords", (100, 200),
        bass=(32, 33), comp=(0, 4, 26, 11), melody=(65, 56, 73, 11, 71), pad=(48, 52),
        bass_patterns=("walking", "walking", "two_feel"), feels=(1.0, 2.0), swing=2 / 3,
        pad_prob=0.15, enrich="sevenths", comp_patterns={"*": ("jazz_comp",)}),
    "funk": StyleSpec(
        "funk: syncopated sixteenth-note kick and ghost-note snare, slap bass, clavinet or "
        "muted-guitar stabs, brass lead", (90, 118),
        bass=(36, 37, 33, 38), comp=(27, 7, 4, 28, 16), melody=(61, 56, 65, 80), pad=(89, 62),
        bass_patterns=("funk", "funk2"), feels=(1.0, 0.5), swing=0.54, pad_prob=0.25,
        articulation=0.8, velocity_offset=4, enrich="funk", comp_patterns={"*": ("stabs16",)}),
    "ballad": StyleSpec(
        "ballad: soft half-time drums with side stick, arpeggiated piano, nylon guitar or "
        "harp, strings pad, flute, clarinet or violin lead", (60, 84),
        bass=(33, 32, 35), comp=(0, 1, 24, 46), melody=(73, 71, 40, 68, 65, 53),
        pad=(48, 49, 89, 52), bass_patterns=("ballad", "sustain"), feels=(1.0, 0.5),
        pad_prob=0.7, velocity_offset=-12,
        comp_patterns={"piano": ("arp8", "halves"), "*": ("arp8",)}),
    "electronic": StyleSpec(
        "electronic: four-on-the-floor kick, clap, off-beat open hats, octave synth bass, "
        "gated or off-beat synth chords, lush pads", (118, 132),
        bass=(38, 39), comp=(90, 81, 5, 62, 50), melody=(80, 81, 84, 85, 12),
        pad=(88, 89, 91, 94, 95, 50), bass_patterns=("octave", "offbeat"),
        feels=(1.0, 2.0, 0.5), pad_prob=0.8, melody_octaves=(0, 1), articulation=0.85,
        comp_patterns={"*": ("offbeat_stabs", "gated16", "sustain")}),
    "latin": StyleSpec(
        "latin: son clave, congas, cowbell or bongos, anticipated tumbao bass, piano "
        "montuno, trumpet or flute lead", (90, 130),
        bass=(32, 33), comp=(0, 24, 25), melody=(56, 73, 65, 11, 12), pad=(48, 61),
        bass_patterns=("tumbao",), pad_prob=0.3, articulation=0.85,
        comp_patterns={"piano": ("montuno",), "guitar": ("strum", "montuno"),
                       "*": ("montuno",)}),
    "orchestral": StyleSpec(
        "orchestral: no drums; string section, horns and woodwinds; contrabass or tuba "
        "bass, sustained or pulsing open voicings", (60, 120),
        bass=(43, 58), comp=(48, 49, 60, 61, 52), melody=(73, 68, 71, 40, 56, 69),
        pad=(52, 48, 60), bass_patterns=("sustain", "halves"), pad_prob=0.5,
        melody_octaves=(0, 1), velocity_offset=-6, drums=False,
        comp_patterns={"strings": ("orch_sustain", "orch_pulse"), "*": ("orch_sustain",)}),
    "reggae": StyleSpec(
        "reggae: one-drop drums, off-beat skank chords on organ, piano or guitar, melodic "
        "bass", (60, 85),
        bass=(33, 34), comp=(16, 0, 27, 4), melody=(65, 56, 80, 22), pad=(89, 48),
        bass_patterns=("reggae",), feels=(1.0, 0.5), swing=0.56, pad_prob=0.3,
        comp_patterns={"*": ("skank",)}),
    "country": StyleSpec(
        "country: train-beat snare, boom-chick root-fifth bass, strummed steel guitar or "
        "banjo, fiddle or harmonica lead", (90, 140),
        bass=(33, 32), comp=(25, 105, 0), melody=(110, 40, 22, 73), pad=(48, 19),
        bass_patterns=("country", "country_walk"), feels=(1.0, 2.0), pad_prob=0.2,
        comp_patterns={"guitar": ("country_strum", "strum"), "*": ("block_quarters",)}),
    "bossa": StyleSpec(
        "bossa nova: cross-stick bossa clave, nylon guitar shell chords, root-fifth bass, "
        "flute or sax lead, seventh chords", (110, 140),
        bass=(32, 33), comp=(24, 0, 4), melody=(73, 65, 11, 71), pad=(48, 89),
        bass_patterns=("bossa",), feels=(1.0, 2.0), pad_prob=0.3, velocity_offset=-8,
        enrich="sevenths", comp_patterns={"*": ("bossa_comp",)}),
}
STYLE_DESCRIPTIONS: dict[str, str] = {k: v.description for k, v in STYLE_SPECS.items()}

#: Programs any style may use when a part is re-orchestrated ("replace X with Y").
GENERIC_POOLS: dict[str, tuple[int, ...]] = {
    "melody": (73, 71, 68, 65, 56, 40, 11, 80, 81, 16, 22, 0, 4, 26, 53, 12, 110),
    "comp": (0, 4, 7, 24, 25, 27, 16, 18, 48, 50, 61, 89, 90, 11, 46),
    "pad": (48, 49, 50, 52, 89, 88, 91, 19, 16, 61),
    "bass": (32, 33, 34, 38, 43, 58, 0, 19),
}


# ---------------------------------------------------------------------------- helpers
def _feel(spec: StyleSpec, tempo: float) -> float:
    """The allowed groove speed factor whose effective tempo is nearest the style's range."""
    lo, hi = spec.tempo_range

    def dist(f: float) -> float:
        t = tempo * f
        return 0.0 if lo <= t <= hi else min(abs(math.log(t / lo)), abs(math.log(t / hi)))

    return min(spec.feels, key=lambda f: (round(dist(f), 9), abs(math.log(f))))


def _enrich(chord: Chord, how: str, tonic: int) -> Chord:
    """Add the style's sevenths to plain triads (slash chords are left alone)."""
    if how == "none" or chord.is_none or chord.bass != chord.root:
        return chord
    ivs = chord.intervals
    dominant = chord.root == (tonic + 7) % 12
    new: tuple[int, ...] | None = None
    if ivs == (0, 4, 7):
        new = (0, 4, 7, 10) if dominant else ((0, 4, 7, 11) if how == "sevenths" else None)
    elif ivs == (0, 3, 7):
        new = (0, 3, 7, 10)
    elif ivs == (0, 3, 6) and how == "sevenths":
        new = (0, 3, 6, 10)
    return parse_chord(chord_label(chord.root, new)) if new else chord


def _swing(beat: float, ratio: float, unit: float = 1.0) -> float:
    """Move the off-beat of every ``unit`` beats to ``ratio`` of it (piecewise-linear time
    warp; ``unit`` 0.5 swings sixteenths, for a double-time groove)."""
    if abs(ratio - 0.5) < 1e-9:
        return beat
    x = beat / unit
    b = math.floor(x + 1e-9)
    f = x - b
    return unit * (b + (f * ratio / 0.5 if f <= 0.5 else ratio + (f - 0.5) * (1 - ratio) / 0.5))


def _to_notes(evs: Iterable[Ev], spb: float, swing: float, role: str,
              vel_offset: int = 0, swing_unit: float = 1.0) -> list[Note]:
    """Beat events -> :class:`Note` in seconds; same-pitch overlaps are cut so that every
    note-off belongs to its own note. Raises ``RuntimeError`` on an out-of-range pitch
    (a generator bug, not a user error)."""
    lo, hi = ROLE_RANGES[role]
    notes: list[Note] = []
    for e in evs:
        if not lo <= e.pitch <= hi:
            raise RuntimeError(f"{role} pitch {e.pitch} outside [{lo}, {hi}]")
        s = _swing(e.start, swing, swing_unit) * spb
        t = _swing(e.start + e.dur, swing, swing_unit) * spb
        vel = clip_velocity(e.vel + vel_offset)
        notes.append(Note(int(e.pitch), round(s, 6), round(max(t, s + MIN_NOTE_SECONDS), 6), vel))
    notes.sort(key=lambda n: (n.pitch, n.start, -n.velocity))
    kept: list[Note] = []
    for n in notes:
        if kept and kept[-1].pitch == n.pitch and n.start < kept[-1].end:
            if n.start - kept[-1].start < MIN_NOTE_SECONDS:
                kept[-1].end = max(kept[-1].end, n.end)  # a duplicate: merge into the first
                continue
            kept[-1].end = n.start
        kept.append(n)
    kept.sort(key=lambda n: (n.start, n.pitch))
    return kept


def _choose_programs(spec: StyleSpec, rng: np.random.Generator) -> dict[str, int]:
    """One GM program per role, each from an instrument class not used yet in the song
    (the pad is dropped rather than doubling a class)."""
    want_pad = rng.random() < spec.pad_prob
    used = {"drums"} if spec.drums else set()
    out: dict[str, int] = {}
    for role in ("bass", "melody", "comp", "pad"):
        pool: tuple[int, ...] = getattr(spec, role)
        if role == "pad" and not want_pad:
            continue
        opts = [p for p in pool if program_to_class(p) not in used]
        if not opts:
            if role == "pad":
                continue
            opts = list(pool)
        prog = int(opts[int(rng.integers(len(opts)))])
        out[role] = prog
        used.add(program_to_class(prog) or "")
    return out


def _melody_for_style(melody: Sequence[Ev], spec: StyleSpec,
                      rng: np.random.Generator) -> tuple[list[Ev], int]:
    """The group melody, shifted by a style octave that keeps it in range, articulated."""
    lo, hi = ROLE_RANGES["melody"]
    fits = [o for o in spec.melody_octaves
            if all(lo <= e.pitch + 12 * o <= hi for e in melody)] or [0]
    octave = int(fits[int(rng.integers(len(fits)))])
    out = [Ev(e.start, max(e.dur * spec.articulation, 0.1), e.pitch + 12 * octave, e.vel)
           for e in melody]
    return out, octave


def _chord_segments(timeline: Sequence[ChordSlot], spb: float) -> list[ChordSegment]:
    segs: list[ChordSegment] = []
    for slot in timeline:
        start, end = slot.start * spb, (slot.start + slot.dur) * spb
        label = slot.chord.label
        if segs and segs[-1].label == label:
            segs[-1].end = round(end, 6)
        else:
            segs.append(ChordSegment(round(start, 6), round(end, 6), label))
    return segs


@dataclass
class _Group:
    group_id: str
    seed: int
    bars: int
    tempo: float
    tonic: int
    mode: str
    key: str
    labels: list[str]
    chords_per_bar: int
    timeline: list[ChordSlot]
    melody: list[Ev]


def _arrange_style(g: _Group, style: str) -> Song:
    spec = STYLE_SPECS[style]
    rng = np.random.default_rng([g.seed, zlib.crc32(style.encode())])
    spb = 60.0 / g.tempo
    feel = _feel(spec, g.tempo)
    timeline = [s._replace(chord=_enrich(s.chord, spec.enrich, g.tonic)) for s in g.timeline]
    programs = _choose_programs(spec, rng)
    parts: list[Part] = []
    if spec.drums:
        drums = _to_notes(drum_events(style, g.bars, feel, rng), spb, spec.swing, "drums",
                          spec.velocity_offset, swing_unit=min(1.0, 1.0 / feel))
        parts.append(Part("drums", 0, "drums", "drums", drums, is_drum=True))
    bass_pattern = spec.bass_patterns[int(rng.integers(len(spec.bass_patterns)))]
    bass = bass_events(bass_pattern, timeline, g.bars, rng)
    comp_cls = program_to_class(programs["comp"]) or "piano"
    choices = spec.comp_patterns.get(comp_cls) or spec.comp_patterns.get("*") or ("halves",)
    comp_pattern = choices[int(rng.integers(len(choices)))]
    comp = comp_events(comp_pattern, timeline, g.bars, comp_cls, rng)
    melody, octave = _melody_for_style(g.melody, spec, rng)
    voices = [("bass", bass, spec.swing), ("comp", comp, spec.swing), ("melody", melody, 0.5)]
    if "pad" in programs:
        pad_cls = program_to_class(programs["pad"]) or "synth_pad"
        voices.append(("pad", comp_events("sustain", timeline, g.bars, pad_cls, rng, "pad"),
                       0.5))
    for role, evs, swing in voices:
        prog = programs[role]
        notes = _to_notes(evs, spb, swing, role, spec.velocity_offset)
        parts.append(Part(role, prog, program_to_class(prog) or "other", role, notes))
    meta = {
        "progression": list(g.labels), "chords_per_bar": g.chords_per_bar, "mode": g.mode,
        "time_signature": "4/4", "bars": g.bars, "feel": feel, "swing": spec.swing,
        "programs": programs, "patterns": {"bass": bass_pattern, "comp": comp_pattern},
        "melody_octave": octave, "description": spec.description,
    }
    return Song(song_id=f"{g.group_id}-{style}", source="arranger", group=g.group_id,
                tempo=g.tempo, key=g.key, duration=round(g.bars * BEATS_PER_BAR * spb, 6),
                parts=parts, chords=_chord_segments(timeline, spb), style=style, meta=meta)


# ---------------------------------------------------------------------------- API
def _group(group_id: str, seed: int, bars: int, progression: Sequence[str] | None,
           key: str | None, tempo: float | None, chords_per_bar: int | None) -> _Group:
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
        raise InstructMEError(f"bars must be a positive integer, got {bars!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InstructMEError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    if progression is None:
        key_lab, mode, labels = generate_progression_in(rng, bars, key)
        tonic, cpb = parse_key(key_lab)[0], 1
    else:
        labels = [str(x) for x in progression]
        if not labels:
            raise InstructMEError("progression is empty")
        cpb = chords_per_bar or (2 if len(labels) == 2 * bars else 1)
        if cpb not in (1, 2, 4):
            raise InstructMEError(f"chords_per_bar must be 1, 2 or 4, got {cpb!r}")
        need = bars * cpb
        labels = (labels * math.ceil(need / len(labels)))[:need]  # loop or cut to the bars
        chords = [parse_chord(x) for x in labels]
        if all(c.is_none for c in chords):
            raise InstructMEError("progression has no chords (only 'N')")
        given_tonic, given_mode = parse_key(key) if key is not None else (None, None)
        tonic, mode = estimate_key(chords, tonic=given_tonic)
        mode = given_mode or mode
        key_lab = key_label(tonic, mode)
    if tempo is None:
        tempo = float(rng.integers(78, 133))
    elif not isinstance(tempo, (int, float)) or not 30 <= float(tempo) <= 300:
        raise InstructMEError(f"tempo must be 30-300 BPM, got {tempo!r}")
    timeline = build_timeline(labels, cpb)
    melody = generate_melody(rng, timeline, bars, scale_pcs(tonic, mode), tonic)
    return _Group(group_id, int(seed), bars, float(tempo), tonic, mode, key_lab, labels, cpb,
                  timeline, melody)


def arrange_group(group_id: str, styles: Sequence[str], seed: int, bars: int = 24,
                  progression: list[str] | None = None, key: str | None = None,
                  tempo: float | None = None, chords_per_bar: int | None = None) -> list[Song]:
    """Arrange one song group in each of ``styles``; returns one :class:`Song` per style
    (``song_id=f"{group_id}-{style}"``), all sharing tempo, key, progression and melody.

    ``progression``: mir_eval labels, ``chords_per_bar`` per bar (default: 2 when there are
    exactly ``2 * bars`` labels, else 1), looped or cut to ``bars``; by default one is
    generated. ``key``: ``"D:min"``, ``"Eb"``, ``"A dorian"``...; estimated from a given
    progression when omitted. ``tempo`` in BPM (default: drawn from 78-132). Each style's
    own choices come from a generator seeded by (seed, style), so a style's song does not
    depend on which other styles are arranged with it."""
    styles = list(styles)
    if not styles:
        raise InstructMEError("no styles given")
    unknown = [s for s in styles if s not in STYLE_SPECS]
    if unknown:
        raise InstructMEError(f"unknown style {unknown[0]!r} (known: {', '.join(STYLES)})")
    if len(set(styles)) != len(styles):
        raise InstructMEError(f"styles repeat: {styles}")
    g = _group(group_id, seed, bars, progression, key, tempo, chords_per_bar)
    return [_arrange_style(g, s) for s in styles]


def replacement_programs(part: Part, style: str, rng: np.random.Generator,
                         exclude_classes: Iterable[str] = ()) -> list[int]:
    """GM programs of *other* instrument classes that could play ``part`` in ``style``
    (for "replace X with Y"): the style's pool for the part's role first, then generic
    ones, each group shuffled; drums have none. ``exclude_classes`` (e.g. the classes
    already in the song) are left out too."""
    if style not in STYLE_SPECS:
        raise InstructMEError(f"unknown style {style!r} (known: {', '.join(STYLES)})")
    if part.is_drum or part.role == "drums":
        return []
    role = part.role if part.role in GENERIC_POOLS else "melody"
    own = part.instrument or program_to_class(part.program)
    bad = {own, "drums", None, *exclude_classes}
    spec = STYLE_SPECS[style]
    first = [p for p in dict.fromkeys(getattr(spec, role)) if program_to_class(p) not in bad]
    rest = [p for p in dict.fromkeys(GENERIC_POOLS[role])
            if program_to_class(p) not in bad and p not in first]
    return [int(first[i]) for i in rng.permutation(len(first))] + \
        [int(rest[i]) for i in rng.permutation(len(rest))]
