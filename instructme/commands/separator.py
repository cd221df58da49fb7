"""``instructme train separator`` and ``instructme eval separate`` (the stem separator)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from instructme.commands import add_training_arguments, check_training_arguments
from instructme.errors import InstructMEError

ROWS = (("separator", ""), ("do nothing", "_nothing"), ("ideal ratio mask", "_irm"))


def format_report(metrics: dict[str, Any]) -> str:
    """The SI-SDR table of :func:`~instructme.training.separator.evaluate_separator`."""
    lines = [f"  {'SI-SDR (dB)':<18} {'extract':>8} {'remove':>8}"]
    for name, suffix in ROWS:
        if f"extract{suffix}_sisdr" in metrics:
            lines.append(f"  {name:<18} {metrics[f'extract{suffix}_sisdr']:8.2f} "
                         f"{metrics[f'remove{suffix}_sisdr']:8.2f}")
    if "remove_better" in metrics:
        lines.append(f"  removes closer to the target than doing nothing: "
                     f"{100 * metrics['remove_better']:.0f} %")
    for cls, d in metrics.get("per_class", {}).items():
        lines.append(f"  {cls:<18} {d['extract']:8.2f} {d['remove']:8.2f}   ({d['count']})")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    from instructme.training.separator import train_separator

    check_training_arguments(args)
    try:
        metrics = train_separator(args.data, args.out, preset=args.preset, steps=args.steps,
                                  resume=args.resume, seed=args.seed)
    except ValueError as e:
        raise InstructMEError(str(e)) from None
    if metrics:
        print("validation (held-out songs, stem-subset mixes):")
        print(format_report(metrics))
    print(f"wrote {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from instructme.checkpoint import load_model
    from instructme.fileio import atomic_write_text
    from instructme.models.separator import Separator
    from instructme.training.separator import evaluate_separator, heldout_set

    if args.items < 1 or args.seconds <= 0:
        raise InstructMEError("--items must be at least 1 and --seconds positive")
    model = load_model(Separator, args.model)
    data = heldout_set(args.data, model.config, args.split, args.items, args.seconds,
                       seed=args.seed)
    metrics = evaluate_separator(model, data, per_class=True)
    print(f"separator on the {args.split} split of {args.data}: {args.items} mixes of "
          f"{args.seconds:g} s")
    print(format_report(metrics))
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser("separator",
                             help="train the instruction-conditioned stem separator")
    add_training_arguments(t)
    t.set_defaults(func=_cmd_train)

    e = eval_sub.add_parser("separate", help="SI-SDR of extract / remove on held-out songs")
    e.add_argument("--model", required=True, help="separator model folder")
    e.add_argument("--data", required=True, help="dataset folder (e.g. a 'data render-eval' "
                   "folder for timbres never trained on)")
    e.add_argument("--split", choices=["train", "val", "test"], default="test")
    e.add_argument("--items", type=int, default=256, help="number of held-out mixes")
    e.add_argument("--seconds", type=float, default=4.0, help="mix length")
    e.add_argument("--seed", type=int, default=4321)
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    e.set_defaults(func=_cmd_eval)
