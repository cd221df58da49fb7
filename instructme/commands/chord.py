"""``instructme train chord``, ``instructme chords FILE`` and ``instructme eval chord``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from instructme.commands import add_training_arguments, check_training_arguments
from instructme.config import shipped_model_dir
from instructme.errors import InstructMEError

#: Environment variable naming the default chord model folder for ``instructme chords``.
MODEL_ENV = "INSTRUCTME_CHORD_MODEL"
#: The chord recognizer committed with the project (used when neither is given).
SHIPPED_MODEL = shipped_model_dir("chord-small")


def _cmd_train(args: argparse.Namespace) -> int:
    from instructme.training.chord import train_chord

    check_training_arguments(args)
    try:
        metrics = train_chord(args.data, args.out, preset=args.preset, steps=args.steps,
                              resume=args.resume, seed=args.seed,
                              vocabulary=args.vocabulary)
    except ValueError as e:
        raise InstructMEError(str(e)) from None
    print(f"wrote {args.out}" + (f" (val WCSR majmin {metrics['majmin']:.3f}, sevenths "
                                 f"{metrics['sevenths']:.3f})" if metrics else ""))
    return 0


def _load_recognizer(spec: str | None) -> Any:
    """A model folder, or ``madmom`` for the pretrained anchor."""
    spec = spec or os.environ.get(MODEL_ENV)
    if not spec and SHIPPED_MODEL.is_dir():
        spec = str(SHIPPED_MODEL)
    if not spec:
        raise InstructMEError(f"no chord model: pass --model DIR (or set {MODEL_ENV})")
    if spec == "madmom":
        from instructme.metrics.madmom_models import MadmomChordModel

        return MadmomChordModel()
    from instructme.checkpoint import load_model
    from instructme.models.chord import ChordRecognizer

    return load_model(ChordRecognizer, spec)


def _cmd_chords(args: argparse.Namespace) -> int:
    from instructme.audio import load

    model = _load_recognizer(args.model)
    x, sr = load(args.file, sample_rate=None, mono=True)
    for start, end, label in model.transcribe(x, sr):
        print(f"{start:.2f}  {end:.2f}  {label}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from instructme.checkpoint import load_model
    from instructme.errors import DependencyError
    from instructme.models.chord import ChordRecognizer
    from instructme.training.chord import evaluate_transcriber
    from instructme.training.stem_mixes import load_songs

    if args.max_songs is not None and args.max_songs < 1:
        raise InstructMEError("--max-songs must be at least 1")
    model = load_model(ChordRecognizer, args.model)
    songs = load_songs(args.data, (args.split,), max_songs=args.max_songs)
    rows: list[tuple[str, dict[str, Any] | str]] = [
        (f"instructme ({args.model})", evaluate_transcriber(model.transcribe, songs))]
    if not args.no_anchor:
        name = "madmom CNN+CRF (pretrained anchor)"
        try:
            from instructme.metrics.madmom_models import MadmomChordModel

            anchor = MadmomChordModel()
        except (ImportError, DependencyError):
            rows.append((name, "not installed (pip install 'instructme[eval]')"))
        else:
            rows.append((name, evaluate_transcriber(anchor.transcribe, songs)))
    print(f"chord recognition on the {args.split} split of {args.data}: mir_eval.chord, "
          "duration-weighted over all songs (WCSR)")
    print(f"{'model':<44} {'songs':>5} {'hours':>6} {'root':>6} {'majmin':>6} "
          f"{'sevenths':>8}")
    for label, r in rows:
        if isinstance(r, str):
            print(f"{label:<44} {r}")
        else:
            print(f"{label:<44} {r['songs']:5d} {r['seconds'] / 3600:6.2f} {r['root']:6.3f} "
                  f"{r['majmin']:6.3f} {r['sevenths']:8.3f}")
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser("chord", help="train the chord recognizer on a dataset folder")
    add_training_arguments(t)
    t.add_argument("--vocabulary", choices=["majmin", "sevenths"], default="majmin",
                   help="majmin: 12 roots x maj/min + N (the editor's default); sevenths: "
                        "adds maj7/min7/7 (MIREX sevenths); a resumed run keeps its own")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("chords", help="print the chords of an audio file",
                       description="Print 'start  end  label' lines (seconds, mir_eval labels).")
    c.add_argument("file", help="audio file")
    c.add_argument("--model", default=None,
                   help=f"chord model folder, or 'madmom' (default: ${MODEL_ENV})")
    c.set_defaults(func=_cmd_chords)

    e = eval_sub.add_parser("chord", help="score a chord model on held-out songs (mir_eval)")
    e.add_argument("--model", required=True, help="chord model folder")
    e.add_argument("--data", required=True, help="dataset folder")
    e.add_argument("--split", choices=["train", "val", "test"], default="test")
    e.add_argument("--max-songs", type=int, default=None, help="first N songs of the split")
    e.add_argument("--no-anchor", action="store_true", help="skip the madmom anchor row")
    e.set_defaults(func=_cmd_eval)
