"""Drum grooves for the procedural arranger (General MIDI percussion, channel 10).

Each style has a few step-sequenced grooves (16 steps per pattern bar, or 32 for two-bar
clave patterns), accents written into the pattern, fills at phrase ends (toms, snare rolls,
timbales, swung jazz kicks), crashes at section starts and a final hit. A *feel* factor
plays the same pattern in half time (0.5: one pattern bar spans two bars) or double time
(2.0) so every style of a song group keeps the group's tempo (docs/ARCHITECTURE.md, "Data":
remix targets must stay time-aligned). Swing is applied later, when beats become seconds.
Pattern characters: ``X`` accent, ``x`` normal, ``o`` soft, ``g`` ghost, ``.`` rest.
"""

from __future__ import annotations

import numpy as np

from instructme.music.harmony import BEATS_PER_BAR, Ev, clip_velocity

KICK, SIDESTICK, SNARE, CLAP = 36, 37, 38, 39
CHH, PHH, OHH, CRASH, RIDE = 42, 44, 46, 49, 51
TOM_HI, TOM_HMID, TOM_LMID, TOM_LO, TOM_FLOOR = 50, 48, 47, 45, 43
TAMB, COWBELL, BONGO_HI, BONGO_LO = 54, 56, 60, 61
CONGA_MUTE, CONGA_OPEN, CONGA_LO, TIMBALE_HI, TIMBALE_LO = 62, 63, 64, 65, 66
MARACAS, CLAVES = 70, 75
#: GM percussion keys used here all lie in this range.
DRUM_RANGE = (27, 87)

LEVELS = {"X": 118, "x": 92, "o": 64, "g": 44}

Groove = dict[int, str]
_L32 = "X.....X.....X.......X...X......."  # son clave 3-2 on a 16th grid, two bars

GROOVES: dict[str, tuple[Groove, ...]] = {
    "pop": (
        {KICK: "X.....x.X.......", SNARE: "....X.......X...", CHH: "x.o.x.o.x.o.x.o."},
        {KICK: "X.......X.x.....", SNARE: "....X.......X...", CHH: "xoxoxoxoxoxoxoxo",
         TAMB: "....x.......x..."},
        {KICK: "X..x..x.X.......", SNARE: "....X.......X..o", CHH: "x.x.x.x.x.x.x.x."},
    ),
    "rock": (
        {KICK: "X.....X.X.......", SNARE: "....X.......X...", CHH: "X.x.X.x.X.x.X.x."},
        {KICK: "X.x.....X.x.....", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
        {KICK: "X...X...X...X...", SNARE: "....X.......X...", OHH: "x.x.x.x.x.x.x.x."},
    ),
    "jazz": (
        {RIDE: "x...x.o.x...x.o.", PHH: "....x.......x...", KICK: "g.......g.......",
         SNARE: "......g.......g."},
        {RIDE: "x...x.o.x...x.o.", PHH: "....x.......x...", SIDESTICK: "............x...",
         KICK: "g...............", SNARE: "..g.......g....."},
    ),
    "funk": (
        {KICK: "X..x..X...X..x..", SNARE: "....X..o.o..X..o", CHH: "xoxoxoxoxoxoxoxo"},
        {KICK: "X.x...x...X..x..", SNARE: "....X.o..o..X.o.", CHH: "xxxxxxxxxxxxxx.x",
         OHH: "..............x."},
    ),
    "ballad": (
        {KICK: "X.......x.......", SIDESTICK: "....x.......x...", CHH: "x.o.x.o.x.o.x.o."},
        {KICK: "X.....x.........", SNARE: "....x.......x...", RIDE: "x...x...x...x..."},
    ),
    "electronic": (
        {KICK: "X...X...X...X...", CLAP: "....X.......X...", OHH: "..x...x...x...x.",
         CHH: "xg.gxg.gxg.gxg.g"},
        {KICK: "X...X...X...X...", SNARE: "....X.......X...", CHH: "..x...x...x...x.",
         CLAP: "....x.......x..."},
        {KICK: "X.........X.....", SNARE: "....X.......X...", CHH: "xoxoxoxoxoxoxoxo"},
    ),
    "latin": (
        {CLAVES: _L32, KICK: "X.....x.....x...X.....x.....x...",
         CONGA_MUTE: "x...X...........x...X...........",
         CONGA_OPEN: "............x.x.............x.x.",
         COWBELL: "x...x...x...x...x...x...x...x..."},
        {BONGO_HI: "X.o.x.o.X.o.x.o.", BONGO_LO: "......x.......x.", MARACAS: "xgxgxgxgxgxgxgxg",
         KICK: "X.......X.......", CONGA_LO: "..............x."},
    ),
    "reggae": (
        {KICK: "........X.......", SIDESTICK: "........X.......", CHH: "x.x.x.x.x.x.x.x."},
        {KICK: "X...X...X...X...", SIDESTICK: "........X.......", CHH: "..x...x...x...x.",
         PHH: "x...x...x...x..."},
    ),
    "country": (
        {KICK: "X.......X.......", SNARE: "g.o.X.o.g.o.X.o.", CHH: "x.x.x.x.x.x.x.x."},
        {KICK: "X.......X.......", SNARE: "....X.......X...", CHH: "x.x.x.x.x.x.x.x."},
    ),
    "bossa": (
        {KICK: "X..xX..xX..xX..x", SIDESTICK: "X.....X.....X.......X.....X.....",
         CHH: "xgxgxgxgxgxgxgxg"},
        {KICK: "X..xX..xX..xX..x", SIDESTICK: "X.....X.....X.......X.....X.....",
         RIDE: "x.x.x.x.x.x.x.x."},
    ),
}

#: Fill kinds per style (the last two beats of a phrase-ending bar).
FILLS: dict[str, tuple[str, ...]] = {
    "pop": ("toms", "snare_roll", "toms_8"), "rock": ("toms", "toms_8", "snare_roll"),
    "jazz": ("jazz",), "funk": ("toms", "snare_roll"), "ballad": ("sparse", "toms_8"),
    "electronic": ("snare_roll",), "latin": ("timbales",), "reggae": ("toms_8", "sparse"),
    "country": ("snare_roll", "toms_8"), "bossa": ("sparse",),
}


def _fill(kind: str, start: float) -> list[tuple[float, int, int]]:
    """(beat, key, velocity) hits of a fill over the two beats from ``start``."""
    if kind == "toms":
        keys = (SNARE, SNARE, TOM_HI, TOM_HI, TOM_LMID, TOM_LMID, TOM_LO, TOM_FLOOR)
        return [(start + i * 0.25, k, 80 + 5 * i) for i, k in enumerate(keys)]
    if kind == "snare_roll":
        return [(start + i * 0.25, SNARE, 60 + 8 * i) for i in range(8)]
    if kind == "toms_8":
        keys = (TOM_HI, TOM_LMID, TOM_LO, TOM_FLOOR)
        return [(start + i * 0.5, k, 90 + 8 * i) for i, k in enumerate(keys)]
    if kind == "jazz":
        return [(start, SNARE, 64), (start + 0.5, SNARE, 90), (start + 1.0, KICK, 96),
                (start + 1.5, SNARE, 112)]
    if kind == "timbales":
        return [(start + i * 0.25, TIMBALE_HI if i % 2 == 0 else TIMBALE_LO, 78 + 5 * i)
                for i in range(8)]
    if kind == "sparse":
        return [(start + 1.0, TOM_HMID, 80), (start + 1.5, TOM_LO, 88)]
    raise ValueError(f"unknown fill kind {kind!r}")


def drum_events(style: str, bars: int, feel: float, rng: np.random.Generator) -> list[Ev]:
    """The drum part of a ``bars``-bar song: :class:`Ev` in beats, GM percussion keys.

    One groove is drawn per song (another one, when the style has several, for B sections);
    fills end every 8-bar section and, at random, 4-bar phrases; crashes open sections; the
    last bar is a single crash + kick."""
    grooves = GROOVES[style]
    order = rng.permutation(len(grooves))
    main, alt = grooves[int(order[0])], grooves[int(order[-1])]
    step = 0.25 / feel
    fill_bars = {b for b in range(3, bars - 1, 4) if (b + 1) % 8 == 0 or rng.random() < 0.4}
    crash_bars = {0} | {b + 1 for b in fill_bars if (b + 1) % 8 == 0}
    hits: list[tuple[float, int, int]] = []
    end_beat = (bars - 1) * BEATS_PER_BAR  # the final bar holds one hit
    n_steps = int(round(end_beat / step))
    for s in range(n_steps):
        beat = s * step
        bar = int(beat // BEATS_PER_BAR)
        groove = alt if (bar // 8) % 4 == 2 else main  # the third 8-bar section is "B"
        for key, pat in groove.items():
            ch = pat[s % len(pat)]
            if ch != ".":
                hits.append((beat, key, LEVELS[ch]))
    fill_start = {b: b * BEATS_PER_BAR + 2.0 for b in fill_bars}
    hits = [h for h in hits
            if not any(fs <= h[0] < fs + 2.0 for fs in fill_start.values())]
    kinds = FILLS[style]
    for b in sorted(fill_bars):
        hits += _fill(kinds[int(rng.integers(len(kinds)))], fill_start[b])
    for b in sorted(crash_bars):
        beat = b * BEATS_PER_BAR
        hits = [h for h in hits if not (h[0] == beat and h[1] in (CHH, OHH, RIDE))]
        hits += [(beat, CRASH, 112), (beat, KICK, 110)]
    hits += [(end_beat, CRASH, 118), (end_beat, KICK, 118)]
    seen: set[tuple[float, int]] = set()
    out: list[Ev] = []
    for beat, key, vel in sorted(hits, key=lambda h: (h[0], h[1], -h[2])):  # loudest wins
        if (beat, key) in seen:
            continue
        seen.add((beat, key))
        v = clip_velocity(vel + int(rng.integers(-5, 6)))
        out.append(Ev(beat, 2.0 if beat >= end_beat else min(step, 0.25), key, v))
    return out
