"""Bass lines, harmonic comping and pads for the procedural arranger.

Parts are generated chord slot by chord slot from rhythm templates (one 4/4 bar; a shorter
slot uses the events that fit). Bass templates name chord functions (root, fifth, octave,
third, seventh, chromatic/dominant approach to the next root, anticipation of the next root);
jazz walks (chord tones heading for a chromatic approach note). Comp templates name voiced
chords, left-hand roots, arpeggio steps, guitar strums (notes staggered low-to-high or
high-to-low), power chords and montuno octaves. Voicings are voice-led
(:func:`instructme.music.harmony.voice_chord`); jazz and bossa use shell voicings (root, 3rd,
7th). The final bar of a song holds the last chord. These supply the bass and chord stems
that InstructME's add/remove/extract/replace edits act on (arXiv 2308.14360, Sec. 4.1).
Times are beats; swing is applied later.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instructme.music.harmony import (
    BEATS_PER_BAR,
    Chord,
    ChordSlot,
    Ev,
    clip_velocity,
    pitch_near,
    voice_chord,
)

BASS_RANGE = (28, 55)
COMP_RANGE = (36, 88)
PAD_RANGE = (48, 84)
#: Comp register (lowest, highest pitch of the voiced chord) per instrument class.
COMP_REGISTER: dict[str, tuple[int, int]] = {
    "piano": (52, 79), "guitar": (50, 74), "organ": (50, 79), "strings": (50, 84),
    "brass": (50, 76), "synth_pad": (50, 81), "synth_lead": (55, 81), "mallets": (55, 84),
    "woodwinds": (55, 79), "choir": (52, 76),
}

Template = tuple[tuple[float, float, str, int], ...]  # (offset, duration, token, velocity)

BASS_TEMPLATES: dict[str, Template] = {
    "pop": ((0, 1.5, "R", 100), (1.5, 0.5, "R", 80), (2, 1, "5", 90), (3, 0.5, "R", 85),
            (3.5, 0.5, "A", 80)),
    "rock8": tuple((i * 0.5, 0.45, "R", 104 if i % 2 == 0 else 86) for i in range(7))
    + ((3.5, 0.45, "A", 86),),
    "ballad": ((0, 2, "R", 92), (2, 1.5, "5", 80), (3.5, 0.5, "A", 74)),
    "sustain": ((0, 4, "R", 86),),
    "halves": ((0, 2, "R", 88), (2, 2, "5", 80)),
    "funk": ((0, 0.5, "R", 116), (0.75, 0.25, "R", 56), (1.5, 0.25, "8", 104),
             (1.75, 0.25, "R", 70), (2.5, 0.5, "R", 100), (3, 0.25, "7", 92),
             (3.5, 0.25, "8", 106)),
    "funk2": ((0, 0.75, "R", 116), (1, 0.25, "8", 100), (1.25, 0.25, "R", 60),
              (2, 0.25, "R", 96), (2.25, 0.5, "5", 90), (3.25, 0.25, "7", 92),
              (3.5, 0.5, "A", 100)),
    "tumbao": ((1.5, 1.5, "5", 96), (3, 1.5, "N", 104)),
    "bossa": ((0, 1.5, "R", 96), (1.5, 0.5, "R", 78), (2, 1.5, "5", 90), (3.5, 0.5, "5", 78)),
    "octave": tuple((i * 0.5, 0.4, "R" if i % 2 == 0 else "8", 100 if i % 2 == 0 else 90)
                    for i in range(8)),
    "offbeat": tuple((i + 0.5, 0.45, "R", 104) for i in range(4)),
    "reggae": ((0, 0.75, "R", 104), (1, 0.5, "R", 84), (1.5, 0.5, "3", 88), (2, 1.0, "5", 92),
               (3.5, 0.5, "A", 80)),
    "country": ((0, 0.9, "R", 100), (2, 0.9, "5", 92)),
    "country_walk": ((0, 0.9, "R", 100), (1, 0.9, "3", 84), (2, 0.9, "5", 92),
                     (3, 0.9, "A", 86)),
    "two_feel": ((0, 1.9, "R", 96), (2, 1.9, "5", 88)),
}

_JAZZ_COMP: tuple[Template, ...] = (
    ((0, 0.75, "C", 84), (1.5, 1.0, "C", 92)), ((1.5, 0.5, "C", 88), (3.5, 0.5, "C", 90)),
    ((0, 2, "C", 82),), ((0.5, 0.5, "C", 86), (2, 1.5, "C", 84)),
    ((1, 0.5, "C", 84), (2.5, 1.0, "C", 90)),
)
_ARP8: Template = ((0, 2, "L", 88), (0.5, 1, "A0", 74), (1, 1, "A1", 76), (1.5, 1, "A2", 74),
                   (2, 2, "L", 80), (2.5, 1, "A3", 74), (3, 1, "A2", 76), (3.5, 0.5, "A1", 72))
#: name -> (how alternatives are used: "fixed" per song, "random" or "alternate" per bar,
#: alternatives). Strum tokens: D = down (low to high), U = up (high to low, top strings).
COMP_TEMPLATES: dict[str, tuple[str, tuple[Template, ...]]] = {
    "block_quarters": ("fixed", (((0, 2, "L", 88), (0, 0.9, "C", 96), (1, 0.9, "C", 80),
                                  (2, 2, "L", 84), (2, 0.9, "C", 90), (3, 0.9, "C", 80)),)),
    "block_pop": ("fixed", (((0, 2, "L", 90), (0, 1.5, "C", 98), (1.5, 2.5, "C", 88),
                             (2, 2, "L", 84)),
                            ((0, 4, "L", 88), (0, 1.0, "C", 96), (1.0, 1.5, "C", 84),
                             (2.5, 1.5, "C", 90)))),
    "halves": ("fixed", (((0, 4, "L", 86), (0, 2, "C", 90), (2, 2, "C", 84)),)),
    "sustain": ("fixed", (((0, 4, "C", 84),),)),
    "arp8": ("fixed", (_ARP8,)),
    "strum": ("fixed", (((0, 1, "D", 100), (1, 0.5, "D", 86), (1.5, 1, "U", 70),
                         (2.5, 0.5, "U", 74), (3, 0.5, "D", 88), (3.5, 0.5, "U", 72)),
                        ((0, 1.5, "D", 100), (1.5, 1, "D", 84), (2.5, 1, "U", 74),
                         (3.5, 0.5, "U", 70)))),
    "country_strum": ("fixed", (((0, 0.9, "L", 96), (1, 0.5, "D", 86), (2, 0.9, "L5", 90),
                                 (3, 0.5, "D", 86)),)),
    "power8": ("fixed", (tuple((i * 0.5, 0.35, "P", 104 if i % 2 == 0 else 86)
                               for i in range(8)),)),
    "stabs16": ("fixed", (((0.5, 0.2, "C", 96), (0.75, 0.15, "C", 60), (1.5, 0.2, "C", 100),
                           (2.25, 0.2, "C", 80), (2.75, 0.2, "C", 96), (3.5, 0.2, "C", 100)),
                          ((0, 0.2, "C", 104), (1.0, 0.15, "C", 64), (1.75, 0.2, "C", 96),
                           (2.5, 0.2, "C", 90), (3.25, 0.2, "C", 70), (3.5, 0.2, "C", 100)))),
    "skank": ("fixed", (((1, 0.35, "C", 96), (3, 0.35, "C", 96)),
                        tuple((i + 0.5, 0.25, "C", 90) for i in range(4)))),
    "jazz_comp": ("random", _JAZZ_COMP),
    "montuno": ("fixed", (((0, 0.5, "T", 98), (0.5, 0.5, "C", 84), (1.5, 0.5, "T", 90),
                           (2, 0.5, "C", 84), (2.5, 0.5, "T", 88), (3, 0.5, "C", 80),
                           (3.5, 0.5, "C", 92)),)),
    "bossa_comp": ("alternate", (((0, 1, "L", 80), (0, 1.0, "C", 86), (1.5, 1.0, "C", 80),
                                  (2, 1, "L5", 76), (3, 0.75, "C", 82)),
                                 ((0, 1, "L", 80), (0.5, 1.0, "C", 84), (2, 1, "L5", 76),
                                  (2, 1.0, "C", 82), (3.5, 0.5, "C", 84)))),
    "offbeat_stabs": ("fixed", (tuple((i + 0.5, 0.3, "C", 96) for i in range(4)),)),
    "gated16": ("fixed", (tuple((i * 0.25, 0.18, "C", 96 if i % 4 == 0 else 72)
                                for i in range(16)),)),
    "orch_sustain": ("fixed", (((0, 4, "C", 80),), ((0, 2, "C", 82), (2, 2, "C", 76)))),
    "orch_pulse": ("fixed", (tuple((float(i), 0.9, "C", 88 if i % 2 == 0 else 76)
                                   for i in range(4)),)),
}
#: Patterns voiced as shells (3rd, 7th, 9th) instead of full chords.
SHELL_PATTERNS = {"jazz_comp", "bossa_comp"}


def _vel(v: int, rng: np.random.Generator) -> int:
    return clip_velocity(v + int(rng.integers(-4, 5)))


def _is_last_bar(slot: ChordSlot, bars: int) -> bool:
    return slot.start >= (bars - 1) * BEATS_PER_BAR - 1e-9


# ---------------------------------------------------------------------------- bass
def _root_pitch(pc: int, prev: int | None) -> int:
    """Bass root near the previous one (voice leading), pulled toward the middle (E1-A2)."""
    target = 38.0 if prev is None else 0.7 * prev + 0.3 * 38.0
    return pitch_near(pc, target, BASS_RANGE[0], 47)


def _fit(p: int, lo: int = BASS_RANGE[0], hi: int = BASS_RANGE[1]) -> int:
    while p > hi:
        p -= 12
    while p < lo:
        p += 12
    return p


def _walk(rng: np.random.Generator, chord: Chord, p: int, q: int, dur: float) -> list[int]:
    """Walking-bass pitches for ``dur`` beats: root, chord tones heading for ``q``, approach."""
    a = _fit(q + int(rng.choice((-1, 1))))
    if dur < 2:
        return [p]
    if dur < 4:
        return [p, a]
    tones = [t for t in range(BASS_RANGE[0], BASS_RANGE[1] + 1) if t % 12 in chord.pcs]
    d = 1 if q >= p else -1
    t1, t2 = ((p + 4 * d, p + 3 * d) if abs(a - p) < 4 else (p + (a - p) / 3, p + 2 * (a - p) / 3))
    b1 = min((t for t in tones if t != p), key=lambda t: (abs(t - t1), t))
    near = [t for t in range(BASS_RANGE[0], BASS_RANGE[1] + 1) if t not in (b1, a)]
    b2 = min(near, key=lambda t: (abs(t - t2) + (0 if t % 12 in chord.pcs else 0.6), t))
    return [p, b1, b2, a]


def bass_events(pattern: str, timeline: Sequence[ChordSlot], bars: int,
                rng: np.random.Generator) -> list[Ev]:
    """Bass line over the timeline; ``pattern`` is a :data:`BASS_TEMPLATES` key or
    ``"walking"``. Pitches stay in :data:`BASS_RANGE`."""
    out: list[Ev] = []
    prev: int | None = None
    lo, hi = BASS_RANGE
    for i, slot in enumerate(timeline):
        c = slot.chord
        if c.is_none:
            continue
        root = _root_pitch(c.root, prev)
        p = _root_pitch(c.bass, prev) if c.bass != c.root else root
        nxt = next((s.chord for s in timeline[i + 1:] if not s.chord.is_none), None)
        q = _root_pitch(nxt.bass, p) if nxt is not None else p
        end = slot.start + slot.dur
        if _is_last_bar(slot, bars):
            out.append(Ev(slot.start, slot.dur, p, _vel(96, rng)))
            prev = p
            continue
        if pattern == "walking":
            for k, pitch in enumerate(_walk(rng, c, p, q, slot.dur)):
                out.append(Ev(slot.start + k, 0.9, pitch, _vel(92 if k == 0 else 84, rng)))
            prev = p
            continue
        tmpl = BASS_TEMPLATES[pattern]
        if i == 0 and all(off > 0 for off, *_ in tmpl):  # nothing tied in: start on the root
            tmpl = ((0.0, min(tmpl[0][0], slot.dur), "R", 96), *tmpl)
        for off, dur, tok, vel in tmpl:
            if off >= slot.dur - 1e-9:
                continue
            if tok == "R":
                pitch = p
            elif tok == "5":
                pitch = _fit(root + (c.fifth or 7), lo, hi)
            elif tok == "8":
                pitch = root + 12 if root + 12 <= hi else root
            elif tok == "3":
                pitch = _fit(root + (c.third or 7), lo, hi)
            elif tok == "7":
                pitch = _fit(root + (c.seventh or 10), lo, hi)
            elif tok == "N":
                pitch = q
            else:  # "A": chromatic or dominant approach to the next root
                pitch = _fit(q + int(rng.choice((-1, 1, 7))), lo, hi)
            d = dur if tok == "N" else min(dur, end - slot.start - off)
            out.append(Ev(slot.start + off, d, pitch, _vel(vel, rng)))
        prev = p
    return out


# ---------------------------------------------------------------------------- comp / pad
def _shell(c: Chord) -> list[int]:
    """Shell voicing (root, 3rd, 7th; plus the flat 5th of diminished chords) as pitch
    classes; chords without a seventh are voiced whole. Rootless 3-7-9 voicings were
    tried first but are ambiguous (Cmaj7 without C sounds as Em7): with them madmom's
    pretrained chord recogniser agreed with the labels (majmin CRA, 4 rendered songs) on
    0.58 of jazz and 0.83 of bossa time; with root shells 0.69 and 0.92."""
    if c.seventh is None:
        return list(c.pcs)
    ivs = (0, c.third or 4, c.seventh) + ((6,) if 6 in c.intervals else ())
    return [(c.root + i) % 12 for i in ivs]


def _voicing_pcs(c: Chord, shell: bool) -> list[int]:
    return _shell(c) if shell else list(c.pcs)


def comp_events(pattern: str, timeline: Sequence[ChordSlot], bars: int, instrument: str,
                rng: np.random.Generator, role: str = "comp") -> list[Ev]:
    """Comping (``role="comp"``) or a pad (``role="pad"``, sustained, soft) over the
    timeline for an instrument class (which sets the register)."""
    mode, alts = COMP_TEMPLATES[pattern]
    fixed = alts[int(rng.integers(len(alts)))]
    lo, hi = COMP_REGISTER.get(instrument, (52, 79))
    if role == "pad":
        lo, hi = max(lo, PAD_RANGE[0] + 7), min(hi, PAD_RANGE[1])
    shell = pattern in SHELL_PATTERNS
    drop2 = pattern in ("orch_sustain", "orch_pulse")
    prev: tuple[int, ...] | None = None
    prev_low: int | None = None
    out: list[Ev] = []
    for slot in timeline:
        c = slot.chord
        if c.is_none:
            continue
        pcs = _voicing_pcs(c, shell)
        if drop2 and len(pcs) == 3:
            pcs = pcs + [c.root]
        top_lo = lo + 5 if pattern in ("strum", "country_strum") else lo
        voicing = voice_chord(pcs, top_lo, hi, prev, drop2=drop2)
        prev = voicing
        low = pitch_near(c.bass, 0.6 * (prev_low or 43) + 0.4 * 43, COMP_RANGE[0], 50)
        prev_low = low
        bar = int(slot.start // BEATS_PER_BAR)
        if _is_last_bar(slot, bars):
            tmpl: Template = ((0, slot.dur, "C", 86),)
            if pattern in ("arp8", "block_quarters", "block_pop", "halves", "bossa_comp"):
                tmpl += ((0, slot.dur, "L", 84),)
        elif mode == "random":
            tmpl = alts[int(rng.integers(len(alts)))]
        elif mode == "alternate":
            tmpl = alts[bar % len(alts)]
        else:
            tmpl = fixed
        end = slot.start + slot.dur
        for off, dur, tok, vel in tmpl:
            if off >= slot.dur - 1e-9:
                continue
            t = slot.start + off
            d = min(dur, end - t)
            v = vel if role == "comp" else int(vel * 0.72)
            out += _render_token(tok, t, d, v, voicing, low, c, rng)
    return out


def _render_token(tok: str, t: float, d: float, vel: int, voicing: tuple[int, ...], low: int,
                  c: Chord, rng: np.random.Generator) -> list[Ev]:
    if tok == "C":
        return [Ev(t, d, p, _vel(vel, rng)) for p in voicing]
    if tok == "L":
        return [Ev(t, d, low, _vel(vel, rng))]
    if tok == "L5":
        fifth = low + (c.fifth or 7) - 12 if low + (c.fifth or 7) - 12 >= COMP_RANGE[0] \
            else low + (c.fifth or 7)
        return [Ev(t, d, fifth, _vel(vel, rng))]
    if tok.startswith("A"):  # arpeggio step over the voicing and its top octave
        ext = list(voicing) + [p + 12 for p in voicing if p + 12 <= COMP_RANGE[1]]
        return [Ev(t, d, ext[int(tok[1:]) % len(ext)], _vel(vel, rng))]
    if tok == "T":  # montuno: the top voice doubled an octave below
        top = voicing[-1]
        pitches = [top - 12, top] if top - 12 >= COMP_RANGE[0] else [top]
        return [Ev(t, d, p, _vel(vel, rng)) for p in pitches]
    if tok == "P":  # power chord: root, fifth, octave
        r = pitch_near(c.root, 45, 40, 52)
        return [Ev(t, d, p, _vel(vel, rng)) for p in (r, r + 7, r + 12)]
    if tok in ("D", "U"):  # strum: low root + voicing, staggered by 0.02 beats per string
        strings = sorted({low + 12 if low + 12 < voicing[0] else low, *voicing})
        if tok == "U":
            strings = strings[::-1][:4]
        scale = 1.0 if tok == "D" else 0.85
        return [Ev(t + 0.02 * k, max(d - 0.02 * k, 0.1), p, _vel(int(vel * scale), rng))
                for k, p in enumerate(strings)]
    raise ValueError(f"unknown comp token {tok!r}")
