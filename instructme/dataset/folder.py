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
import math
import os
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
    """``root/songs/<song_id>``: a song's stems, ``song.json`` and ``activity.npz``. A song id
    must be one plain folder name (no ``/``, not ``..``): else a ManifestError."""
    sid = str(song_id)
    if not sid or sid in (".", "..") or "/" in sid or "\\" in sid or "\0" in sid:
        raise ManifestError(f"{root}: bad song id {sid!r} (must be a plain folder name)")
    return Path(root) / "songs" / sid


def check_relative(rel: str, where: str | Path) -> str:
    """``rel`` if it is a path inside a dataset folder: relative, and not climbing out with
    ``..`` (checked on the text, so stems the user symlinked into the folder still work).
    ``where`` names the file that holds it in the ManifestError."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise ManifestError(f"{where}: stem path {rel!r} is not a file name")
    norm = os.path.normpath(rel)
    if os.path.isabs(rel) or norm == "." or norm == ".." or norm.startswith(".." + os.sep):
        raise ManifestError(f"{where}: stem path {rel!r} is outside the dataset folder "
                            "(paths are relative to it, without '..')")
    return rel


def stem_path(root: str | Path, rel: str, where: str | Path | None = None) -> Path:
    """``root / rel`` for a stem path of a ``song.json`` or manifest, refused (ManifestError)
    when it points outside the dataset folder (:func:`check_relative`). Every reader of
    stem paths joins them through here."""
    return Path(root) / check_relative(rel, where if where is not None else root)


def read_text(path: str | Path, what: str = "file") -> str:
    """A dataset file's UTF-8 text; unreadable or not UTF-8: a one-line ManifestError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: {what} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ManifestError(f"{path}: unreadable {what} ({e.strerror or e})") from None


def read_splits_file(root: str | Path) -> dict[str, str] | None:
    """``song_id -> split`` of ``manifests/splits.json`` (None if absent), checked."""
    path = Path(root) / "manifests" / "splits.json"
    if not path.is_file():
        return None
    try:
        d = json.loads(read_text(path, "splits file"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(d, dict) or not all(isinstance(v, str) for v in d.values()):
        raise ManifestError(f"{path}: not a splits file (song id -> split name)")
    return {str(k): v for k, v in d.items()}


def read_song(root: str | Path, song_id: str) -> SongInfo:
    """Parse ``songs/<song_id>/song.json``; a missing or malformed file is a ManifestError."""
    path = song_dir(root, song_id) / "song.json"
    if not path.is_file():
        raise ManifestError(f"{path}: song metadata not found")
    try:
        d = json.loads(read_text(path, "song.json"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: unreadable ({e})") from None
    try:
        stems = {str(name): StemInfo(str(name), check_relative(s["path"], path),
                                     s.get("instrument"), s.get("variant_of"))
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
        info = json.loads(read_text(path, "build.json"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(info, dict):
        raise ManifestError(f"{path}: not a build description (a JSON object)")
    return info


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Parse a JSONL manifest, checking every record has the fields triplets need."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    records = []
    for lineno, line in enumerate(read_text(path, "manifest").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ManifestError(f"{path}:{lineno}: not a triplet record (a JSON object)")
        missing = [k for k in _REQUIRED if k not in rec]
        if missing:
            raise ManifestError(f"{path}:{lineno}: record lacks {', '.join(missing)}")
        _check_record(rec, f"{path}:{lineno}")
        records.append(rec)
    return records


def _check_record(rec: dict[str, Any], where: str) -> None:
    """A triplet record's values: a window of numbers, lists of stem paths inside the folder."""
    for key in ("start", "duration"):
        v = rec[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ManifestError(f"{where}: {key!r} must be a number of seconds, got {v!r}")
    if rec["start"] < 0 or rec["duration"] <= 0:
        raise ManifestError(f"{where}: the window must have start >= 0 and duration > 0 "
                            f"(got {rec['start']!r}, {rec['duration']!r})")
    for key in ("id", "task", "instruction", "song"):
        if not isinstance(rec[key], str):
            raise ManifestError(f"{where}: {key!r} must be a string, got {rec[key]!r}")
    rounds = rec.get("rounds") or []
    if not isinstance(rounds, list) or not all(isinstance(r, dict) for r in rounds):
        raise ManifestError(f"{where}: 'rounds' must be a list of round records")
    lists = [(key, rec.get(key, [])) for key in ("source", "target", "edited")]
    lists += [("rounds[].target", r.get("target", [])) for r in rounds]
    for key, paths in lists:
        if not isinstance(paths, list):
            raise ManifestError(f"{where}: {key!r} must be a list of stem paths")
        for rel in paths:
            check_relative(rel, where)


def load_window(root: str | Path, paths: Sequence[str], start: float, duration: float,
                sample_rate: int = 16_000) -> np.ndarray:
    """Sum of the given stems (paths relative to ``root``) over a window: float32 ``[N]``.

    Windows past a stem's end are zero-padded; an empty ``paths`` gives silence.
    """
    n = int(round(duration * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    a = int(round(start * sample_rate))
    for rel in paths:
        path = stem_path(root, rel)
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
