"""``instructme train editor``: cache latents once, then train the editing U-Net.

Multi-GPU (or multi-process CPU) runs use the same command under ``accelerate launch``::

    accelerate launch --num_processes 4 -m instructme.cli train editor --data D --vae V ...
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from instructme.errors import InstructMEError


def _cache_ready(cache: Path) -> bool:
    import json

    meta = cache / "cache.json"
    return meta.is_file() and bool(json.loads(meta.read_text()).get("splits", {}).get("train"))


def _build_cache(args: argparse.Namespace, state: Any) -> Path:
    """Build (or reuse) the latent cache on the main process while the others wait."""
    import torch

    from instructme.models.text import TextEncoderConfig
    from instructme.models.unet import EditorConfig
    from instructme.training.editor_cache import build_cache_from_models, default_cache_dir

    kind = args.text or EditorConfig.preset(args.preset).text_encoder
    text_cfg = TextEncoderConfig(kind=kind, path=args.text_path)
    if args.cache is None and args.vae is None:
        raise InstructMEError("--vae is required (or --cache with a built latent cache)")
    parts = args.target == "part"
    if args.separator and not parts:
        raise InstructMEError("--separator is for --target part (a replace follows its "
                              "estimate of the old instrument)")
    cache = Path(args.cache) if args.cache else default_cache_dir(
        args.data, args.vae, args.chord, text_cfg, parts=parts, separator_dir=args.separator)
    if args.vae is None:
        if not _cache_ready(cache):
            raise InstructMEError(f"{cache}: no built latent cache there; pass --vae")
        return cache
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    with state.main_process_first():
        if state.is_main_process or not _cache_ready(cache):
            bars: dict[str, Any] = {}

            def progress(split: str, done: int, total: int) -> None:
                if args.quiet or not state.is_main_process:
                    return
                from tqdm import tqdm

                bar = bars.get(split) or bars.setdefault(
                    split, tqdm(total=total, desc=f"encoding {split}", unit="item"))
                bar.update(done - bar.n)

            build_cache_from_models(args.data, cache, args.vae, args.chord, text_cfg,
                                    batch_size=args.cache_batch_size, device=device,
                                    max_items={"train": args.max_train_items,
                                               "val": args.max_val_items},
                                    progress=progress, parts=parts,
                                    separator_dir=args.separator)
            for bar in bars.values():
                bar.close()
    return cache


def _cmd_train(args: argparse.Namespace) -> int:
    import torch
    from accelerate import PartialState

    from instructme.training.editor import train_editor

    for name in ("steps", "batch_size", "grad_accum", "max_train_items", "max_val_items"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InstructMEError(f"--{name.replace('_', '-')} must be at least 1")
    if not Path(args.data).is_dir():
        raise InstructMEError(f"{args.data}: dataset folder not found")
    cpu = args.cpu or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    cache = Path(args.cache) if args.resume and args.cache else None
    try:
        if not args.resume:
            cache = _build_cache(args, state)
        last = train_editor(cache or "", args.out, preset=args.preset, variant=args.variant,
                            steps=args.steps, resume=args.resume, quiet=args.quiet, cpu=cpu,
                            batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                            crop_seconds=args.crop_seconds, seed=args.seed,
                            editor_overrides={"target": args.target})
    except ValueError as e:
        raise InstructMEError(str(e)) from None
    if state.is_main_process:
        loss = f" (loss {last['loss']:.4f})" if "loss" in last else ""
        print(f"wrote {args.out} at step {last['step']}{loss}")
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    from instructme.models.unet import VARIANTS

    p = train_sub.add_parser(
        "editor", help="train the InstructME editing U-Net (diffusion on VAE latents)",
        description="Encode the dataset's triplets once with the VAE, chord recognizer and "
                    "text encoder (cached), then train the editor. Run under 'accelerate "
                    "launch -m instructme.cli ...' for several GPUs or processes.")
    p.add_argument("--data", required=True, help="dataset folder written by 'data build'")
    p.add_argument("--out", required=True, help="editor model folder (training state in OUT/state)")
    p.add_argument("--vae", help="trained VAE folder (needed to build the latent cache)")
    p.add_argument("--chord", help="trained chord recognizer folder (chord conditioning)")
    p.add_argument("--text", choices=["minilm", "t5", "hash"],
                   help="instruction encoder (default: the preset's; minilm except tiny)")
    p.add_argument("--text-path", help="local T5 folder or name in the local HF cache (--text t5)")
    p.add_argument("--cache", help="latent cache folder (default: DATA/editor_cache/<models>)")
    p.add_argument("--cache-batch-size", type=int, default=8, help="windows per encoding batch")
    p.add_argument("--max-train-items", type=int,
                   help="cache only a seeded random subset of this many training items")
    p.add_argument("--max-val-items", type=int, default=512,
                   help="validation items to cache (seeded subset; default 512)")
    p.add_argument("--preset", choices=["tiny", "small", "large"], default="small")
    p.add_argument("--variant", choices=list(VARIANTS), default="full",
                   help="ablation: full model, no-chord, no-multi-scale, full-attention, "
                        "audit (concat only)")
    p.add_argument("--target", choices=["mix", "part"], default="mix",
                   help="mix: the paper's whole edited mix; part: only what is new (the added "
                        "or replacing stem; a remix's whole mix), mixed into the source by "
                        "the pipeline")
    p.add_argument("--separator", help="stem separator folder (--target part): a replace "
                                       "also trains on its estimate of the old instrument")
    p.add_argument("--steps", type=int, help="total optimiser steps (default: the preset's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--batch-size", type=int, help="windows per process and micro-step")
    p.add_argument("--grad-accum", type=int, help="micro-steps per optimiser step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--crop-seconds", type=float, help="train on random crops of this length")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is there")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)
