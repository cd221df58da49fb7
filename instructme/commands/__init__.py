"""CLI subcommands contributed per area; each module exposes
``add_commands(sub, train_sub, eval_sub)`` and imports heavy modules only when run."""

from __future__ import annotations

import argparse
from pathlib import Path

from instructme.errors import InstructMEError


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every supervised ``instructme train X`` shares."""
    parser.add_argument("--data", required=True, help="dataset folder ('instructme data build')")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--preset", choices=["tiny", "small", "large"], default="small")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--resume", action="store_true", help="continue a run in --out")
    parser.add_argument("--seed", type=int, default=0)


def check_training_arguments(args: argparse.Namespace) -> None:
    """One-line errors for options that would only fail deep inside a trainer."""
    if args.steps is not None and args.steps < 1:
        raise InstructMEError("--steps must be at least 1")
    if not Path(args.data).is_dir():
        raise InstructMEError(f"{args.data}: dataset folder not found")
