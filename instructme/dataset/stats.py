"""``instructme data stats DIR``: hours per task, instrument, style and split."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from instructme.dataset.folder import (
    SPLITS,
    read_build_info,
    read_manifest,
    read_song,
    read_splits_file,
)


def dataset_stats(root: str | Path) -> dict[str, Any]:
    """Counts and hours of a built dataset folder (songs, stems, triplets)."""
    root = Path(root)
    info = read_build_info(root)
    split_of = read_splits_file(root) or {}
    songs = sorted(p.parent.name for p in (root / "songs").glob("*/song.json"))
    song_hours: Counter[str] = Counter()
    style_hours: Counter[str] = Counter()
    source_hours: Counter[str] = Counter()
    instrument_stem_hours: Counter[str] = Counter()
    soundfont_stem_hours: Counter[str] = Counter()
    n_stems = n_variants = n_processed = n_limited = 0
    stem_hours = 0.0
    for sid in songs:
        song = read_song(root, sid)
        h = song.duration / 3600.0
        song_hours[split_of.get(sid, "unsplit")] += h
        style_hours[song.style or "corpus"] += h
        source_hours[str(song.meta.get("source", "unknown"))] += h
        n_limited += "mix_limiter" in song.meta
        made = song.meta.get("stems", {})
        for s in song.stems.values():
            how = made.get(s.name, {})
            n_processed += bool(how.get("fx"))
            soundfont_stem_hours[how.get("soundfont", "the build's one soundfont")] += h
            if s.variant_of:
                n_variants += 1
            else:
                n_stems += 1
                stem_hours += h
                instrument_stem_hours[str(s.instrument)] += h
    task_count: Counter[str] = Counter()
    task_hours: Counter[str] = Counter()
    split_count: Counter[str] = Counter()
    edited_hours: dict[str, Counter[str]] = defaultdict(Counter)
    for split in SPLITS:
        path = root / "manifests" / f"{split}.jsonl"
        if not path.is_file():
            continue
        for r in read_manifest(path):
            h = float(r["duration"]) / 3600.0
            task_count[r["task"]] += 1
            task_hours[r["task"]] += h
            split_count[split] += 1
            inst = r.get("args", {}).get("instrument")
            if inst:
                edited_hours[r["task"]][inst] += h
    return {
        "preset": info.get("preset"), "seed": info.get("seed"), "status": info.get("status"),
        "songs": len(songs), "stems": n_stems, "replace_variants": n_variants,
        "source_hours": sum(song_hours.values()), "stem_hours": stem_hours,
        "hours_by_split": dict(song_hours), "hours_by_style": dict(style_hours),
        "hours_by_source": dict(source_hours),
        "stem_hours_by_instrument": dict(instrument_stem_hours),
        "stem_hours_by_soundfont": dict(soundfont_stem_hours),
        "processed_stems": n_processed, "limited_songs": n_limited,
        "triplets_by_task": dict(task_count), "triplet_hours_by_task": dict(task_hours),
        "triplets_by_split": dict(split_count),
        "edited_hours_by_task_instrument": {k: dict(v) for k, v in edited_hours.items()},
        "build_wall_seconds": info.get("build_wall_seconds"),
    }


def format_hours(hours: float) -> str:
    """``1.25 h``, ``12.5 min`` or ``40 s``: readable at every dataset size."""
    if hours >= 1.0:
        return f"{hours:.2f} h"
    if hours * 60 >= 1.0:
        return f"{hours * 60:.1f} min"
    return f"{hours * 3600:.0f} s"


def _table(title: str, rows: dict[str, float], hours: bool = True) -> list[str]:
    if not rows:
        return []
    width = max(len(k) for k in rows)
    lines = [f"{title}:"]
    for k, v in sorted(rows.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {k:<{width}}  {format_hours(v) if hours else f'{v:.0f}'}")
    return lines


def format_stats(s: dict[str, Any]) -> str:
    lines = [
        f"dataset: preset {s['preset']}, seed {s['seed']}, status {s['status']}",
        f"songs {s['songs']}, stems {s['stems']} (+{s['replace_variants']} replace variants), "
        f"{format_hours(s['source_hours'])} of distinct source material, "
        f"{format_hours(s['stem_hours'])} of stems",
    ]
    if s.get("build_wall_seconds"):
        lines.append(f"last build run: {s['build_wall_seconds']:.0f} s")
    lines += _table("source material by split (songs never share a split)", s["hours_by_split"])
    lines += _table("source material by origin", s["hours_by_source"])
    lines += _table("source material by style", s["hours_by_style"])
    lines += _table("stems by instrument", s["stem_hours_by_instrument"])
    lines += _table("stems (variants too) by soundfont", s["stem_hours_by_soundfont"])
    if s["processed_stems"] or s["limited_songs"]:
        lines.append(f"processed stems (EQ, compression, saturation, reverb): "
                     f"{s['processed_stems']}; songs with a limited mix bus: "
                     f"{s['limited_songs']}")
    lines += _table("triplets by split", s["triplets_by_split"], hours=False)
    lines += _table("triplets by task", s["triplets_by_task"], hours=False)
    lines += _table("triplet audio by task", s["triplet_hours_by_task"])
    for task, rows in sorted(s["edited_hours_by_task_instrument"].items()):
        lines += _table(f"{task}: triplet audio by edited instrument", rows)
    return "\n".join(lines)
