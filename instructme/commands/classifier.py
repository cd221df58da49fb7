"""``instructme train classifier`` and ``instructme eval classifier`` (instrument/style judge)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instructme.commands import add_training_arguments, check_training_arguments
from instructme.errors import InstructMEError


def _widths(text: str) -> tuple[int, ...]:
    """``"16,32,96,256"`` -> ``(16, 32, 96, 256)``."""
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None


def _cmd_train(args: argparse.Namespace) -> int:
    from instructme.training.classifier import format_classifier_report, train_classifier

    check_training_arguments(args)
    try:
        metrics = train_classifier(args.data, args.out, preset=args.preset, steps=args.steps,
                                   resume=args.resume, seed=args.seed, init=args.init,
                                   lr=args.lr, channels=args.channels,
                                   embed_dim=args.embed_dim)
    except ValueError as e:
        raise InstructMEError(str(e)) from None
    if metrics:
        print("validation (held-out songs, random stem-subset mixes):")
        print(format_classifier_report(metrics))
    print(f"wrote {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from instructme.checkpoint import load_model
    from instructme.models.classifier import InstrumentClassifier
    from instructme.training.classifier import (
        calibrate_thresholds,
        evaluate_classifier,
        format_classifier_report,
        heldout_set,
    )

    if args.items < 1:
        raise InstructMEError("--items must be at least 1")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InstructMEError("--threshold must be between 0 and 1")
    if args.calibrate and args.split == "val":
        raise InstructMEError("--calibrate fits thresholds on the val split: evaluate on "
                              "another --split")
    model = load_model(InstrumentClassifier, args.model)
    if args.calibrate:
        import dataclasses

        from instructme.checkpoint import CONFIG_NAME, read_config
        from instructme.fileio import atomic_write_json

        cal = heldout_set(args.data, model.config, "val", args.items, args.seconds,
                          seed=args.seed)
        model.config = dataclasses.replace(model.config,
                                           thresholds=calibrate_thresholds(model, cal))
        cfg = read_config(args.model)
        cfg["thresholds"] = list(model.config.thresholds)
        atomic_write_json(Path(args.model) / CONFIG_NAME, cfg)
        print(f"calibrated per-class thresholds on {args.items} val mixes, written to "
              f"{Path(args.model) / CONFIG_NAME}")
    data = heldout_set(args.data, model.config, args.split, args.items, args.seconds,
                       seed=args.seed)
    metrics = evaluate_classifier(model, data, threshold=args.threshold)
    thr = (f"threshold {args.threshold:g}" if args.threshold is not None else
           "per-class calibrated thresholds" if model.config.thresholds else "threshold 0.5")
    print(f"instrument/style classifier on the {args.split} split of {args.data}: "
          f"{args.items} random stem-subset mixes of {args.seconds:g} s, {thr}")
    print(format_classifier_report(metrics))
    if args.json:
        from instructme.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(metrics, indent=2))
    if args.record:
        from instructme.metrics.judge_record import ACCURACY_NAME, record_accuracy

        record_accuracy(args.model, args.record, args.data, args.split, args.items,
                        args.seconds, metrics)
        print(f"recorded as its {args.record} accuracy in {Path(args.model) / ACCURACY_NAME}")
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser("classifier",
                             help="train the instrument-activity / style classifier")
    add_training_arguments(t)
    t.add_argument("--init", default=None,
                   help="classifier model folder to start from (warm start: its config, "
                        "weights and thresholds; a new optimiser and schedule over --steps)")
    t.add_argument("--lr", type=float, default=None, help="override the preset's peak "
                   "learning rate")
    t.add_argument("--channels", type=_widths, default=None, metavar="C1,C2,...",
                   help="conv block widths instead of the preset's; with --init, that model "
                        "is grown to them without changing what it computes (Net2Wider)")
    t.add_argument("--embed-dim", type=int, default=None,
                   help="embedding width instead of the preset's (grown likewise with --init)")
    t.set_defaults(func=_cmd_train)

    e = eval_sub.add_parser("classifier",
                            help="per-class F1 of the classifier on held-out songs")
    e.add_argument("--model", required=True, help="classifier model folder")
    e.add_argument("--data", required=True, help="dataset folder")
    e.add_argument("--split", choices=["train", "val", "test"], default="test")
    e.add_argument("--items", type=int, default=1000, help="number of held-out mixes")
    e.add_argument("--seconds", type=float, default=4.0, help="mix length")
    e.add_argument("--threshold", type=float, default=None,
                   help="one presence threshold for every class (default: the model's "
                        "calibrated ones, else 0.5)")
    e.add_argument("--calibrate", action="store_true",
                   help="first fit per-class thresholds (best F1) on --items val mixes and "
                        "store them in the model's config.json")
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    e.add_argument("--record", choices=["in-domain", "unseen"], default=None,
                   help="store the result in the model folder's accuracy.json, which every "
                        "'eval edits' report prints beside the IA judge")
    e.set_defaults(func=_cmd_eval)
