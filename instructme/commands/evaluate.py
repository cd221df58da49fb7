"""``instructme eval generate`` (edit a manifest's sources with a pipeline) and ``instructme
eval edits`` (score a folder of edits: FAD, IA, CRA, PCH, IOI per task)."""

from __future__ import annotations

import argparse
from pathlib import Path

from instructme.config import shipped_model_dir
from instructme.errors import InstructMEError

#: The judge ``eval edits`` uses when no ``--classifier`` is given (the best shipped one).
DEFAULT_CLASSIFIER = "classifier-diverse"


def default_classifier_dir() -> Path:
    """The shipped ``models/classifier-diverse`` of the repository."""
    return shipped_model_dir(DEFAULT_CLASSIFIER)


def _classifier_arg(value: str | None) -> str | None:
    """``--classifier``: None -> the shipped judge, ``none`` -> no IA / classifier FAD."""
    if value is not None:
        return None if value.lower() == "none" else value
    path = default_classifier_dir()
    if not (path / "config.json").is_file():
        raise InstructMEError(f"no classifier at {path}: pass --classifier DIR (a classifier "
                              "model folder) or --classifier none (no IA)")
    try:  # reports name it as the user would type it from the checkout
        path = path.relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return str(path)


def _tasks_arg(value: str | None) -> list[str] | None:
    if value is None:
        return None
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    if not tasks:
        raise InstructMEError("--tasks: give at least one task (e.g. remove,extract)")
    return tasks


def _cmd_edits(args: argparse.Namespace) -> int:
    from instructme.metrics.report import build_analyzers, evaluate_edits

    if args.limit is not None and args.limit < 1:
        raise InstructMEError("--limit must be at least 1")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise InstructMEError("--threshold must be between 0 and 1")
    if args.examples < 0:
        raise InstructMEError("--examples must be >= 0")
    if not Path(args.manifest).is_file():
        raise InstructMEError(f"{args.manifest}: manifest not found")
    if not Path(args.outputs).is_dir():
        raise InstructMEError(f"{args.outputs}: outputs folder not found")
    embeddings = None
    if args.embeddings is not None:
        embeddings = [e.strip() for e in args.embeddings.split(",") if e.strip()]
        if not embeddings:
            raise InstructMEError("--embeddings: give at least one name")
    analyzers = build_analyzers(chord_model=args.chord_model,
                                classifier_dir=_classifier_arg(args.classifier),
                                embeddings=embeddings, threshold=args.threshold)
    report = evaluate_edits(args.manifest, args.outputs, args.out, data_dir=args.data,
                            analyzers=analyzers, seed=args.seed, limit=args.limit,
                            n_examples=args.examples, progress=not args.quiet,
                            tasks=_tasks_arg(args.tasks))
    out = Path(args.out)
    print((out / "report.md").read_text(), end="")
    print(f"wrote {out / 'report.md'}, {out / 'report.json'} and "
          f"{len(report['files']['plots'])} plots")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from instructme.commands.edit import edit_settings
    from instructme.editing.pipeline import load_pipeline
    from instructme.metrics.edit_manifest import generate_edits

    settings = edit_settings(args, seed=args.seed)
    if args.limit is not None and args.limit < 1:
        raise InstructMEError("--limit must be at least 1")
    if not Path(args.manifest).is_file():
        raise InstructMEError(f"{args.manifest}: manifest not found")
    if args.threads is not None:
        if args.threads < 1:
            raise InstructMEError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, args.device)
    if args.no_separator:
        pipe.separator = None  # remove / extract take the generated path
    model_name = str(Path(args.model).resolve()) if args.model else "default"
    res = generate_edits(pipe, args.manifest, args.out, settings, data_dir=args.data,
                         limit=args.limit, model_name=model_name, progress=not args.quiet,
                         tasks=_tasks_arg(args.tasks))
    rtf = res["wall"] / res["seconds"] if res["seconds"] else float("nan")
    print(f"wrote {res['edited']} edits to {args.out} ({res['skipped']} already there) of "
          f"{res['records']} records; {res['seconds']:.0f} s of audio in {res['wall']:.0f} s "
          f"(real-time factor {rtf:.2f})")
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    from instructme.commands.edit import add_settings_options

    e = eval_sub.add_parser(
        "edits", help="score edited outputs against dataset targets (FAD, IA, CRA, PCH, IOI)",
        description="Score OUTPUTS/<triplet id>.wav (one per manifest record) against the "
                    "dataset's targets, with anchors (target itself, do-nothing source, random "
                    "clip). Writes report.md, report.json, per_clip.jsonl and PNG plots.")
    e.add_argument("--manifest", required=True, help="triplet manifest (JSONL)")
    e.add_argument("--outputs", required=True, help="folder with one <id>.wav per record")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--data", default=None,
                   help="dataset folder (default: the folder above the manifest's folder)")
    e.add_argument("--chord-model", default=None,
                   help="chord recognizer folder, 'madmom' (pretrained, eval extra) or 'none' "
                        "(default: madmom when installed)")
    e.add_argument("--classifier", default=None,
                   help="instrument/style classifier folder for IA and the 'classifier' FAD "
                        f"embedding, or 'none' (default: the shipped models/{DEFAULT_CLASSIFIER})")
    e.add_argument("--embeddings", default=None,
                   help="comma-separated FAD embeddings: logmel-stats, madmom-cnn-chord, "
                        "classifier (default: all available)")
    e.add_argument("--threshold", type=float, default=None,
                   help="one instrument presence threshold for IA (default: the classifier's "
                        "calibrated per-class thresholds, else 0.5)")
    e.add_argument("--limit", type=int, default=None, help="score a seeded sample of N records")
    e.add_argument("--tasks", help="only these tasks, comma-separated (e.g. remove,extract)")
    e.add_argument("--examples", type=int, default=4, help="spectrogram triples to plot")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_edits)

    g = eval_sub.add_parser(
        "generate", help="edit the source of every manifest record with a pipeline (for "
                         "'eval edits')",
        description="Write OUT/<triplet id>.wav: each record's source window edited with its "
                    "instruction (multi-round records run every round). Resumes an "
                    "interrupted run; refuses a folder made with other settings.")
    g.add_argument("--manifest", required=True, help="triplet manifest (JSONL)")
    g.add_argument("--out", required=True, help="folder for the edited clips")
    g.add_argument("--model", help="pipeline folder (default: $INSTRUCTME_MODEL or the "
                                   "shipped models/instructme-small)")
    g.add_argument("--data", default=None,
                   help="dataset folder (default: the folder above the manifest's folder)")
    g.add_argument("--limit", type=int, default=None,
                   help="edit the seeded sample of N records that 'eval edits --limit N' scores")
    g.add_argument("--tasks", help="only these tasks, comma-separated (as 'eval edits --tasks')")
    g.add_argument("--no-separator", action="store_true",
                   help="remove / extract / replace without the pipeline's stem separator (the "
                        "generated path, for comparison)")
    add_settings_options(g)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    g.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)
