"""``instructme data build``: render songs to stems, then cut triplets into manifests.

Stage 1 (parallel, resumable): each *job* is one music21 corpus piece or one arranger group
(the same melody and progression arranged in several styles). A job renders every part of
every song to its own stem with FluidSynth (one synth per stem, so ``mix = sum of stems``),
plus ``replace`` variants (a part re-rendered with another GM program), balances levels with
one song-wide gain, and writes ``songs/<id>/{<stem>.flac, activity.npz, song.json}``. A job
marker in ``jobs/`` is written last, so an interrupted build skips finished jobs.

Stage 2 (fast, deterministic): songs are split by group into train/val/test and
:class:`~instructme.dataset.triplets.TripletBuilder` writes ``manifests/<split>.jsonl``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instructme import audio
from instructme.config import DataConfig
from instructme.dataset.effects import draw_chain, draw_limiter, limiter_gain, process_stem
from instructme.dataset.folder import read_activity, read_song, safe_name
from instructme.dataset.ingest import ingest_song, stem_song_job
from instructme.dataset.render import activity, balance_stems, check_synth, render_part
from instructme.dataset.soundfonts import check_trainable, resolve_soundfont, soundfont_name
from instructme.dataset.stems import load_stems
from instructme.dataset.triplets import TripletBuilder, TripletSong, assign_splits
from instructme.errors import InstructMEError, ManifestError
from instructme.fileio import atomic_path, atomic_write_json, atomic_write_jsonl
from instructme.music.arranger import arrange_group, replacement_programs
from instructme.music.corpus import (
    bar_progression,
    list_corpus_pieces,
    load_corpus_song,
    song_id_for,
    variant_program,
)
from instructme.music.score import Part, Song
from instructme.vocab import STYLES, program_to_class

ACTIVITY_HZ = 10.0
#: Fraction of arranger groups whose progression is taken from a corpus piece.
CORPUS_PROGRESSION_FRACTION = 0.25


# ----------------------------------------------------------------------------- planning
def plan_jobs(cfg: DataConfig, seed: int, stems: str | Path | None = None,
              layout: str = "auto") -> list[dict[str, Any]]:
    """The deterministic list of render jobs for a preset and seed.

    With ``stems`` (a Slakh2100, MUSDB18 or ``SONG/STEM.wav`` folder) the jobs import those
    songs instead of rendering the corpus and the arranger.
    """
    if stems is not None:
        return [{"key": f"stems-{safe_name(song.song_id)}", "kind": "stems",
                 "seed": seed, **stem_song_job(song)} for song in load_stems(stems, layout)]
    rng = np.random.default_rng(seed)
    pieces = list_corpus_pieces(limit=cfg.corpus_pieces, seed=seed) if cfg.corpus_pieces else []
    # The corpus holds some pieces twice (e.g. .krn and .mxl): one job per song id, or two
    # workers would write the same song folder.
    unique: dict[str, str] = {}
    for p in pieces:
        unique.setdefault(song_id_for(p), p)
    pieces = list(unique.values())
    jobs: list[dict[str, Any]] = [
        {"key": f"corpus-{safe_name(p)}", "kind": "corpus", "path": p, "seed": seed * 100_003 + i}
        for i, p in enumerate(pieces)
    ]
    all_pieces = pieces or list_corpus_pieces(limit=50, seed=seed)
    for i in range(cfg.arranger_songs):
        styles = [str(s) for s in rng.choice(STYLES, size=cfg.styles_per_song, replace=False)]
        from_corpus = bool(all_pieces) and rng.random() < CORPUS_PROGRESSION_FRACTION
        jobs.append({
            "key": f"arr{seed:03d}-{i:05d}", "kind": "arranger", "group": f"arr{seed:03d}-{i:05d}",
            "styles": styles, "seed": seed * 100_003 + 50_000 + i, "bars": cfg.arranger_bars,
            "progression_from": str(rng.choice(all_pieces)) if from_corpus else None,
        })
    return jobs


# ----------------------------------------------------------------------------- rendering
def _songs_for_job(job: dict[str, Any], cfg: DataConfig) -> list[Song]:
    if job["kind"] == "corpus":
        return [load_corpus_song(job["path"], seed=job["seed"], max_seconds=cfg.corpus_max_seconds)]
    progression = None
    if job["progression_from"]:
        try:
            src = load_corpus_song(job["progression_from"], seed=job["seed"], max_seconds=None)
            progression = bar_progression(src, job["bars"])
        except InstructMEError:
            progression = None  # an unparseable piece: fall back to a generated progression
    return arrange_group(job["group"], job["styles"], seed=job["seed"], bars=job["bars"],
                         progression=progression)


def _replacement_program(song: Song, part: Part, rng: np.random.Generator) -> int | None:
    present = {p.instrument for p in song.parts}
    if song.source != "arranger":
        try:
            return variant_program(part, rng, exclude=present)
        except InstructMEError:
            return None
    options = replacement_programs(part, song.style or "pop", rng)
    options = [p for p in options if program_to_class(p) not in present | {None}]
    return int(rng.choice(options)) if options else None


def _stem_soundfont(cfg: DataConfig, rng: np.random.Generator) -> str:
    """This stem's soundfont: drawn from ``cfg.soundfonts`` when several are configured."""
    if not cfg.soundfonts:
        return cfg.soundfont
    return str(cfg.soundfonts[int(rng.integers(len(cfg.soundfonts)))])


def _render_stem(part: Part, song: Song, cfg: DataConfig, rng: np.random.Generator
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """One stem (``float32 [N]``) with its soundfont and, with ``stem_fx``, its chain; the
    meta fields that say how it was made."""
    sf = _stem_soundfont(cfg, rng)
    x = render_part(part, song.duration, sample_rate=cfg.sample_rate,
                    soundfont=resolve_soundfont(sf))
    meta: dict[str, Any] = {}
    if cfg.soundfonts:
        meta["soundfont"] = soundfont_name(sf)
    if cfg.stem_fx:
        chain = draw_chain(part.instrument, rng)
        x = process_stem(x, cfg.sample_rate, chain)
        meta["fx"] = chain
    return x, meta


def _limit_mix(stems: dict[str, np.ndarray], variants: set[str], cfg: DataConfig,
               rng: np.random.Generator) -> dict[str, Any] | None:
    """With probability ``limiter_prob``: the limiter's gain curve of the song's mix applied
    to every stem (variants too), then the mix brought back to its peak; in place."""
    if cfg.limiter_prob <= 0 or rng.random() >= cfg.limiter_prob:
        return None
    settings = draw_limiter(rng)
    mix = np.sum([x for n, x in stems.items() if n not in variants], axis=0, dtype=np.float64)
    peak = float(np.abs(mix).max())
    gain = limiter_gain(mix.astype(np.float32), cfg.sample_rate, **settings)
    limited_peak = float(np.abs(mix * gain).max())
    makeup = peak / limited_peak if limited_peak > 0 else 1.0
    for name, x in stems.items():
        stems[name] = (np.asarray(x, np.float64) * gain * makeup).astype(np.float32)
    return {**settings, "makeup_db": float(20 * np.log10(makeup))}


def render_song(song: Song, root: Path, cfg: DataConfig, rng: np.random.Generator) -> dict:
    """Render, (process,) balance and write one song's stems; returns its ``song.json``."""
    sr = cfg.sample_rate
    song_dir = root / "songs" / song.song_id
    stems_raw: dict[str, np.ndarray] = {}
    meta: dict[str, dict[str, Any]] = {}
    for i, part in enumerate(song.parts):
        name = f"s{i:02d}-{part.instrument}"
        stems_raw[name], made = _render_stem(part, song, cfg, rng)
        meta[name] = {"instrument": part.instrument, "program": part.program, "role": part.role,
                      "part": part.name, "variant_of": None, **made}
    roles = {n: m["role"] for n, m in meta.items()}
    stems = balance_stems(stems_raw, roles, rng, jitter_db=cfg.gain_jitter_db)

    # "replace" variants: the same notes played by another program, at the original's level.
    candidates = [i for i, p in enumerate(song.parts) if not p.is_drum and p.notes]
    for i in rng.permutation(candidates)[: cfg.replace_variants_per_song]:
        part = song.parts[int(i)]
        program = _replacement_program(song, part, rng)
        if program is None:
            continue
        new = Part(part.name, program, program_to_class(program) or "other", part.role,
                   part.notes, part.is_drum)
        orig = f"s{int(i):02d}-{part.instrument}"
        raw, made = _render_stem(new, song, cfg, rng)
        target_rms = float(np.sqrt(np.mean(np.square(stems[orig], dtype=np.float64))))
        raw_rms = float(np.sqrt(np.mean(np.square(raw, dtype=np.float64))))
        if raw_rms < 1e-6:
            continue
        name = f"{orig}-as-{new.instrument}"
        stems[name] = (raw * (target_rms / raw_rms)).astype(np.float32)
        meta[name] = {"instrument": new.instrument, "program": program, "role": part.role,
                      "part": part.name, "variant_of": orig, **made}
    limiter = _limit_mix(stems, {n for n, m in meta.items() if m["variant_of"]}, cfg, rng)
    return _write_song(song, root, song_dir, stems, meta, sr, limiter)


def _write_song(song: Song, root: Path, song_dir: Path, stems: dict[str, np.ndarray],
                meta: dict[str, dict[str, Any]], sr: int, limiter: dict[str, Any] | None
                ) -> dict:
    song_dir.mkdir(parents=True, exist_ok=True)
    acts = {}
    for name, x in stems.items():
        rel = f"songs/{song.song_id}/{name}.flac"
        audio.save(root / rel, np.clip(x, -1.0, 1.0), sr)
        meta[name]["path"] = rel
        acts[name] = activity(x, sr, hop_seconds=1.0 / ACTIVITY_HZ)
    with atomic_path(song_dir / "activity.npz") as tmp:
        np.savez_compressed(tmp, **acts)
    d = song.to_dict()
    d.update(stems=meta, activity_hz=ACTIVITY_HZ, sample_rate=sr)
    if limiter is not None:
        d["mix_limiter"] = limiter
    atomic_write_json(song_dir / "song.json", d)
    return d


def run_job(args: tuple[dict[str, Any], str, dict[str, Any]]) -> dict[str, Any]:
    """Render one job (in a worker process); returns a summary for the progress bar."""
    job, root_s, cfg_d = args
    root, cfg = Path(root_s), DataConfig.from_dict(cfg_d)
    marker = root / "jobs" / f"{job['key']}.json"
    if marker.is_file():
        return {**json.loads(marker.read_text()), "skipped": True}
    t0 = time.perf_counter()
    if job["kind"] == "stems":
        d = ingest_song(job, root, cfg, ACTIVITY_HZ)
        summary = {"key": job["key"], "songs": [d["song_id"]], "seconds": d["duration"],
                   "stem_seconds": d["duration"] * len(d["stems"]),
                   "render_seconds": time.perf_counter() - t0}
        atomic_write_json(marker, summary)
        return summary
    rng = np.random.default_rng(job["seed"])
    try:
        songs = _songs_for_job(job, cfg)
    except InstructMEError as e:
        summary = {"key": job["key"], "songs": [], "error": str(e)}
        atomic_write_json(marker, summary)
        return summary
    stem_seconds = 0.0
    for song in songs:
        d = render_song(song, root, cfg, rng)
        stem_seconds += song.duration * len(d["stems"])
    summary = {
        "key": job["key"], "songs": [s.song_id for s in songs],
        "seconds": sum(s.duration for s in songs), "stem_seconds": stem_seconds,
        "render_seconds": time.perf_counter() - t0,
    }
    atomic_write_json(marker, summary)
    return summary


# ----------------------------------------------------------------------------- triplets
def write_manifests(root: Path, cfg: DataConfig, seed: int, song_ids: list[str]) -> dict:
    """Split songs by group and write ``manifests/<split>.jsonl``; returns counts."""
    songs = {sid: TripletSong.from_song(read_song(root, sid), read_activity(root, sid))
             for sid in sorted(song_ids)}
    groups: dict[str, list[TripletSong]] = {}
    for s in songs.values():
        groups.setdefault(s.group, []).append(s)
    split_of = assign_splits(list(groups), cfg.val_fraction, cfg.test_fraction, seed)
    builder = TripletBuilder(cfg.window_seconds, cfg.max_silent_fraction)
    per_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for k, s in enumerate(songs.values()):
        rng = np.random.default_rng([seed, k])
        split = split_of[s.group]
        for rec in builder.build_song(s, groups[s.group], cfg.windows_per_song,
                                      cfg.multiround_per_song, rng):
            rec["split"] = split
            per_split[split].append(rec)
    counts = {}
    for split, recs in per_split.items():
        counts[split] = atomic_write_jsonl(root / "manifests" / f"{split}.jsonl", recs)
    songs_split = {sid: split_of[s.group] for sid, s in songs.items()}
    atomic_write_json(root / "manifests" / "splits.json", songs_split)
    return counts


# ----------------------------------------------------------------------------- the command
def build_dataset(out: str | Path, preset: str = "small", workers: int | None = None,
                  seed: int = 0, quiet: bool = False, config: DataConfig | None = None,
                  stems: str | Path | None = None, layout: str = "auto") -> dict:
    """Render + cut triplets into ``out``; resumable; returns the build summary.

    ``stems``: import the user's multitrack folder (``layout`` slakh / musdb / folder / auto)
    instead of rendering the corpus and the arranger; ``preset`` then sets windows and splits.
    """
    root = Path(out)
    try:
        cfg = config or DataConfig.preset(preset)
    except ValueError as e:
        raise InstructMEError(str(e)) from None
    if stems is None:
        fonts = cfg.soundfonts or (cfg.soundfont,)
        check_trainable(fonts)
        for sf in fonts:
            check_synth(resolve_soundfont(sf))
    info_path = root / "build.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        stems_key = None if stems is None else str(Path(stems).resolve())
        same = (old.get("preset"), old.get("seed"), old.get("config"), old.get("stems")) == (
            preset, seed, json.loads(json.dumps(cfg.to_dict())), stems_key)  # tuples as lists
        if not same:
            raise ManifestError(
                f"{root} was built with preset {old.get('preset')!r} seed {old.get('seed')}; "
                "use another --out or the same settings to resume"
            )
    elif root.exists() and any(root.iterdir()):
        raise ManifestError(f"{root}: folder exists and is not an instructme dataset")
    root.mkdir(parents=True, exist_ok=True)
    info = {"preset": preset, "seed": seed, "sample_rate": cfg.sample_rate,
            "config": cfg.to_dict(), "status": "rendering",
            "stems": None if stems is None else str(Path(stems).resolve()), "layout": layout}
    atomic_write_json(info_path, {**json.loads(info_path.read_text()), **info}
                      if info_path.is_file() else info)

    jobs = plan_jobs(cfg, seed, stems, layout)
    workers = max(1, workers or os.cpu_count() or 1)
    t0 = time.perf_counter()
    results, rendered_stem_seconds = [], 0.0
    tasks = [(j, str(root), cfg.to_dict()) for j in jobs]
    bar = tqdm(total=len(jobs), desc="render", unit="job", disable=quiet)
    if workers == 1:
        iterator = map(run_job, tasks)
        pool = None
    else:
        pool = mp.get_context("fork").Pool(workers, maxtasksperchild=50)
        iterator = pool.imap_unordered(run_job, tasks)
    try:
        for r in iterator:
            results.append(r)
            if not r.get("skipped"):
                rendered_stem_seconds += r.get("stem_seconds", 0.0)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(stem_s_per_s=f"{rendered_stem_seconds / max(elapsed, 1e-9):.0f}")
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    render_wall = time.perf_counter() - t0
    song_ids = sorted({s for r in results for s in r.get("songs", [])})
    failed = [r for r in results if r.get("error")]
    if not song_ids:
        raise InstructMEError(f"{root}: no song could be rendered")
    counts = write_manifests(root, cfg, seed, song_ids)
    summary = {
        **info, "status": "complete", "songs": len(song_ids), "failed_jobs": len(failed),
        "triplets": counts, "render_wall_seconds": round(render_wall, 2),
        "rendered_stem_seconds": round(rendered_stem_seconds, 1),
        "build_wall_seconds": round(time.perf_counter() - t0, 2), "workers": workers,
    }
    atomic_write_json(info_path, summary)
    if not quiet:
        print(f"built {root}: {len(song_ids)} songs ({len(failed)} pieces skipped), "
              f"triplets " + ", ".join(f"{k} {v}" for k, v in counts.items())
              + f", in {summary['build_wall_seconds']:.0f} s")
    return summary
