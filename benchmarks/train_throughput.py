"""Editor training throughput (samples/s) per preset and variant on this machine.

One optimiser step = diffusion loss on random latents of ``--seconds`` windows, backward,
fused AdamW, EMA update: what :func:`instructme.training.editor.train_editor` does per step
minus reading the memory-mapped cache. GPU (bf16 autocast) when available, else CPU.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_throughput.py --presets tiny small
"""

from __future__ import annotations

import argparse
import time

import torch

from instructme.diffusion import Diffusion
from instructme.models.unet import VARIANTS, EditorConfig, EditorUNet

BATCH = {"tiny": 8, "small": 8, "large": 8}


def measure(preset: str, variant: str, batch: int, seconds: float, steps: int,
            device: torch.device) -> dict[str, float]:
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    cfg = EditorConfig.variant(preset, variant)
    model = EditorUNet(cfg).to(device).train()
    diff = Diffusion.from_config(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ema = EMAModel(model.parameters(), decay=0.999, foreach=True)
    frames = round(seconds * cfg.latent_rate)
    z_src = torch.randn(batch, cfg.latent_channels, frames, device=device)
    z_tgt = torch.randn(batch, cfg.latent_channels, frames, device=device)
    text = torch.randn(batch, 16, cfg.text_dim, device=device)
    mask = torch.ones(batch, 16, dtype=torch.bool, device=device)
    chords = torch.rand(batch, round(seconds * cfg.chord_rate) + 1, cfg.chord_classes,
                        device=device).softmax(-1)
    gen = torch.Generator().manual_seed(0)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
           else torch.autocast("cpu", enabled=False))

    def step() -> None:
        with amp:
            loss = diff.training_loss(lambda z, t: model(z, t, z_src, text, mask, chords),
                                      z_tgt, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(model.parameters())

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return {"params_m": model.num_parameters / 1e6, "frames": frames, "s_per_step": dt,
            "samples_per_s": batch / dt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "small"],
                   choices=["tiny", "small", "large"])
    p.add_argument("--variants", nargs="+", default=["full"], choices=list(VARIANTS))
    p.add_argument("--seconds", type=float, default=10.0, help="window length")
    p.add_argument("--batch", type=int, help="batch size (default: per preset)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device={device} threads={torch.get_num_threads()} window={args.seconds}s")
    print(f"{'preset':<7} {'variant':<15} {'params M':>9} {'frames':>7} {'batch':>6} "
          f"{'s/step':>8} {'samples/s':>10}")
    for preset in args.presets:
        for variant in args.variants:
            batch = args.batch or BATCH[preset]
            r = measure(preset, variant, batch, args.seconds, args.steps, device)
            print(f"{preset:<7} {variant:<15} {r['params_m']:>9.2f} {r['frames']:>7} "
                  f"{batch:>6} {r['s_per_step']:>8.3f} {r['samples_per_s']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
