"""Time and peak memory of chunked vs full self-attention against sequence length.

Lengths are 1x..32x the latent length of a 10 s clip (``--frames`` frames per 10 s). Each
measurement runs in a fresh subprocess, so peak memory is that process's peak resident set
(CPU) or ``torch.cuda.max_memory_allocated`` (GPU), minus the same process's footprint just
before the attention call. Forward pass only (inference), no gradients.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attention_scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(mode: str, length: int, args: argparse.Namespace) -> dict[str, float]:
    import torch

    from instructme.models.attention import ChunkedSelfAttention

    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mod = ChunkedSelfAttention(args.dim, args.heads, args.chunk, args.overlap, mode=mode,
                               inter_chunk=True).to(dev).eval()
    x = torch.randn(1, length, args.dim, device=dev)
    with torch.no_grad():
        mod(x[:, : min(length, 64)])  # warm-up (kernels, allocator)
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _peak_rss_mb()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            mod(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        if dev.type == "cuda":
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak = _peak_rss_mb() - base
    return {"seconds": min(times), "peak_mb": peak, "device": dev.type}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=320, help="latent frames of a 10 s clip")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--multiples", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--single", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.single:
        print(json.dumps(measure(args.single[0], int(args.single[1]), args)))
        return
    base_cmd = [sys.executable, __file__, "--dim", str(args.dim), "--heads", str(args.heads),
                "--chunk", str(args.chunk), "--overlap", str(args.overlap),
                "--repeats", str(args.repeats)]
    print(f"dim={args.dim} heads={args.heads} chunk={args.chunk} overlap={args.overlap} "
          f"frames/10s={args.frames} threads={os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"{'x10s':>5} {'frames':>7} | {'chunked s':>10} {'MB':>8} | {'full s':>10} {'MB':>8}")
    for m in args.multiples:
        length = m * args.frames
        row = {}
        for mode in ("chunked", "full"):
            out = subprocess.run(base_cmd + ["--single", mode, str(length)], capture_output=True,
                                 text=True, check=True)
            row[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        c, f = row["chunked"], row["full"]
        print(f"{m:>5} {length:>7} | {c['seconds']:>10.4f} {c['peak_mb']:>8.1f} | "
              f"{f['seconds']:>10.4f} {f['peak_mb']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
