"""Arranger speed, and (optionally) how well rendered arrangements match their chord labels.

Speed: milliseconds to arrange one group (all styles, ``--bars`` bars).
Chords (``--cra N``): N groups are arranged in every style, each song's stems are rendered
with FluidSynth and balanced, and madmom's pretrained CNN+CRF chord recogniser (an
independent judge, never trained on this data; optional ``eval`` extra) transcribes the
mix; the majmin chord recognition accuracy (CRA) against the arranger's labels is printed
per style. Slow: about 20 s of CPU per song.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/arranger_check.py --cra 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=24)
    ap.add_argument("--groups", type=int, default=20, help="groups for the speed test")
    ap.add_argument("--cra", type=int, default=0, help="groups to render and transcribe")
    ap.add_argument("--cra-bars", type=int, default=16)
    args = ap.parse_args()

    from instructme.music.arranger import STYLES, arrange_group

    arrange_group("warm", ["pop"], seed=0, bars=4)
    t = time.perf_counter()
    for i in range(args.groups):
        arrange_group(f"s{i}", STYLES, seed=i, bars=args.bars)
    per_group = (time.perf_counter() - t) / args.groups * 1000
    out: dict = {"bars": args.bars, "styles": len(STYLES),
                 "ms_per_group_all_styles": round(per_group, 1),
                 "ms_per_song": round(per_group / len(STYLES), 2)}
    if args.cra:
        from instructme.dataset.render import balance_stems, render_part
        from instructme.metrics.chords import cra
        from instructme.metrics.madmom_models import MadmomChordModel

        model = MadmomChordModel()
        scores: dict[str, list[float]] = {s: [] for s in STYLES}
        for seed in range(1, args.cra + 1):
            for song in arrange_group(f"c{seed}", STYLES, seed=seed, bars=args.cra_bars):
                stems = {p.name: render_part(p, song.duration) for p in song.parts}
                roles = {p.name: p.role for p in song.parts}
                mix = sum(balance_stems(stems, roles, np.random.default_rng(seed)).values())
                ref = [(c.start, c.end, c.label) for c in song.chords]
                scores[str(song.style)].append(cra(model.transcribe(mix, 16_000), ref))
        out["cra_madmom_majmin"] = {s: round(float(np.mean(v)), 3) for s, v in scores.items()}
        out["cra_mean"] = round(float(np.mean([x for v in scores.values() for x in v])), 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
