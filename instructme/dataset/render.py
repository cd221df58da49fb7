"""Score part -> stem audio with FluidSynth and a General MIDI soundfont; stem levels.

Each stem is rendered by its own fresh synth (reverb and chorus never leak between parts), so
a song's mix is exactly the sum of its stems and every add / remove / extract / replace target
is exact (docs/ARCHITECTURE.md, "Data"; InstructME, arXiv 2308.14360, Sec. 4.1). Rendering
happens directly at the target rate (16 kHz) through ``fluid_synth_write_float``: no int16
quantisation, no dither, bit-identical run to run. The synth loads soundfont samples on demand
(``synth.dynamic-sample-loading``), so a fresh synth per stem costs ~15 ms, not ~150 ms.
FluidSynth applies note events at 64-sample block boundaries (4 ms at 16 kHz).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from instructme.config import SAMPLE_RATE
from instructme.errors import DependencyError, InstructMEError
from instructme.music.score import Part

DEFAULT_SOUNDFONT = os.environ.get("INSTRUCTME_SOUNDFONT",
                                   "/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTALL_HINT = "install it with: sudo apt-get install fluidsynth fluid-soundfont-gm"
#: Fade-out at the very end of a stem so that a cut mid-note does not click.
END_FADE_SECONDS = 0.01
#: Target active RMS per role (dBFS, before the common song gain).
ROLE_LEVELS_DB: dict[str, float] = {
    "drums": -14.0, "bass": -15.0, "melody": -15.0, "lead": -15.0, "voice": -17.0,
    "comp": -18.0, "chords": -18.0, "arp": -19.0, "pad": -21.0,
}
DEFAULT_LEVEL_DB = -18.0
#: Seeded per-stem level variation (uniform, +- dB).
LEVEL_JITTER_DB = 1.5
#: Peak of the full mix after balancing (dBFS).
MIX_PEAK_DB = -3.0


# ----------------------------------------------------------------------------- synth access
@functools.lru_cache(maxsize=1)
def _fluidsynth() -> tuple[Any, Any]:
    """(pyfluidsynth module, ``fluid_synth_write_float`` ctypes function)."""
    try:
        import fluidsynth
    except (ImportError, OSError) as e:
        raise DependencyError(f"FluidSynth library not found ({e}); {INSTALL_HINT}") from None
    c = ctypes
    write_float = fluidsynth.cfunc(
        "fluid_synth_write_float", c.c_int,
        ("synth", c.c_void_p, 1), ("len", c.c_int, 1),
        ("lout", c.c_void_p, 1), ("loff", c.c_int, 1), ("lincr", c.c_int, 1),
        ("rout", c.c_void_p, 1), ("roff", c.c_int, 1), ("rincr", c.c_int, 1),
    )
    if write_float is None:
        raise DependencyError(f"libfluidsynth lacks fluid_synth_write_float; {INSTALL_HINT}")
    return fluidsynth, write_float


def check_synth(soundfont: str = DEFAULT_SOUNDFONT) -> None:
    """Raise :class:`DependencyError` (with install instructions) unless FluidSynth can be
    loaded and ``soundfont`` is a readable SoundFont file."""
    _fluidsynth()
    p = Path(soundfont)
    if not p.is_file():
        raise DependencyError(f"soundfont {soundfont} not found; {INSTALL_HINT} "
                              "(or pass the path of another General MIDI .sf2)")
    _check_soundfont(str(p.resolve()), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _check_soundfont(path: str, _mtime: int) -> None:
    fs, _ = _fluidsynth()
    synth = fs.Synth(samplerate=float(SAMPLE_RATE), **{"synth.dynamic-sample-loading": 1})
    try:
        if synth.sfload(path) < 0:
            raise DependencyError(f"{path} is not a valid SoundFont (FluidSynth cannot "
                                  "load it; a General MIDI .sf2 or .sf3 file is expected)")
    finally:
        synth.delete()


# ----------------------------------------------------------------------------- rendering
def _events(part: Part, n: int, sr: int) -> list[tuple[int, int, int, int]]:
    """(sample, kind, key, velocity) with kind 0 = note-off before 1 = note-on at one sample.

    A note of the same key that starts before the previous one ends cuts it short.
    """
    by_key: dict[int, list[tuple[int, int, int]]] = {}
    for note in part.notes:
        key = int(note.pitch)
        a = int(round(note.start * sr))
        b = int(round(note.end * sr))
        if not 0 <= key <= 127 or a >= n or b <= a or a < 0:
            continue
        by_key.setdefault(key, []).append((a, b, int(np.clip(note.velocity, 1, 127))))
    events = []
    for key, notes in by_key.items():
        notes.sort()
        for i, (a, b, vel) in enumerate(notes):
            if i + 1 < len(notes):
                b = min(b, notes[i + 1][0])
            if b <= a:
                continue
            events.append((a, 1, key, vel))
            if b < n:
                events.append((b, 0, key, 0))
    events.sort()
    return events


def render_part(part: Part, duration: float, sample_rate: int = SAMPLE_RATE,
                soundfont: str = DEFAULT_SOUNDFONT) -> np.ndarray:
    """Render one part with a fresh FluidSynth. Returns ``x: float32 [N]``, mono (mean of the
    synth's L/R), ``N = round(duration * sample_rate)`` exactly.

    Drum parts play on channel 9 with the bank-128 kit ``part.program`` (0 = standard kit).
    Notes are cut at ``duration``; the release tail of notes ending earlier is kept. An empty
    part gives exact zeros (no synth is started).
    """
    if not 8_000 <= sample_rate <= 96_000:
        raise InstructMEError(f"sample rate {sample_rate} Hz outside 8000-96000")
    if not np.isfinite(duration) or duration <= 0:
        raise InstructMEError(f"render duration must be > 0 seconds, got {duration}")
    check_synth(soundfont)
    fs, write_float = _fluidsynth()
    n = int(round(duration * sample_rate))
    events = _events(part, n, sample_rate)
    if not events:
        return np.zeros(n, dtype=np.float32)
    out = np.zeros((n, 2), dtype=np.float32)
    base = out.ctypes.data
    synth = fs.Synth(gain=0.2, samplerate=float(sample_rate),
                     **{"synth.dynamic-sample-loading": 1, "synth.cpu-cores": 1})
    try:
        sfid = synth.sfload(str(soundfont))
        chan, bank = (9, 128) if part.is_drum else (0, 0)
        if synth.program_select(chan, sfid, bank, int(part.program)) != 0:
            if not part.is_drum or synth.program_select(chan, sfid, bank, 0) != 0:
                raise InstructMEError(f"soundfont {soundfont} has no preset {bank}:"
                                      f"{part.program} for part {part.name!r}")
        pos = 0

        def advance(to: int) -> None:
            nonlocal pos
            if to > pos:
                ptr = base + pos * 8  # 2 float32 channels per frame
                write_float(synth.synth, to - pos, ptr, 0, 2, ptr, 1, 2)
                pos = to

        for t, kind, key, vel in events:
            advance(t)
            if kind:
                synth.noteon(chan, key, vel)
            else:
                synth.noteoff(chan, key)
        advance(n)
    finally:
        synth.delete()
    x = out.mean(axis=1, dtype=np.float32)
    fade = min(n, int(END_FADE_SECONDS * sample_rate))
    if fade > 0:
        x[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return x


# ----------------------------------------------------------------------------- levels
def activity(x: np.ndarray, sample_rate: int, hop_seconds: float = 0.1,
             threshold_db: float = -45.0) -> np.ndarray:
    """Frame-wise "is sounding" mask: ``bool [ceil(N / hop)]``.

    Frames are consecutive, non-overlapping ``hop_seconds`` long (the last may be shorter); a
    frame is active when its RMS exceeds ``threshold_db`` dB relative to full scale (1.0).
    The threshold is absolute, so use it on balanced stems (mix peak at -3 dBFS), where
    -45 dBFS means "audible in the mix", not on raw synth output.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise InstructMEError(f"activity expects mono audio [N], got shape {x.shape}")
    hop = max(1, int(round(hop_seconds * sample_rate)))
    frames = -(-len(x) // hop)
    if frames == 0:
        return np.zeros(0, dtype=bool)
    padded = np.zeros(frames * hop, dtype=np.float64)
    padded[: len(x)] = x
    energy = np.square(padded).reshape(frames, hop).sum(axis=1)
    counts = np.full(frames, hop, dtype=np.float64)
    counts[-1] = len(x) - (frames - 1) * hop
    rms = np.sqrt(energy / counts)
    return rms > 10.0 ** (threshold_db / 20.0)


def active_rms(x: np.ndarray, sample_rate: int = SAMPLE_RATE, range_db: float = 40.0) -> float:
    """RMS over the frames (0.1 s) within ``range_db`` of the loudest frame; 0.0 if silent.

    A level measure that does not depend on how much of the clip the part plays.
    """
    hop = max(1, int(round(0.1 * sample_rate)))
    frames = len(x) // hop
    if frames == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    ms = np.square(np.asarray(x[: frames * hop], dtype=np.float64)).reshape(frames, hop).mean(1)
    peak = ms.max()
    if peak < 1e-14:  # below -140 dBFS: silent
        return 0.0
    return float(np.sqrt(ms[ms >= peak * 10.0 ** (-range_db / 10.0)].mean()))


def match_level(x: np.ndarray, reference: np.ndarray, sample_rate: int = SAMPLE_RATE
                ) -> np.ndarray:
    """Scale ``x`` to the active RMS of ``reference`` (e.g. a "replace" variant stem to the
    balanced original, which already carries the song gain). Returns float32 ``[N]``."""
    src, ref = active_rms(x, sample_rate), active_rms(reference, sample_rate)
    gain = ref / src if src > 0 else 0.0
    return (np.asarray(x, dtype=np.float64) * gain).astype(np.float32)


def balance_gains(stems: dict[str, np.ndarray], roles: dict[str, str], rng: np.random.Generator,
                  sample_rate: int = SAMPLE_RATE, jitter_db: float = LEVEL_JITTER_DB
                  ) -> dict[str, float]:
    """Per-stem linear gains: role level (``ROLE_LEVELS_DB`` +- ``jitter_db``, seeded)
    times one common gain so that the mix (sum of stems) peaks at ``MIX_PEAK_DB``."""
    if not stems:
        return {}
    lengths = {len(x) for x in stems.values()}
    if len(lengths) != 1:
        raise InstructMEError(f"stems differ in length: {sorted(lengths)}")
    gains: dict[str, float] = {}
    for name in sorted(stems):
        level = ROLE_LEVELS_DB.get(roles.get(name, ""), DEFAULT_LEVEL_DB)
        level += float(rng.uniform(-jitter_db, jitter_db))
        rms = active_rms(stems[name], sample_rate)
        gains[name] = 10.0 ** (level / 20.0) / rms if rms > 0 else 0.0
    mix = np.zeros(lengths.pop(), dtype=np.float64)
    for name, x in stems.items():
        mix += gains[name] * np.asarray(x, dtype=np.float64)
    peak = float(np.abs(mix).max())
    common = 10.0 ** (MIX_PEAK_DB / 20.0) / peak if peak > 0 else 1.0
    return {name: g * common for name, g in gains.items()}


def balance_stems(stems: dict[str, np.ndarray], roles: dict[str, str], rng: np.random.Generator,
                  sample_rate: int = SAMPLE_RATE, jitter_db: float = LEVEL_JITTER_DB
                  ) -> dict[str, np.ndarray]:
    """Balance a song's stems: ``x: float32 [N]`` each, same ``N``; returns new arrays.

    Each stem's active RMS is set to its role's level (drums / bass / melody louder, pads
    softer, seeded +- ``jitter_db``), then one common gain puts the mix (the sum of the
    returned stems, which it is exactly) at a peak of -3 dBFS. Silent stems stay silent.
    """
    gains = balance_gains(stems, roles, rng, sample_rate, jitter_db)
    out = {n: (np.asarray(x, dtype=np.float64) * gains[n]).astype(np.float32)
           for n, x in stems.items()}
    if out:
        limit = 10.0 ** (MIX_PEAK_DB / 20.0)
        mix = np.sum(list(out.values()), axis=0, dtype=np.float32)
        peak = float(np.abs(mix).max())
        if peak > limit:  # float32 rounding pushed the peak a hair over: scale down once more
            scale = limit / peak * (1.0 - 1e-6)
            out = {n: (x * np.float32(scale)).astype(np.float32) for n, x in out.items()}
    return out
