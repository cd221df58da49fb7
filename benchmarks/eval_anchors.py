"""The edit report on real rendered data with trivial "models": do-nothing and perfect edits.

Writes two outputs folders for a dataset split — ``source`` (every edit returns its source
unchanged) and ``target`` (every edit returns its target: a perfect editor) — runs
``evaluate_edits`` on each with the default analyzers (log-mel baseline, madmom when
installed, ``--classifier`` / ``--chord-model`` when given) and prints the headline numbers
and the scoring speed (seconds of wall time per edit, 3 clips analysed per edit).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_anchors.py --data DIR [--split test]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="dataset folder written by 'data build'")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="seeded sample of N records")
    ap.add_argument("--chord-model", default=None)
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--out", default=None, help="keep the reports here (default: temporary)")
    args = ap.parse_args()

    import soundfile as sf

    from instructme.dataset.folder import load_window, read_manifest
    from instructme.metrics.report import build_analyzers, evaluate_edits

    data = Path(args.data)
    manifest = data / "manifests" / f"{args.split}.jsonl"
    records = read_manifest(manifest)
    analyzers = build_analyzers(chord_model=args.chord_model, classifier_dir=args.classifier)
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(args.out) if args.out else Path(tmp)
        for kind in ("source", "target"):
            outputs = Path(tmp) / f"outputs-{kind}"
            outputs.mkdir()
            for r in records:
                x = load_window(data, r[kind], float(r["start"]), float(r["duration"]))
                sf.write(str(outputs / f"{r['id']}.wav"), x, 16000, subtype="FLOAT")
            t0 = time.perf_counter()
            rep = evaluate_edits(manifest, outputs, out_root / f"report-{kind}", data_dir=data,
                                 analyzers=analyzers, limit=args.limit, progress=False)
            dt = time.perf_counter() - t0
            print(f"== outputs = {kind}: {rep['n_records']} edits, "
                  f"{dt / rep['n_records']:.2f} s per edit")
            for task, systems in rep["tasks"].items():
                o = systems["output"]
                print(json.dumps({"task": task, "n": o["n"], "fad": o["fad"], "ia": o["ia"],
                                  "cra": o["cra"], "cra_score": o["cra_score"], "pch": o["pch"],
                                  "ioi": o["ioi"]}, default=lambda v: round(v, 3)))
            r_all = rep["tasks"]["all"]
            print("anchors (all):", json.dumps(
                {s: {k: r_all[s][k] for k in ("cra", "cra_score", "pch", "ioi", "ia")}
                 for s in ("target", "source", "random")}))


if __name__ == "__main__":
    main()
