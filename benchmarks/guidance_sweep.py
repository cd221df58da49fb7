"""How close a pipeline's edits come to the exact targets, per task, for several guidance
scales and output modes (and so which defaults to ship).

For a seeded sample of ``--per-task`` records of each task of a dataset split, every record's
source window is edited at each ``--guidance`` and the multi-scale log-mel distance
(:func:`instructme.metrics.codec.multiscale_mel_distance`, lower is better) to the exact target
is printed per task, beside two anchors measured on the same records: the "do nothing" edit
(source vs target) and the VAE's own round trip of the target (the best any edit through this
VAE can do). ``--modes generated preserved`` also compares the generated mix with the
source-preserving output (:mod:`instructme.editing.preserve`) of the same sampler run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/guidance_sweep.py --model DIR \
        --data runs/data-small --per-task 4 --guidance 1 3 5 --steps 25
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="pipeline folder")
    ap.add_argument("--data", required=True, help="dataset folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--per-task", type=int, default=4)
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", nargs="+", default=["generated"],
                    choices=["generated", "preserved"], help="output modes to compare")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from instructme.dataset.folder import load_window, read_build_info, read_manifest
    from instructme.editing.pipeline import EditPipeline
    from instructme.metrics.codec import multiscale_mel_distance
    from instructme.metrics.edit_manifest import record_instructions

    data = Path(args.data)
    sr = int(read_build_info(data)["sample_rate"])
    records = read_manifest(data / "manifests" / f"{args.split}.jsonl")
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    rng = np.random.default_rng(args.seed)
    sample = {t: [rs[i] for i in sorted(rng.choice(len(rs), min(args.per_task, len(rs)),
                                                   replace=False))]
              for t, rs in sorted(by_task.items())}
    pipe = EditPipeline.from_pretrained(args.model, device="cpu")

    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    t0 = time.perf_counter()
    for task, recs in sample.items():
        for r in recs:
            src = load_window(data, r["source"], float(r["start"]), float(r["duration"]), sr)
            tgt = load_window(data, r["target"], float(r["start"]), float(r["duration"]), sr)
            rows[task]["do nothing"].append(multiscale_mel_distance(tgt, src, sr))
            with torch.no_grad():
                z = pipe.vae.encode_latents(torch.from_numpy(tgt)[None])
                rt = pipe.vae.decode_latents(z)[0, : tgt.shape[0]].numpy()
            rows[task]["VAE(target)"].append(multiscale_mel_distance(tgt, rt, sr))
            for g in args.guidance:
                for mode in args.modes:
                    out = pipe.edit_chain(src, sr, record_instructions(r), steps=args.steps,
                                          guidance=g, seed=args.seed,
                                          preserve=mode == "preserved")[-1].audio
                    rows[task][_col(g, mode, args.modes)].append(
                        multiscale_mel_distance(tgt, out, sr))
    wall = time.perf_counter() - t0

    cols = ["do nothing", *[_col(g, m, args.modes) for g in args.guidance for m in args.modes],
            "VAE(target)"]
    print(f"multi-scale log-mel distance to the exact target (lower is better); "
          f"{args.per_task} {args.split} records per task, {args.steps} steps, {wall:.0f} s")
    print(f"| task | n | {' | '.join(cols)} |")
    print("|---|---|" + "---|" * len(cols))
    table = {}
    for task in [*sample, "all"]:
        vals = ({c: [v for t in sample for v in rows[t][c]] for c in cols} if task == "all"
                else {c: rows[task][c] for c in cols})
        table[task] = {c: float(np.mean(v)) for c, v in vals.items()}
        n = len(vals[cols[0]])
        print(f"| {task} | {n} | " + " | ".join(f"{table[task][c]:.3f}" for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "table": table}, indent=2))


def _col(guidance: float, mode: str, modes: list[str]) -> str:
    return f"guidance {guidance:g}" + (f" {mode}" if len(modes) > 1 else "")


if __name__ == "__main__":
    main()
