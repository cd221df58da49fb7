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


def _methods(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """The rows of ``eval separate``: the separator and its anchors (module table of
    :mod:`instructme.metrics.separation_eval`)."""
    from instructme.metrics import separation_eval as se

    methods = {"separator": se.separator_method(model), "do nothing": se.nothing_method,
               "ideal ratio mask": se.irm_method(model), "HPSS (drums)": se.hpss_method}
    if args.pipeline is not None:
        from instructme.editing.pipeline import load_pipeline

        pipe = load_pipeline(args.pipeline)
        if pipe.sample_rate != model.config.sample_rate:
            raise InstructMEError(f"{args.pipeline}: the pipeline is {pipe.sample_rate} Hz, "
                                  f"the separator {model.config.sample_rate} Hz")
        pipe.separator = None  # the generated path
        methods["generated path"] = se.generated_method(pipe, pipe.sample_rate, args.steps,
                                                        args.seed)
    return methods


def _eval_set(title: str, records: list[Any], methods: dict[str, Any],
              generated_items: int) -> dict[str, Any]:
    """Run the methods on ``records`` (the generated path on the first ``generated_items``
    only) and print the table."""
    from instructme.metrics import separation_eval as se

    report = se.evaluate(records, {k: v for k, v in methods.items() if k != "generated path"},
                         progress=lambda name: print(f"  {name} ...", flush=True))
    if "generated path" in methods and generated_items > 0:
        sub = records[:generated_items]
        gen = se.evaluate(sub, {name: methods[name] for name in ("separator", "do nothing",
                                                                  "generated path")},
                          progress=lambda name: print(f"  {name} ({len(sub)} records) ...",
                                                      flush=True))
        for name, row in gen["rows"].items():  # the three on the same (first) records
            report["rows"][f"{name} [first {len(sub)}]"] = row
    print(se.format_table(report, title))
    return report


def _cmd_eval(args: argparse.Namespace) -> int:
    from instructme.checkpoint import load_model
    from instructme.dataset.packaged_audio import packaged_multitrack
    from instructme.fileio import atomic_write_text
    from instructme.metrics import separation_eval as se
    from instructme.models.separator import Separator
    from instructme.training.separator import heldout_set

    if args.items < 1 or args.seconds <= 0 or args.generated < 0:
        raise InstructMEError("--items must be at least 1, --seconds positive and "
                              "--generated not negative")
    if args.data is None and not args.musdb:
        raise InstructMEError("nothing to evaluate: give --data DIR and/or --musdb")
    model = load_model(Separator, args.model).eval()
    methods = _methods(args, model)
    classes = model.config.instruments
    out: dict[str, Any] = {}
    if args.data is not None:
        crops = heldout_set(args.data, model.config, args.split, args.items, args.seconds,
                            seed=args.seed)
        title = (f"{args.split} split of {args.data}: {args.items} mixes of "
                 f"{args.seconds:g} s")
        records = se.crop_records(crops, classes)
        out["data"] = _eval_set(title, records, methods, args.generated)
        absent = se.absent_records(heldout_set(args.data, model.config, args.split,
                                               args.items, args.seconds, seed=args.seed + 1,
                                               absent_prob=1.0), classes)
        out["data"]["presence"] = se.presence(model, records, absent)
        print(se.format_presence(out["data"]["presence"]))
    if args.musdb:
        records = se.musdb_records(packaged_multitrack(model.config.sample_rate), classes)
        if not records:
            raise InstructMEError("--musdb: stempeg is not installed (pip install stempeg)")
        out["musdb"] = _eval_set("stempeg's MUSDB18 excerpt (a real band recording)",
                                 records, methods, args.generated)
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser("separator",
                             help="train the instruction-conditioned stem separator")
    add_training_arguments(t)
    t.set_defaults(func=_cmd_train)

    e = eval_sub.add_parser("separate", help="SI-SDR and SDR of extract / remove beside "
                            "anchors, on held-out songs and a real band recording")
    e.add_argument("--model", required=True, help="separator model folder")
    e.add_argument("--data", default=None, help="dataset folder (e.g. a 'data render-eval' "
                   "folder for timbres never trained on)")
    e.add_argument("--musdb", action="store_true",
                   help="also stempeg's MUSDB18 excerpt (drums, bass, vocals)")
    e.add_argument("--pipeline", default=None, metavar="DIR",
                   help="also a row for this pipeline's generated path (slow)")
    e.add_argument("--generated", type=int, default=16, metavar="N",
                   help="records the generated path edits (default 16)")
    e.add_argument("--steps", type=int, default=None,
                   help="sampler steps of the generated path (default: the pipeline's)")
    e.add_argument("--split", choices=["train", "val", "test"], default="test")
    e.add_argument("--items", type=int, default=256, help="number of held-out mixes")
    e.add_argument("--seconds", type=float, default=4.0, help="mix length")
    e.add_argument("--seed", type=int, default=4321)
    e.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    e.set_defaults(func=_cmd_eval)
