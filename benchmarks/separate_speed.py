"""Remove with the stem separator beside today's generated remove: seconds for a 10 s clip,
and seconds + peak memory for 5 minutes (the separator only). Prints a table; asserts
nothing. Targets: 10 s in under 0.3 s; 5 minutes in under 10 s and under 2 GB.

    .venv/bin/python benchmarks/separate_speed.py [--model models/instructme-small]
        [--preset small] [--threads N] [--long 300]

The separator is ``--model``'s own ``separator/``; a folder without one gets an UNTRAINED
``--preset`` model (speed does not depend on the weights), saved into a copy-free pipeline
folder beside ``--model``'s components. Each case runs in a
fresh subprocess, so its peak RSS (``resource.getrusage``) is its own (the Python runtime,
torch and the loaded models included); a 1 s edit warms each process up first. Stereo
44.1 kHz input, "remove the drums"; the generated path uses the folder's default steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from instructme.editing.pipeline import EditPipeline
folder, seconds, threads, use_sep = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), \
    sys.argv[4] == "1"
if threads > 0:
    torch.set_num_threads(threads)
pipe = EditPipeline.from_pretrained(folder)
if not use_sep:
    pipe.separator = None
rng = np.random.default_rng(0)
sr = 44_100
warm = (0.1 * rng.standard_normal((2, sr))).astype(np.float32)
pipe(warm, sr, "remove the drums", steps=1)
x = (0.1 * rng.standard_normal((2, int(seconds * sr)))).astype(np.float32)
t = time.perf_counter()
res = pipe(x, sr, "remove the drums")
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024}))
"""


def run_case(folder: Path, seconds: float, threads: int, separator: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(seconds), str(threads),
                          "1" if separator else "0"], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def link_pipeline(model: Path, preset: str, dest: Path) -> Path:
    """``dest``: symlinks to ``model``'s components; an untrained ``preset`` separator when
    ``model`` has none."""
    import torch

    from instructme.checkpoint import save_model
    from instructme.models.separator import Separator, SeparatorConfig

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vae", "chord", "editor", "separator", "pipeline.json"):
        if (model / name).exists():
            os.symlink((model / name).resolve(), dest / name)
    if (dest / "separator").exists():
        return dest
    torch.manual_seed(0)
    save_model(Separator(SeparatorConfig.preset(preset)), dest / "separator")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/instructme-small")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--long", type=float, default=300.0, help="long input, seconds")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = link_pipeline(Path(args.model), args.preset, Path(tmp) / "pipe")
        rows = [("separator", 10.0, True), ("generated (today)", 10.0, False),
                ("separator", args.long, True)]
        print(f"{'remove the drums':<20} {'input':>8} {'seconds':>9} {'x real time':>12} "
              f"{'peak RSS':>10}")
        for name, seconds, sep in rows:
            r = run_case(folder, seconds, args.threads, sep)
            print(f"{name:<20} {seconds:>7.0f}s {r['seconds']:>9.2f} "
                  f"{seconds / r['seconds']:>11.0f}x {r['rss_mb']:>8.0f} MB", flush=True)


if __name__ == "__main__":
    main()
