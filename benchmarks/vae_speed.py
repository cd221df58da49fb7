"""Audio VAE speed on this CPU: encode+decode throughput (x real time) per preset and thread
count, and peak memory for a 5-minute input in one pass. Prints numbers; asserts nothing.

    .venv/bin/python benchmarks/vae_speed.py [--presets tiny small medium large] [--threads 1 2]
        [--sine-slots 45]

``--sine-slots N`` also measures each preset with a sinusoidal low band of N oscillators
(``instructme/models/vae_sines.py``), side by side with the plain one.

Weights are random (speed does not depend on them). Each measurement runs in a fresh
subprocess so that peak RSS belongs to that measurement alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from instructme.models.vae import AudioVAE, VAEConfig
preset, threads = sys.argv[1], int(sys.argv[2])
seconds, repeats, sines = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
vae = AudioVAE(VAEConfig.preset(preset, sine_slots=sines)).eval()
sr = vae.config.sample_rate
x = torch.randn(1, int(seconds * sr)) * 0.1
with torch.inference_mode():
    vae.decode_latents(vae.encode_latents(x[:, : sr]))  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        y = vae.decode_latents(vae.encode_latents(x), length=x.shape[-1])
        times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert y.shape == x.shape
print(json.dumps({"x_realtime": seconds / min(times), "params": vae.num_parameters,
                  "peak_mb": peak / 1024, "extra_mb": (peak - base) / 1024}))
"""


def measure(preset: str, threads: int, seconds: float, repeats: int, sines: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, preset, str(threads), str(seconds),
                          str(repeats), str(sines)], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "medium", "large"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seconds", type=float, default=30.0, help="clip length for throughput")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sine-slots", type=int, default=0,
                    help="also measure each preset with a sinusoidal low band of N oscillators")
    args = ap.parse_args()
    print("| preset | params | weights MB | threads | encode+decode x real time (30 s) "
          "| 5-min input: peak RSS MB (model+run) |")
    print("|---|---|---|---|---|---|")
    variants = [(p, s) for p in args.presets for s in sorted({0, args.sine_slots})]
    for preset, sines in variants:
        name = f"{preset} + {sines} sines" if sines else preset
        long = measure(preset, 1, 300.0, 1, sines)
        for threads in args.threads:
            r = measure(preset, threads, args.seconds, args.repeats, sines)
            print(f"| {name} | {r['params'] / 1e6:.2f} M | {r['params'] * 4 / 1e6:.1f} "
                  f"| {threads} | {r['x_realtime']:.0f}x | {long['peak_mb']:.0f} "
                  f"(+{long['extra_mb']:.0f} for the pass) |", flush=True)


if __name__ == "__main__":
    main()
