"""Editing speed and memory on this machine: real-time factor for a 10 s clip (25 and 50
steps, with guidance) and time + peak memory for 30 s, 2 min and 5 min songs in one pass,
with the ratio to linear scaling from the 30 s case; side by side, the 10 s clip edited by an
editor with part targets (``--targets mix part``: add, and replace with the separator's
removal and the followed part). Prints a table; asserts nothing.

    .venv/bin/python benchmarks/edit_speed.py [--preset small] [--text minilm|hash]
        [--long-steps 50] [--lengths 30 120 300] [--targets mix part] [--threads N]
        [--device cpu]

Models are UNTRAINED ``--preset`` models (speed does not depend on the weights), written once
as a pipeline folder. Each case runs in a fresh subprocess, so its peak RSS
(``resource.getrusage``) is its own: it includes the Python runtime, torch and the loaded
models. A 1 s, 1-step edit warms each process up before the timed edit. Edit times exclude
model loading; "x linear" is ``time(L) / (time(30 s) * L / 30)`` (1.00 = exactly linear), on
wall time and on process CPU time (which other load on a busy machine disturbs less; use
``--threads 1`` there: several threads on oversubscribed cores are many times slower).

Measured 2026-11-25 on the 2-core CPU box (load average 3-4 from other jobs, ``--threads 1``,
small preset, MiniLM text, guidance 3, 50 steps unless said): 10 s clip 2.6 s (25 steps) and
5.0 s (50 steps) wall, 1.8 / 3.4 s CPU; 30 s 11.6 s; 2 min 43.5 s; 5 min 115 s wall, 77 s CPU
(0.99x linear from 30 s on CPU time, 1.00x on wall time); peak RSS 1.44 GB for 5 min.
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
d, seconds, steps, threads, device, instruction = sys.argv[1], float(sys.argv[2]), \
    int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
if threads > 0:
    torch.set_num_threads(threads)
pipe = EditPipeline.from_pretrained(d, device=device)
sr = 44_100
rng = np.random.default_rng(0)
t = np.arange(int(seconds * sr)) / sr
x = np.stack([0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size),
              0.2 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)])
x = x.astype(np.float32)  # 44.1 kHz stereo, as a user's file
pipe(x[:, :sr], sr, "add a piano", steps=1)  # warm-up
ru0 = resource.getrusage(resource.RUSAGE_SELF)
base = ru0.ru_maxrss
t0 = time.perf_counter()
r = pipe(x, sr, instruction, steps=steps, guidance=3.0)
dt = time.perf_counter() - t0
ru1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
assert r.audio.shape == x.shape
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "cpu_s": cpu, "timings": r.timings, "peak_mb": peak / 1024,
                  "base_mb": base / 1024, "threads": torch.get_num_threads()}))
"""


def build(directory: Path, preset: str, text: str, target: str = "mix") -> Path:
    import torch

    from instructme.checkpoint import save_model
    from instructme.editing.folder import write_pipeline_folder
    from instructme.models.chord import ChordConfig, ChordRecognizer
    from instructme.models.separator import Separator, SeparatorConfig
    from instructme.models.text import TextEncoderConfig
    from instructme.models.unet import EditorConfig, EditorUNet
    from instructme.models.vae import AudioVAE, VAEConfig

    torch.manual_seed(0)
    vae = AudioVAE(VAEConfig.preset(preset))
    chord = ChordRecognizer(ChordConfig.preset(preset))
    over = {"text_encoder": text, "text_dim": 64} if text == "hash" else {}
    editor = EditorUNet(EditorConfig.preset(preset, target=target, **over))
    separator = Separator(SeparatorConfig.preset(preset)) if target == "part" else None
    params = {n: sum(p.numel() for p in m.parameters())
              for n, m in (("vae", vae), ("chord", chord), ("editor", editor),
                           ("separator", separator)) if m is not None}
    print(f"target {target}, parameters: "
          + ", ".join(f"{n} {v / 1e6:.2f} M" for n, v in params.items()))
    folder = write_pipeline_folder(directory, vae, chord, editor,
                                   TextEncoderConfig(kind=text, dim=64))
    if separator is not None:
        save_model(separator, folder / "separator")
    return folder


def run_case(d: Path, seconds: float, steps: int, threads: int, device: str,
             instruction: str = "add a piano") -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(d), str(seconds), str(steps),
                          str(threads), device, instruction], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise SystemExit(f"case {seconds} s failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "large"])
    ap.add_argument("--text", default="minilm", choices=["minilm", "hash"])
    ap.add_argument("--clip-steps", type=int, nargs="+", default=[25, 50])
    ap.add_argument("--long-steps", type=int, default=50)
    ap.add_argument("--lengths", type=float, nargs="+", default=[30.0, 120.0, 300.0])
    ap.add_argument("--targets", nargs="+", default=["mix", "part"], choices=["mix", "part"],
                    help="editor targets timed on the 10 s clip (long songs: mix)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    print(f"cpu cores: {os.cpu_count()}, load average: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    cases = [("mix", "add a piano")] if "mix" in args.targets else []
    if "part" in args.targets:
        cases += [("part", "add a piano"), ("part", "replace the bass with strings")]
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {t: build(Path(tmp) / t, args.preset, args.text, t) for t in args.targets}
        rows = []
        for target, instruction in cases:
            for steps in args.clip_steps:
                r = run_case(dirs[target], 10.0, steps, args.threads, args.device, instruction)
                rows.append((10.0, steps, {**r, "case": f"{target}: {instruction.split()[0]}"}))
        if "mix" in dirs:
            for length in args.lengths:
                r = run_case(dirs["mix"], length, args.long_steps, args.threads, args.device)
                rows.append((length, args.long_steps, {**r, "case": "mix: add"}))
    ref = next(((s, r) for s, st, r in rows if s == args.lengths[0]
                and st == args.long_steps), None)
    print(f"\npreset {args.preset}, text {args.text}, guidance 3.0 (CFG: batch 2), dpm sampler,"
          f" {rows[0][2]['threads']} torch threads, device {args.device}")
    head = (f"{'editor: edit':<14} {'audio':>7} {'steps':>5} {'edit s':>8} {'RTF':>6} "
            f"{'x linear':>8} "
            f"{'CPU s':>8} {'x lin CPU':>9} {'peak MB':>8} {'+MB':>6}  per stage (s)")
    print(head)
    print("-" * len(head))
    for seconds, steps, r in rows:
        lin = lin_cpu = "-"
        if ref is not None and steps == args.long_steps and seconds in args.lengths:
            lin = f"{r['seconds'] / (ref[1]['seconds'] * seconds / ref[0]):.2f}"
            lin_cpu = f"{r['cpu_s'] / (ref[1]['cpu_s'] * seconds / ref[0]):.2f}"
        stages = " ".join(f"{k} {v:.2f}" for k, v in r["timings"].items())
        print(f"{r['case']:<14} {seconds:>6.0f}s {steps:>5} {r['seconds']:>8.2f} "
              f"{r['seconds'] / seconds:>6.3f} "
              f"{lin:>8} {r['cpu_s']:>8.2f} {lin_cpu:>9} {r['peak_mb']:>8.0f} "
              f"{r['peak_mb'] - r['base_mb']:>6.0f}  {stages}")
    print("\nRTF = edit time / audio duration (below 1: faster than real time); CPU s: "
          "process CPU time of the edit (robust to other load on the machine); peak MB: max "
          "RSS of the process (runtime + models + edit); +MB: growth during the timed edit.")


if __name__ == "__main__":
    main()
