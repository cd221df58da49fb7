"""(source, instruction, target) triplets for every task, cut from rendered songs.

The paper (InstructME, Sec. 3 "Data") builds editing pairs from multitrack music: a source
mix, an instruction, and the exact target mix. Because every part of a song is rendered to
its own stem and ``mix = sum of stems``, each task has an exact target:

- **add X**      source = all stems but class X,      target = all stems
- **remove X**   source = all stems,                   target = all stems but class X
- **extract X**  source = all stems,                   target = the stems of class X
- **replace X with Y**  source = all stems,            target = X's part re-rendered as Y
- **remix (to S)**      source = this song,            target = the same song arranged in style S
- **multiround** a chain of 2-3 add/remove/replace edits, every intermediate target recorded

The edit unit is the *instrument class* (``remove the strings`` removes every strings stem), so
an instruction is never ambiguous. Triplets refer to stem files and a time window; mixes are
summed on the fly (:mod:`instructme.dataset.folder`), never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instructme.dataset.folder import SongInfo
from instructme.instructions import make_instruction
from instructme.vocab import UNNAMED


@dataclass
class TripletSong:
    """What triplet building needs to know about one rendered song.

    ``stems`` maps stem name -> (relative path, instrument class); ``variants`` maps a variant
    stem name -> (relative path, instrument class, original stem name); ``activity`` maps every
    stem (and variant) name -> bool mask ``[F]`` at ``activity_hz`` frames per second.
    """

    song_id: str
    group: str
    style: str | None
    duration: float
    stems: dict[str, tuple[str, str]]
    variants: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    activity: dict[str, np.ndarray] = field(default_factory=dict)
    activity_hz: float = 10.0

    @classmethod
    def from_song(cls, song: SongInfo, activity: dict[str, np.ndarray]) -> TripletSong:
        """The triplet view of a dataset song (:func:`~instructme.dataset.folder.read_song`)."""
        stems: dict[str, tuple[str, str]] = {}
        variants: dict[str, tuple[str, str, str]] = {}
        for name, s in song.stems.items():
            inst = s.instrument or UNNAMED
            if s.variant_of:
                variants[name] = (s.path, inst, s.variant_of)
            else:
                stems[name] = (s.path, inst)
        # A song without a group (none written by ``data build``) is a group of its own.
        return cls(str(song.meta.get("song_id", song.song_id)), song.group or song.song_id,
                   song.style, song.duration, stems, variants, activity, song.activity_hz)

    def classes(self) -> dict[str, list[str]]:
        """Instrument class -> stem names of that class (non-variant stems that may be edited:
        stems of unknown instrument, e.g. MUSDB18's "other", are in every mix but never named)."""
        out: dict[str, list[str]] = {}
        for name, (_, inst) in sorted(self.stems.items()):
            if inst != UNNAMED:
                out.setdefault(inst, []).append(name)
        return out

    def unnamed(self) -> list[str]:
        """Stems of unknown instrument: always part of the mix, never edited."""
        return sorted(n for n, (_, inst) in self.stems.items() if inst == UNNAMED)

    def path(self, name: str) -> str:
        return self.stems[name][0] if name in self.stems else self.variants[name][0]

    def active_fraction(self, names: Sequence[str], start: float, duration: float) -> float:
        """Fraction of the window in which at least one of ``names`` sounds."""
        a = int(round(start * self.activity_hz))
        b = a + max(1, int(round(duration * self.activity_hz)))
        masks = [self.activity[n][a:b] for n in names if n in self.activity]
        if not masks or masks[0].size == 0:
            return 0.0
        return float(np.logical_or.reduce(masks).mean())


def _record(song: TripletSong, task: str, instruction: str, args: dict[str, Any], start: float,
            duration: float, source: Sequence[str], target: Sequence[str], edited: Sequence[str],
            target_song: TripletSong | None = None, **extra: Any) -> dict[str, Any]:
    tsong = target_song or song
    return {
        "task": task, "instruction": instruction, "args": args, "song": song.song_id,
        "start": round(start, 3), "duration": duration,
        "source": [song.path(n) for n in sorted(source)],
        "target": [tsong.path(n) for n in sorted(target)],
        "edited": [tsong.path(n) for n in sorted(edited)],
        **extra,
    }


class TripletBuilder:
    """Cuts windows of ``window`` seconds from songs and makes one triplet per task.

    A window is kept only if the edited stems sound in at least ``1 - max_silent`` of it (and,
    for add, the source is not silent either): a target that differs from the source only by
    silence teaches nothing.
    """

    def __init__(self, window: float = 10.0, max_silent: float = 0.5, tries: int = 8):
        self.window = window
        self.max_silent = max_silent
        self.tries = tries

    # -- windows ---------------------------------------------------------------------------
    def _offset(self, song: TripletSong, rng: np.random.Generator) -> float | None:
        span = song.duration - self.window
        if span < 0:
            return None
        return float(rng.uniform(0.0, span)) if span > 0 else 0.0

    def _find_window(self, song: TripletSong, rng: np.random.Generator,
                     need: Sequence[Sequence[str]]) -> float | None:
        """A random offset where every stem group in ``need`` is active enough."""
        for _ in range(self.tries):
            start = self._offset(song, rng)
            if start is None:
                return None
            if all(song.active_fraction(names, start, self.window) >= 1.0 - self.max_silent
                   for names in need):
                return start
        return None

    # -- single-round tasks ----------------------------------------------------------------
    def add_remove_extract(self, song: TripletSong, task: str,
                           rng: np.random.Generator) -> dict[str, Any] | None:
        classes = song.classes()
        if not classes:
            return None
        inst = str(rng.choice(sorted(classes)))
        x = classes[inst]
        rest = [n for n in song.stems if n not in x]
        if not rest:
            return None
        start = self._find_window(song, rng, [x, rest])
        if start is None:
            return None
        args = {"instrument": inst}
        text = make_instruction(task, args, rng)
        everything = list(song.stems)
        if task == "add":
            return _record(song, task, text, args, start, self.window, rest, everything, x)
        if task == "remove":
            return _record(song, task, text, args, start, self.window, everything, rest, x)
        return _record(song, task, text, args, start, self.window, everything, x, x)

    def replace(self, song: TripletSong, rng: np.random.Generator) -> dict[str, Any] | None:
        classes = song.classes()
        options = [
            (v, orig) for v, (_, vinst, orig) in sorted(song.variants.items())
            if len(classes.get(song.stems[orig][1], [])) == 1 and vinst not in classes
        ]
        if not options:
            return None
        variant, orig = options[int(rng.integers(len(options)))]
        start = self._find_window(song, rng, [[orig], [variant]])
        if start is None:
            return None
        args = {"instrument": song.stems[orig][1], "new_instrument": song.variants[variant][1]}
        text = make_instruction("replace", args, rng)
        source = list(song.stems)
        target = [n for n in source if n != orig] + [variant]
        return _record(song, "replace", text, args, start, self.window, source, target, [variant])

    def remix(self, song: TripletSong, siblings: Sequence[TripletSong],
              rng: np.random.Generator) -> dict[str, Any] | None:
        others = [s for s in siblings if s.song_id != song.song_id and s.style]
        if not others:
            return None
        other = others[int(rng.integers(len(others)))]
        dur = min(song.duration, other.duration)
        if dur < self.window:
            return None
        for _ in range(self.tries):
            start = float(rng.uniform(0.0, dur - self.window)) if dur > self.window else 0.0
            ok_src = song.active_fraction(list(song.stems), start, self.window)
            ok_tgt = other.active_fraction(list(other.stems), start, self.window)
            if min(ok_src, ok_tgt) >= 1.0 - self.max_silent:
                args = {"style": other.style}
                text = make_instruction("remix", args, rng)
                tgt = list(other.stems)
                return _record(song, "remix", text, args, start, self.window, list(song.stems),
                               tgt, tgt, target_song=other, target_song_id=other.song_id)
        return None

    # -- multi-round ----------------------------------------------------------------------
    def multiround(self, song: TripletSong, rng: np.random.Generator,
                   rounds: int | None = None) -> dict[str, Any] | None:
        """A chain of 2-3 add/remove/replace edits; each round's source is the last target."""
        classes = song.classes()
        if len(classes) < 3:
            return None
        start = self._find_window(song, rng, [list(song.stems)])
        if start is None:
            return None
        n_rounds = rounds or int(rng.integers(2, 4))
        active = {c: song.active_fraction(names, start, self.window) >= 1 - self.max_silent
                  for c, names in classes.items()}
        # Start from the full song, or with one active class held back so "add" is possible.
        state: dict[str, list[str]] = dict(classes)
        held = [c for c in classes if active[c]]
        if rng.random() < 0.5 and len(held) >= 2:
            state.pop(str(rng.choice(held)))
        fixed = song.unnamed()
        source = fixed + [n for names in state.values() for n in names]
        steps: list[dict[str, Any]] = []
        for _ in range(n_rounds):
            moves: list[tuple[str, str, str | None]] = []
            moves += [("add", c, None) for c in classes if c not in state and active[c]]
            if len(state) >= 2:
                moves += [("remove", c, None) for c in state if active.get(c, True)]
            for v, (_, vinst, orig) in song.variants.items():
                oc = song.stems[orig][1]
                if state.get(oc) == [orig] and vinst not in state and active[oc]:
                    moves.append(("replace", oc, v))
            if not moves:
                break
            task, inst, variant = moves[int(rng.integers(len(moves)))]
            if task == "add":
                state[inst] = classes[inst]
                args: dict[str, Any] = {"instrument": inst}
            elif task == "remove":
                state.pop(inst)
                args = {"instrument": inst}
            else:
                assert variant is not None
                new_inst = song.variants[variant][1]
                state.pop(inst)
                state[new_inst] = [variant]
                args = {"instrument": inst, "new_instrument": new_inst}
            target = fixed + [n for names in state.values() for n in names]
            steps.append({"task": task, "args": args,
                          "instruction": make_instruction(task, args, rng),
                          "target": [song.path(n) for n in sorted(target)]})
        if len(steps) < 2:
            return None
        text = " then ".join(s["instruction"] for s in steps)
        final = steps[-1]["target"]
        rec = _record(song, "multiround", text, {"rounds": len(steps)}, start, self.window,
                      source, [], [], rounds=steps)
        rec["target"] = final
        return rec

    # -- everything for one song ------------------------------------------------------------
    def build_song(self, song: TripletSong, siblings: Sequence[TripletSong], windows: int,
                   multiround: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """``windows`` triplets of each single-round task plus ``multiround`` chains."""
        out: list[dict[str, Any]] = []
        for _ in range(windows):
            for task in ("add", "remove", "extract"):
                rec = self.add_remove_extract(song, task, rng)
                if rec:
                    out.append(rec)
            for rec in (self.replace(song, rng), self.remix(song, siblings, rng)):
                if rec:
                    out.append(rec)
        for _ in range(multiround):
            rec = self.multiround(song, rng)
            if rec:
                out.append(rec)
        for i, rec in enumerate(out):
            rec["id"] = f"{song.song_id}-{i:03d}-{rec['task']}"
        return out


def assign_splits(groups: Sequence[str], val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, str]:
    """Group id -> "train" | "val" | "test"; songs of one group share a split (no leakage).

    With three or more groups, val and test get at least one group each.
    """
    ordered = sorted(set(groups))
    rng = np.random.default_rng(seed)
    perm = [ordered[i] for i in rng.permutation(len(ordered))]
    n = len(perm)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n >= 3:
        n_test, n_val = max(1, n_test), max(1, n_val)
    split = {g: "test" for g in perm[:n_test]}
    split.update({g: "val" for g in perm[n_test:n_test + n_val]})
    split.update({g: "train" for g in perm[n_test + n_val:]})
    return split
