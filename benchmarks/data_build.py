"""Data-build throughput: stem-seconds rendered per wall-second, and the time for a preset.

    .venv/bin/python benchmarks/data_build.py                  # small preset, all cores
    .venv/bin/python benchmarks/data_build.py --preset tiny --workers 1

Builds into a fresh temporary folder (or --out), then prints the numbers the data issue asks
for: wall time, stem-seconds per wall-second, hours of distinct source material, songs, stems
and triplets per task. Target: the small preset (>= 20 h of source) in under 30 min on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from instructme.dataset.build import build_dataset
from instructme.dataset.stats import dataset_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep the dataset here (default: temp, deleted)")
    args = ap.parse_args()

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
