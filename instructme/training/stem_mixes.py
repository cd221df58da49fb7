"""Random stem-subset mixes of rendered songs, for training the analysis models.

The chord recognizer and the instrument/style classifier learn from a dataset folder written
by ``instructme data build`` (``songs/<id>/song.json`` + stems + ``activity.npz``; song
splits in ``manifests/splits.json``). A training example is a crop of a song where a random
subset of its stems is summed with random gains — a chord or a style is still defined when
some parts are muted, and instrument labels are the classes of the stems that actually sound
in the crop (per the build's ``activity`` masks, so a silent stem is not labelled present).

Every example is a pure function of ``(seed, index)``, so data order does not depend on the
number of loader workers and a resumed run sees the same examples it would have seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from instructme.dataset.folder import (
    SPLITS,
    read_activity,
    read_song,
    read_splits_file,
    read_text,
    song_dir,
    stem_path,
)
from instructme.errors import ManifestError
from instructme.music.score import ChordSegment


@dataclass
class StemRef:
    name: str
    path: Path  # absolute
    instrument: str
    variant_of: str | None = None


@dataclass
class SongRef:
    """One rendered song: its stems (variants included), chords, style and activity masks."""

    song_id: str
    split: str
    duration: float
    sample_rate: int
    style: str | None
    chords: list[ChordSegment]
    stems: list[StemRef]
    activity: dict[str, np.ndarray] = field(default_factory=dict)
    activity_hz: float = 10.0

    def slots(self) -> list[list[StemRef]]:
        """Stems grouped by part: an original and its re-instrumented variants share a slot."""
        groups: dict[str, list[StemRef]] = {}
        for s in self.stems:
            groups.setdefault(s.variant_of or s.name, []).append(s)
        return [groups[k] for k in sorted(groups)]

    def originals(self) -> list[StemRef]:
        return [s for s in self.stems if s.variant_of is None]

    def active_fraction(self, stem: StemRef, start: float, duration: float) -> float | None:
        """Fraction of ``[start, start + duration]`` in which ``stem`` sounds (None: unknown)."""
        mask = self.activity.get(stem.name)
        if mask is None:
            return None
        a = int(round(start * self.activity_hz))
        b = a + max(1, int(round(duration * self.activity_hz)))
        part = mask[a:b]
        return float(part.mean()) if part.size else 0.0


def read_splits(root: Path) -> dict[str, str]:
    """``song_id -> split`` from ``manifests/splits.json`` (or, failing that, the manifests)."""
    split_of = read_splits_file(root)
    if split_of is not None:
        return split_of
    out: dict[str, str] = {}
    for split in SPLITS:
        mpath = root / "manifests" / f"{split}.jsonl"
        if not mpath.is_file():
            continue
        for i, line in enumerate(read_text(mpath, "manifest").splitlines(), 1):
            if line.strip():
                try:
                    out.setdefault(str(json.loads(line)["song"]), split)
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ManifestError(f"{mpath}:{i}: not a triplet record with a "
                                        "'song'") from None
    if not out:
        raise ManifestError(f"{root}: no manifests (run 'instructme data build')")
    return out


def has_split(root: str | Path, split: str) -> bool:
    """Whether the dataset folder assigns any song to ``split`` (a tiny dataset may have no
    val split: that is skipped, while a corrupt one still fails when it is read)."""
    return split in read_splits(Path(root)).values()


def load_songs(root: str | Path, splits: tuple[str, ...] = ("train",),
               max_songs: int | None = None) -> list[SongRef]:
    """Songs of the given splits, sorted by id (``max_songs`` keeps the first ones)."""
    root = Path(root)
    if not (root / "build.json").is_file():
        raise ManifestError(f"{root}: not a dataset folder (no build.json)")
    split_of = read_splits(root)
    songs = []
    for song_id in sorted(split_of):
        if split_of[song_id] not in splits:
            continue
        songs.append(load_song(root, song_id, split_of[song_id]))
        if max_songs is not None and len(songs) >= max_songs:
            break
    if not songs:
        raise ManifestError(f"{root}: no songs in split(s) {', '.join(splits)}")
    return songs


def load_song(root: Path, song_id: str, split: str) -> SongRef:
    """One song (:func:`~instructme.dataset.folder.read_song`) with its activity masks."""
    song = read_song(root, song_id)
    stems = [StemRef(name, stem_path(root, s.path), str(s.instrument), s.variant_of)
             for name, s in sorted(song.stems.items())]
    if not stems:
        raise ManifestError(f"{song_dir(root, song_id)}: song has no stems")
    activity = {k: v.astype(bool) for k, v in read_activity(root, song_id, missing_ok=True).items()}
    return SongRef(song_id, split, song.duration, song.sample_rate, song.style, song.chords, stems,
                   activity, song.activity_hz)


def read_crop(path: Path, start: int, n: int) -> np.ndarray:
    """Samples ``[start, start + n)`` of a mono stem, zero-padded: float32 ``[n]``."""
    out = np.zeros(n, dtype=np.float32)
    try:
        with sf.SoundFile(str(path)) as f:
            if start < f.frames:
                f.seek(start)
                x = f.read(min(n, f.frames - start), dtype="float32", always_2d=True)[:, 0]
                out[: x.shape[0]] = x
    except (sf.LibsndfileError, OSError) as e:
        raise ManifestError(f"{path}: unreadable stem ({e})") from None
    return out


def song_mix(song: SongRef) -> np.ndarray:
    """The full mix (sum of the non-variant stems) of a whole song: float32 ``[N]``."""
    n = int(round(song.duration * song.sample_rate))
    out = np.zeros(n, dtype=np.float32)
    for s in song.originals():
        out += read_crop(s.path, 0, n)
    return out


def chord_frame_targets(chords: list[ChordSegment], times: np.ndarray) -> list[str | None]:
    """Chord label sounding at each time (seconds, song time); None where no segment is."""
    if not chords:
        return [None] * len(times)
    starts = np.array([c.start for c in chords])
    ends = np.array([c.end for c in chords])
    j = np.searchsorted(starts, times, side="right") - 1
    out: list[str | None] = []
    for t, k in zip(times, j):
        out.append(chords[k].label if k >= 0 and t < ends[k] else None)
    return out


@dataclass
class MixSpec:
    """How to draw a random training mix."""

    crop_seconds: float = 10.0
    full_mix_prob: float = 0.3  # otherwise a random subset of slots
    min_slots: int = 1
    use_variants: bool = True  # a slot may sound as its re-instrumented variant
    stem_gain_db: tuple[float, float] = (-6.0, 3.0)
    mix_gain_db: tuple[float, float] = (-18.0, 6.0)
    min_active_fraction: float = 0.1  # of the crop, for an instrument label
    exclude_drums_only: bool = True


@dataclass
class Mix:
    audio: np.ndarray  # float32 [n]
    song: SongRef
    start: float  # seconds in the song
    stems: list[StemRef]
    active: list[bool]  # per stem in ``stems``
    slot_fraction: float  # chosen slots / all slots
    #: Each stem's audio as mixed (gains applied), ``float32 [n]``, with ``keep_parts``.
    parts: list[np.ndarray] | None = None


def draw_mix(songs: list[SongRef], spec: MixSpec, rng: np.random.Generator,
             augment: bool = True, keep_parts: bool = False) -> Mix:
    """A random crop of a random song (weighted by duration) with a random stem subset.

    ``augment=False`` gives the plain full mix (original stems, unit gains); ``keep_parts``
    also returns every stem as mixed (``Mix.parts``: they sum to ``Mix.audio``).
    """
    durations = np.array([max(s.duration, 1e-3) for s in songs])
    song = songs[int(rng.choice(len(songs), p=durations / durations.sum()))]
    sr = song.sample_rate
    n = int(round(spec.crop_seconds * sr))
    latest = max(0.0, song.duration - spec.crop_seconds)
    start = float(rng.uniform(0.0, latest)) if latest > 0 else 0.0
    slots = song.slots()
    if augment and rng.random() >= spec.full_mix_prob:
        k = int(rng.integers(min(spec.min_slots, len(slots)), len(slots) + 1))
        chosen = [slots[int(i)] for i in rng.choice(len(slots), size=k, replace=False)]
    else:
        chosen = slots
    stems = []
    for slot in chosen:
        if augment and spec.use_variants and len(slot) > 1:
            stems.append(slot[int(rng.integers(len(slot)))])
        else:
            stems.append(next((s for s in slot if s.variant_of is None), slot[0]))
    if augment and spec.exclude_drums_only and all(s.instrument == "drums" for s in stems):
        pitched = [s for s in song.originals() if s.instrument != "drums"]
        if pitched:
            stems.append(pitched[int(rng.integers(len(pitched)))])
    a = int(round(start * sr))
    audio = np.zeros(n, dtype=np.float32)
    active = []
    parts: list[np.ndarray] = []
    for s in stems:
        x = read_crop(s.path, a, n)
        if augment:
            x *= np.float32(10.0 ** (rng.uniform(*spec.stem_gain_db) / 20.0))
        frac = song.active_fraction(s, start, spec.crop_seconds)
        if frac is None:  # no activity mask: fall back to energy (-50 dBFS in 50 ms frames)
            frames = x[: len(x) // 800 * 800].reshape(-1, 800)
            rms = np.sqrt(np.mean(np.square(frames), axis=1) + 1e-12)
            frac = float((rms > 10 ** (-50 / 20)).mean()) if frames.size else 0.0
        active.append(frac >= spec.min_active_fraction)
        audio += x
        if keep_parts:
            parts.append(x)
    if augment:
        gain = np.float32(10.0 ** (rng.uniform(*spec.mix_gain_db) / 20.0))
        audio *= gain
        parts = [x * gain for x in parts]
    return Mix(audio, song, start, stems, active, len(chosen) / max(len(slots), 1),
               parts if keep_parts else None)
