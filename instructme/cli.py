"""The ``instructme`` command: data, train, eval, chords, edit, serve.

Each subcommand parses its options here and calls into the module that does the work
(imported lazily, so ``instructme --help`` is fast). User errors
(:class:`~instructme.errors.InstructMEError`) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from instructme import __version__
from instructme.errors import InstructMEError


def _cmd_data_build(args: argparse.Namespace) -> int:
    from instructme.dataset.build import build_dataset

    build_dataset(args.out, preset=args.preset, workers=args.workers, seed=args.seed,
                  quiet=args.quiet, stems=args.from_stems, layout=args.layout)
    return 0


def _cmd_data_render_eval(args: argparse.Namespace) -> int:
    from instructme.dataset.render_eval import render_eval_set

    info = render_eval_set(args.data, args.out, args.soundfont, tuple(args.splits),
                           workers=args.workers, quiet=args.quiet)
    print(f"wrote {args.out}: {info['songs']} songs of {', '.join(args.splits)} rendered with "
          f"{info['render_eval']['soundfont']}")
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from instructme.dataset.stats import dataset_stats, format_stats

    stats = dataset_stats(args.dir)
    print(format_stats(stats))
    return 0


def _cmd_data_import_audio(args: argparse.Namespace) -> int:
    from instructme.dataset.audio_folder import import_audio_folder

    listing = import_audio_folder(args.sources, args.out, quiet=args.quiet)
    files = listing["files"]
    hours = {s: sum(f["seconds"] for f in files if f["split"] == s) / 3600
             for s in ("train", "val")}
    print(f"imported {len(files)} files into {args.out}: train {hours['train']:.2f} h, "
          f"val {hours['val']:.2f} h; skipped {len(listing['skipped'])}")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build and inspect multitrack training data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    b = dsub.add_parser("build", help="render stems and cut (source, instruction, target) triplets")
    b.add_argument("--preset", choices=["tiny", "small", "diverse", "full"], default="small",
                   help="diverse: small's songs, three soundfonts, per-stem processing")
    b.add_argument("--out", required=True, help="dataset folder (resumable)")
    b.add_argument("--workers", type=int, default=None, help="render processes (default: cores)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--from-stems", metavar="DIR", default=None,
                   help="import your own multitrack folder instead of rendering music")
    b.add_argument("--layout", choices=["auto", "slakh", "musdb", "folder"], default="auto",
                   help="layout of --from-stems (default: detected)")
    b.set_defaults(func=_cmd_data_build)

    a = dsub.add_parser("import-audio",
                        help="decode folders of recorded music for VAE training "
                             "(train vae --extra-audio)")
    a.add_argument("sources", nargs="+", help="audio files or folders (searched recursively)")
    a.add_argument("--out", required=True, help="folder to write (resumable)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=_cmd_data_import_audio)

    r = dsub.add_parser("render-eval",
                        help="re-render a dataset's test split with a soundfont never trained "
                             "on (unseen-timbre evaluation set)")
    r.add_argument("data", help="dataset folder written by 'data build'")
    r.add_argument("--soundfont", required=True,
                   help="registry name (timgm6mb, opl3, ...) or .sf2/.sf3 path")
    r.add_argument("--out", required=True, help="evaluation dataset folder (resumable)")
    r.add_argument("--splits", nargs="+", default=["test"], choices=["train", "val", "test"])
    r.add_argument("--workers", type=int, default=None, help="render processes (default: cores)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_data_render_eval)

    s = dsub.add_parser("stats", help="hours per task, instrument, style and split")
    s.add_argument("dir", help="dataset folder written by 'data build'")
    s.set_defaults(func=_cmd_data_stats)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructme",
        description="Instruction-guided music editing with latent diffusion (InstructME).",
    )
    parser.add_argument("--version", action="version", version=f"instructme {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    # train / eval subcommand groups: each trainer and evaluator registers itself below.
    train = sub.add_parser("train", help="train a model (vae, chord, classifier, separator, "
                                         "editor)")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    evaluate = sub.add_parser("eval", help="evaluate a model or a set of edits")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    _register_models(sub, train_sub, eval_sub)
    return parser


def _register_models(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                     eval_sub: argparse._SubParsersAction) -> None:
    """Subcommands contributed by the model packages (each adds its own parsers)."""
    import importlib

    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # not written yet
                continue
            raise
        module.add_commands(sub, train_sub, eval_sub)


#: Modules exposing ``add_commands(sub, train_sub, eval_sub)`` (light imports only).
_COMMAND_MODULES: tuple[str, ...] = (
    "instructme.commands.vae",
    "instructme.commands.chord",
    "instructme.commands.classifier",
    "instructme.commands.separator",
    "instructme.commands.split",
    "instructme.commands.editor",
    "instructme.commands.evaluate",
    "instructme.commands.edit",
    "instructme.commands.serve",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InstructMEError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
