"""Data-build throughput: stem-seconds rendered per wall-second, and the time for a preset.

    .venv/bin/python benchmarks/data_build.py                  # small preset, all cores
    .venv/bin/python benchmarks/data_build.py --preset tiny --workers 1
    .venv/bin/python benchmarks/data_build.py --preset tiny --side-by-side   # plain vs diverse

Builds into a fresh temporary folder (or --out), then prints the numbers the data issue asks
for: wall time, stem-seconds per wall-second, hours of distinct source material, songs, stems
and triplets per task. Target: the small preset (>= 20 h of source) in under 30 min on 2 cores.
``--side-by-side`` builds the preset twice, as it is and with the ``diverse`` preset's timbre
settings (three soundfonts, per-stem pedalboard chains, +-6 dB, limited mix buses), and
prints both throughputs and their ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from instructme.config import DataConfig
from instructme.dataset.build import build_dataset
from instructme.dataset.stats import dataset_stats

DIVERSE = {k: DataConfig.PRESETS["diverse"][k]
           for k in ("soundfonts", "stem_fx", "gain_jitter_db", "limiter_prob")}


def side_by_side(preset: str, workers: int, seed: int) -> None:
    """Stem-seconds per wall-second of ``preset`` as it is and with diverse timbres."""
    rates = {}
    for name, extra in (("plain", {}), ("diverse", DIVERSE)):
        out = tempfile.mkdtemp(prefix="instructme-bench-")
        try:
            summary = build_dataset(out, preset=preset, workers=workers, seed=seed, quiet=True,
                                    config=DataConfig.preset(preset, **extra))
            rates[name] = summary["rendered_stem_seconds"] / summary["render_wall_seconds"]
        finally:
            shutil.rmtree(out, ignore_errors=True)
    print(f"preset {preset}, {workers} workers: stem-seconds / wall-second  plain "
          f"{rates['plain']:.0f}, diverse {rates['diverse']:.0f} "
          f"({rates['diverse'] / rates['plain']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the dataset here (default: temp, deleted)")
    ap.add_argument("--side-by-side", action="store_true",
                    help="the preset plain and with diverse timbres, throughput side by side")
    args = ap.parse_args()
    if args.side_by_side:
        side_by_side(args.preset, args.workers, args.seed)
        return

    out = args.out or tempfile.mkdtemp(prefix="instructme-bench-")
    try:
        t0 = time.perf_counter()
        summary = build_dataset(out, preset=args.preset, workers=args.workers, seed=args.seed,
                                quiet=False)
        wall = time.perf_counter() - t0
        s = dataset_stats(out)
        stem_seconds = summary["rendered_stem_seconds"]
        print(f"\npreset {args.preset}, {args.workers} workers, {os.cpu_count()} cores")
        print(f"build wall time            {wall:8.1f} s  ({wall / 60:.1f} min)")
        print(f"render wall time           {summary['render_wall_seconds']:8.1f} s")
        print(f"stem-seconds rendered      {stem_seconds:8.0f}")
        print(f"stem-seconds / wall-second {stem_seconds / summary['render_wall_seconds']:8.1f}")
        print(f"distinct source material   {s['source_hours']:8.2f} h")
        print(f"songs {s['songs']}, stems {s['stems']}, replace variants {s['replace_variants']}")
        print("triplets by task: " + ", ".join(
            f"{k} {v}" for k, v in sorted(s["triplets_by_task"].items())))
        print("triplets by split: " + ", ".join(
            f"{k} {v}" for k, v in sorted(s["triplets_by_split"].items())))
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
