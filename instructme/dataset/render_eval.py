"""``instructme data render-eval``: a dataset's split re-rendered with another soundfont.

The unseen-timbre evaluation sets: the same songs, notes, programs, stem levels and triplet
manifests as a built dataset's ``test`` (or other) split, every stem (and replace variant)
rendered again with one soundfont the training data never used (``timgm6mb``, ``opl3``;
:mod:`instructme.dataset.soundfonts`), unprocessed. Each stem is scaled to the active RMS of
the stem it re-renders, so the balance of every mix is the original's. The output is an
ordinary dataset folder (``build.json`` says how it was made): every eval command reads it.
Resumable (a song's ``song.json`` is written last) and parallel over songs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instructme import audio
from instructme.dataset.folder import read_build_info, song_dir
from instructme.dataset.render import activity, check_synth, match_level, render_part
from instructme.dataset.soundfonts import resolve_soundfont, soundfont_name
from instructme.errors import ManifestError
from instructme.fileio import atomic_path, atomic_write_json
from instructme.music.score import Note, Part


def _part_for(stem: dict[str, Any], parts: dict[str, dict[str, Any]]) -> Part | None:
    """The score part a stem (or variant) plays, with the stem's own program."""
    p = parts.get(stem.get("part", ""))
    if p is None:
        return None
    return Part(p["name"], int(stem.get("program", p["program"])),
                str(stem.get("instrument", p["instrument"])), p["role"],
                [Note(**n) for n in p.get("notes", [])], bool(p.get("is_drum", False)))


def rerender_song(args: tuple[str, str, str, str]) -> str:
    """Re-render one song of ``src`` into ``dst`` with ``soundfont`` (in a worker)."""
    src_s, dst_s, song_id, soundfont = args
    src, dst = Path(src_s), Path(dst_s)
    out_dir = song_dir(dst, song_id)
    if (out_dir / "song.json").is_file():
        return song_id
    d = json.loads((song_dir(src, song_id) / "song.json").read_text())
    parts = {p["name"]: p for p in d.get("parts", [])}
    sr, hz = int(d["sample_rate"]), float(d["activity_hz"])
    out_dir.mkdir(parents=True, exist_ok=True)
    acts = {}
    for name, stem in d["stems"].items():
        part = _part_for(stem, parts)
        if part is None:
            raise ManifestError(f"{src}: song {song_id} has no score for stem {name} (only "
                                "rendered songs can be re-rendered)")
        original, _ = audio.load(src / stem["path"], sample_rate=sr, mono=True)
        x = match_level(render_part(part, float(d["duration"]), sr, soundfont), original, sr)
        audio.save(dst / stem["path"], np.clip(x, -1.0, 1.0), sr)
        acts[name] = activity(x, sr, hop_seconds=1.0 / hz)
        stem.pop("fx", None)
        stem["soundfont"] = soundfont_name(soundfont)
    with atomic_path(out_dir / "activity.npz") as tmp:
        np.savez_compressed(tmp, **acts)
    d.pop("mix_limiter", None)
    atomic_write_json(out_dir / "song.json", d)
    return song_id


def render_eval_set(data: str | Path, out: str | Path, soundfont: str,
                    splits: tuple[str, ...] = ("test",), workers: int | None = None,
                    quiet: bool = False) -> dict[str, Any]:
    """Re-render the songs of ``splits`` of the dataset ``data`` with ``soundfont`` into
    ``out`` (see the module docstring); returns the new ``build.json``."""
    src, dst = Path(data), Path(out)
    info = read_build_info(src)
    path = resolve_soundfont(soundfont)
    check_synth(path)
    splits_path = src / "manifests" / "splits.json"
    if not splits_path.is_file():
        raise ManifestError(f"{src}: no manifests/splits.json (is the build complete?)")
    split_of = json.loads(splits_path.read_text())
    songs = sorted(s for s, sp in split_of.items() if sp in splits)
    if not songs:
        raise ManifestError(f"{src}: no songs in split {', '.join(splits)}")
    want = {"render_eval": {"from": str(src.resolve()), "soundfont": soundfont_name(path),
                            "splits": list(splits)}}
    if (dst / "build.json").is_file():
        if read_build_info(dst).get("render_eval") != want["render_eval"]:
            raise ManifestError(f"{dst} holds another dataset; use another --out")
    elif dst.exists() and any(dst.iterdir()):
        raise ManifestError(f"{dst}: folder exists and is not an instructme dataset")
    (dst / "manifests").mkdir(parents=True, exist_ok=True)
    atomic_write_json(dst / "build.json", {**info, **want, "status": "rendering"})
    tasks = [(str(src), str(dst), s, path) for s in songs]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    bar = tqdm(total=len(tasks), desc=f"render {soundfont_name(path)}", unit="song",
               disable=quiet)
    with mp.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap_unordered(rerender_song, tasks):
            bar.update()
    bar.close()
    atomic_write_json(dst / "manifests" / "splits.json", {s: split_of[s] for s in songs})
    for split in splits:
        manifest = src / "manifests" / f"{split}.jsonl"
        if manifest.is_file():
            with atomic_path(dst / "manifests" / manifest.name) as tmp:
                shutil.copyfile(manifest, tmp)
    info.pop("build_wall_seconds", None)
    final = {**info, **want, "status": "complete", "songs": len(songs)}
    atomic_write_json(dst / "build.json", final)
    return final
