"""Edits of a real band recording with exact targets: generated mix vs source-preserving output.

The ``stempeg`` package ships a 6 s MUSDB18 excerpt (The Easton Ellises, "Falcon 69") with its
drums, bass, other and vocals stems (:mod:`instructme.dataset.packaged_audio`). The source is the
sum of the four stems (scaled to a 0.5 peak, the stems with it); each instruction has an exact
target made of stems:

- "remove the drums" -> bass + other + vocals;  "remove the bass" -> drums + other + vocals
- "extract the drums" -> drums;                 "extract the bass" -> bass

For every instruction and ``--seeds`` seeds, prints the multi-scale log-mel distance
(:func:`instructme.metrics.codec.multiscale_mel_distance`, lower is better) to the target of:
doing nothing (the source), the generated mix (``preserve=False``), the source-preserving
output, and the VAE's round trip of the target (the best a generated mix can do)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/real_edits.py --model models/instructme-small
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

EDITS = {
    "remove the drums": ("bass", "other", "vocals"),
    "remove the bass": ("drums", "other", "vocals"),
    "extract the drums": ("drums",),
    "extract the bass": ("bass",),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/instructme-small", help="pipeline folder")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (model default)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from instructme.dataset.packaged_audio import packaged_multitrack
    from instructme.editing.pipeline import EditPipeline
    from instructme.metrics.codec import multiscale_mel_distance as mel

    pipe = EditPipeline.from_pretrained(args.model, device="cpu")
    sr = pipe.sample_rate
    stems = packaged_multitrack(sr)
    if stems is None:
        raise SystemExit("error: the stempeg package is not installed (pip install stempeg)")
    src = sum(stems[k] for k in ("drums", "bass", "other", "vocals")).astype(np.float32)
    scale = 0.5 / float(np.abs(src).max())  # a file's level: the stems sum to peaks above 1
    src *= np.float32(scale)
    stems = {k: v * np.float32(scale) for k, v in stems.items()}
    cols = ["do nothing", "generated", "preserved", "VAE(target)"]
    table: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for text, parts in EDITS.items():
        tgt = sum(stems[k] for k in parts).astype(np.float32)
        with torch.no_grad():
            z = pipe.vae.encode_latents(torch.from_numpy(tgt)[None])
            rt = pipe.vae.decode_latents(z, length=tgt.shape[0])[0].numpy()
        row = {"do nothing": [mel(tgt, src, sr)], "VAE(target)": [mel(tgt, rt, sr)],
               "generated": [], "preserved": []}
        for seed in range(args.seeds):
            for mode in ("generated", "preserved"):
                out = pipe(src, sr, text, steps=args.steps, seed=seed,
                           preserve=mode == "preserved").audio
                row[mode].append(mel(tgt, out, sr))
        table[text] = {c: float(np.mean(v)) for c, v in row.items()}
    wall = time.perf_counter() - t0
    print(f"real recording ({src.shape[0] / sr:.1f} s, stempeg's MUSDB18 excerpt): multi-scale "
          f"log-mel distance to the exact target (lower is better), mean of {args.seeds} seeds; "
          f"{wall:.0f} s")
    print("| instruction | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for text, row in table.items():
        print(f"| {text} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "table": table}, indent=2))


if __name__ == "__main__":
    main()
