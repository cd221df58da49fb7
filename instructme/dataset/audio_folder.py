"""Recorded music as extra VAE training data: import folders of audio files.

The rendered dataset (``instructme data build``) has exact stems but only FluidSynth's
timbres: no rooms, no microphones, no mastering. The VAE (InstructME's latent space, arXiv
2308.14360, VAE E/D) must also encode what users bring, so it can train on recorded,
produced music too. ``import_audio_folder`` decodes every audio file under some folders
(anything libsndfile reads: OGG, FLAC, WAV, MP3 ...) to mono 16-bit FLAC at the project's
rate, and splits the files train / val by a hash of their name (about one in ten held out,
stable when files are added). Licences stay with the sources; nothing imported is shipped.

Folder layout::

    OUT/audio_folder.json     {"sample_rate", "files": [{"name", "source", "split",
                              "seconds"}], "skipped": [...]}
    OUT/audio/<name>.flac     one mono file per source file

Imports are resumable (a file already converted is kept) and the listing is written
atomically. Debian packages with freely licensed soundtracks that work well here:
``wesnoth-1.16-music``, ``warzone2100-music``, ``hyperrogue-music``, ``drascula-music``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from instructme.audio import load, save
from instructme.config import SAMPLE_RATE
from instructme.errors import AudioError, ManifestError
from instructme.fileio import atomic_write_json

LISTING = "audio_folder.json"
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3", ".aif", ".aiff")
#: One file in ``VAL_BUCKETS`` goes to the validation split (by the hash of its name).
VAL_BUCKETS = 10
#: Files shorter than this (sound effects, stingers) are not music: skipped.
MIN_SECONDS = 20.0


@dataclass
class AudioFile:
    """One imported file: ``path`` (mono FLAC at ``sample_rate``), its split and length."""

    name: str
    path: Path
    split: str
    frames: int
    sample_rate: int


def find_audio(sources: Iterable[str | Path]) -> list[Path]:
    """Audio files under ``sources`` (folders searched recursively, or files), sorted."""
    out: set[Path] = set()
    for src in sources:
        p = Path(src)
        if p.is_file():
            out.add(p.resolve())
        elif p.is_dir():
            out.update(f.resolve() for f in p.rglob("*")
                       if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            raise ManifestError(f"{p}: no such file or folder")
    return sorted(out)


def _name(path: Path) -> str:
    """A readable, unique file name: the source's last folders and stem, plus a short hash."""
    tail = "-".join(path.with_suffix("").parts[-3:])
    slug = re.sub(r"[^A-Za-z0-9]+", "-", tail).strip("-").lower()[-60:]
    return f"{slug}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def split_of(name: str) -> str:
    """``"val"`` for about one name in :data:`VAL_BUCKETS`, else ``"train"`` (stable)."""
    bucket = int(hashlib.sha1(name.encode()).hexdigest(), 16) % VAL_BUCKETS
    return "val" if bucket == 0 else "train"


def import_audio_folder(sources: Iterable[str | Path], out: str | Path,
                        sample_rate: int = SAMPLE_RATE, min_seconds: float = MIN_SECONDS,
                        quiet: bool = False) -> dict:
    """Decode every audio file under ``sources`` to ``out``; returns the listing.

    Unreadable files and files shorter than ``min_seconds`` are skipped and listed under
    ``"skipped"`` with the reason. Raises :class:`ManifestError` if nothing usable is found.
    """
    root = Path(out)
    mine = root.resolve()
    files = [f for f in find_audio(sources) if not f.is_relative_to(mine)]  # never re-import
    if not files:
        raise ManifestError("no audio files found in " + ", ".join(str(s) for s in sources))
    listing: dict = {"sample_rate": sample_rate, "files": [], "skipped": []}
    old = root / LISTING
    if old.is_file():
        try:
            prev = json.loads(old.read_text())
        except json.JSONDecodeError:
            raise ManifestError(f"{old}: not an audio folder listing (use another --out or "
                                "delete it)") from None
        if not isinstance(prev, dict) or prev.get("sample_rate") != sample_rate:
            raise ManifestError(f"{root} does not hold audio at {sample_rate} Hz: use "
                                "another --out")
    for path in tqdm(files, desc="import", unit="file", disable=quiet):
        name = _name(path)
        dest = root / "audio" / f"{name}.flac"
        try:
            if dest.is_file():
                seconds = sf.info(str(dest)).duration
            else:
                x, _ = load(path, sample_rate=sample_rate, mono=True)
                seconds = len(x) / sample_rate
                if seconds >= min_seconds:
                    peak = float(np.abs(x).max())
                    save(dest, x / peak * 0.99 if peak > 0.99 else x, sample_rate)
        except AudioError as e:
            listing["skipped"].append({"source": str(path), "reason": str(e)})
            continue
        if seconds < min_seconds:
            listing["skipped"].append({"source": str(path),
                                       "reason": f"shorter than {min_seconds:g} s"})
            continue
        listing["files"].append({"name": name, "source": str(path), "split": split_of(name),
                                 "seconds": round(seconds, 3)})
    if not listing["files"]:
        raise ManifestError(f"none of the {len(files)} audio files is usable music "
                            f"(>= {min_seconds:g} s and readable)")
    atomic_write_json(root / LISTING, listing)
    return listing


def load_audio_folder(root: str | Path, split: str,
                      sample_rate: int = SAMPLE_RATE) -> list[AudioFile]:
    """The imported files of ``split`` (``"train"`` or ``"val"``), checked to exist."""
    root = Path(root)
    path = root / LISTING
    if not path.is_file():
        raise ManifestError(f"{root}: not an imported audio folder (no {LISTING}; run "
                            "'instructme data import-audio')")
    try:
        listing = json.loads(path.read_text())
        entries = [f for f in listing["files"] if f["split"] == split]
        rate = int(listing["sample_rate"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ManifestError(f"{path}: not an audio folder listing") from None
    if rate != sample_rate:
        raise ManifestError(f"{root}: audio is at {rate} Hz; the model expects {sample_rate} Hz")
    out = []
    for f in entries:
        p = root / "audio" / f"{f['name']}.flac"
        if not p.is_file():
            raise ManifestError(f"{path}: {p} is missing (re-run the import)")
        out.append(AudioFile(f["name"], p, split, sf.info(str(p)).frames, rate))
    if not out:
        raise ManifestError(f"{root}: no files in the {split} split")
    return out
