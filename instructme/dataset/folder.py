"""Reading a dataset folder: its songs, its manifests, and triplets whose mixes are summed
from stems on the fly.

A dataset folder (``instructme data build``) holds ``build.json``, ``songs/<id>/song.json`` +
stems + ``activity.npz`` and ``manifests/{train,val,test}.jsonl`` (+ ``splits.json``).
:func:`read_song` is the one reader of a ``song.json`` (triplet building, the VAE crops and
the analysis models' mixes all go through it). :class:`TripletDataset` yields, per triplet::

    {"id", "task", "instruction", "args", "song",
     "source": float32 [N], "target": float32 [N],     # N = duration * sample_rate
     "edited": float32 [N],                             # the added/removed/extracted/new stem(s)
     "chords": list[ChordSegment] (times relative to the window start)}
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from instructme.errors import ManifestError
from instructme.music.score import ChordSegment

#: The splits of a dataset folder (songs of one group share a split).
SPLITS: tuple[str, ...] = ("train", "val", "test")
_REQUIRED = ("id", "task", "instruction", "song", "start", "duration", "source", "target")


@dataclass
class StemInfo:
    """One stem of a song: ``path`` relative to the dataset folder; ``variant_of`` names the
    stem a "replace" variant re-renders (``None`` for a stem of the mix)."""

    name: str
    path: str
    instrument: str | None
    variant_of: str | None = None


@dataclass
class SongInfo:
    """A song of a dataset folder as its ``song.json`` describes it.

    ``stems`` keeps the file's order (triplet building draws from it); ``meta`` is the whole
    ``song.json`` (tempo, key, parts, source, ...).
    """

    song_id: str
    stems: dict[str, StemInfo]
    chords: list[ChordSegment]
    meta: dict[str, Any]

    @property
    def group(self) -> str | None:
        return self.meta.get("group")

    @property
    def style(self) -> str | None:
        return self.meta.get("style")

    @property
    def duration(self) -> float:
        try:
            return float(self.meta["duration"])
        except (KeyError, TypeError, ValueError):
            raise ManifestError(f"song {self.song_id}: song.json has no duration") from None

    @property
    def sample_rate(self) -> int:
        return int(self.meta.get("sample_rate", 16_000))

    @property
    def activity_hz(self) -> float:
        return float(self.meta.get("activity_hz", 10.0))


def safe_name(text: str) -> str:
    """``text`` as a song id or job key that is safe as a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def song_dir(root: str | Path, song_id: str) -> Path:
    """``root/songs/<song_id>``: a song's stems, ``song.json`` and ``activity.npz``."""
    return Path(root) / "songs" / song_id


def read_song(root: str | Path, song_id: str) -> SongInfo:
    """Parse ``songs/<song_id>/song.json``; a missing or malformed file is a ManifestError."""
    path = song_dir(root, song_id) / "song.json"
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: song metadata not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: unreadable ({e})") from None
    try:
        stems = {str(name): StemInfo(str(name), str(s["path"]), s.get("instrument"),
                                     s.get("variant_of"))
                 for name, s in d.get("stems", {}).items()}
        chords = [ChordSegment(float(c["start"]), float(c["end"]), str(c["label"]))
                  for c in d.get("chords", [])]
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ManifestError(f"{path}: not a song.json (stems need a 'path', chords a "
                            "'start', 'end' and 'label')") from None
    return SongInfo(song_id, stems, chords, d)


def read_activity(root: str | Path, song_id: str, missing_ok: bool = False
                  ) -> dict[str, np.ndarray]:
    """Stem name -> activity mask ``[F]`` (``SongInfo.activity_hz`` frames per second) from
    ``activity.npz``; ``{}`` if the file is missing and ``missing_ok``."""
    path = song_dir(root, song_id) / "activity.npz"
    if not path.is_file():
        if missing_ok:
            return {}
        raise ManifestError(f"{path}: activity masks not found")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_build_info(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "build.json"
    if not path.is_file():
        raise ManifestError(
            f"{root}: not a dataset folder (no build.json; run 'instructme data build')"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e.msg})") from None


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Parse a JSONL manifest, checking every record has the fields triplets need."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            missing = [k for k in _REQUIRED if k not in rec]
            if missing:
                raise ManifestError(f"{path}:{lineno}: record lacks {', '.join(missing)}")
            records.append(rec)
    return records


def load_window(root: str | Path, paths: Sequence[str], start: float, duration: float,
                sample_rate: int = 16_000) -> np.ndarray:
    """Sum of the given stems (paths relative to ``root``) over a window: float32 ``[N]``.

    Windows past a stem's end are zero-padded; an empty ``paths`` gives silence.
    """
    n = int(round(duration * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    a = int(round(start * sample_rate))
    for rel in paths:
        path = Path(root) / rel
        try:
            with sf.SoundFile(str(path)) as f:
                if f.samplerate != sample_rate:
                    raise ManifestError(f"{path}: {f.samplerate} Hz, dataset is {sample_rate} Hz")
                if a < f.frames:
                    f.seek(a)
                    x = f.read(min(n, f.frames - a), dtype="float32", always_2d=True)[:, 0]
                    out[: x.shape[0]] += x
        except sf.LibsndfileError as e:
            raise ManifestError(f"{path}: unreadable stem ({e})") from None
    return out


@lru_cache(maxsize=4096)
def _song_chords(root: str, song_id: str) -> tuple[tuple[float, float, str], ...]:
    return tuple((c.start, c.end, c.label) for c in read_song(root, song_id).chords)


def window_chords(root: str | Path, song_id: str, start: float,
                  duration: float) -> list[ChordSegment]:
    """Chord segments of a song clipped to a window, times relative to the window start."""
    out = []
    for s, e, label in _song_chords(str(root), song_id):
        if e <= start or s >= start + duration:
            continue
        out.append(ChordSegment(max(s, start) - start, min(e, start + duration) - start, label))
    return out


class TripletDataset(torch.utils.data.Dataset):
    """Triplets of one split of a dataset folder (see module docstring for the items)."""

    def __init__(self, root: str | Path, split: str = "train", tasks: Sequence[str] | None = None):
        if split not in SPLITS:
            raise ManifestError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
        self.root = Path(root)
        info = read_build_info(self.root)
        self.sample_rate = int(info["sample_rate"])
        records = read_manifest(self.root / "manifests" / f"{split}.jsonl")
        self.records = [r for r in records if tasks is None or r["task"] in tasks]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        start, dur = float(r["start"]), float(r["duration"])

        def mix(paths: Sequence[str]) -> np.ndarray:
            return load_window(self.root, paths, start, dur, self.sample_rate)

        return {
            "id": r["id"], "task": r["task"], "instruction": r["instruction"],
            "args": r.get("args", {}), "song": r["song"],
            "source": mix(r["source"]), "target": mix(r["target"]),
            "edited": mix(r.get("edited", [])),
            "chords": window_chords(self.root, r["song"], start, dur),
        }
