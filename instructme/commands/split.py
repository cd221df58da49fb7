"""``instructme split IN --out DIR``: one file per instrument class that sounds, plus
``other.wav``, at the input's rate and channels; the files sum back to the input.

The stems are written into a hidden folder beside ``DIR`` and moved into place at the end,
so an interrupted split leaves nothing half-written under ``DIR``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from instructme.errors import InstructMEError


def _instruments(text: str | None) -> list[str] | None:
    """``"bass,drums"`` -> the vocabulary's classes (synonyms allowed), or a one-line error."""
    if text is None:
        return None
    from instructme.vocab import INSTRUMENT_CLASSES, resolve_instrument

    names = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        cls = resolve_instrument(word)
        if cls is None:
            raise InstructMEError(f"--instruments: unknown instrument {word!r} (known: "
                                  f"{', '.join(INSTRUMENT_CLASSES)})")
        names.append(cls)
    if not names:
        raise InstructMEError("--instruments: name at least one instrument")
    return names


def _cmd_split(args: argparse.Namespace) -> int:
    from instructme.audio import load, save
    from instructme.editing.pipeline import load_pipeline

    instruments = _instruments(args.instruments)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InstructMEError(f"{out}: exists and is not an empty folder (nothing was written)")
    x, sr = load(args.input, sample_rate=None, mono=False)  # [C, N]
    pipe = load_pipeline(args.model, args.device)
    stems = pipe.split(x, sr, instruments)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, stem in stems.items():
            save(tmp / f"{name}.wav", stem, sr, subtype="FLOAT")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    present = [n for n in stems if n != "other"]
    if instruments:
        for name in instruments:
            if name not in stems:
                print(f"note: no {name} found in {args.input}")
    print(f"wrote {out}: {', '.join(present) or 'no instrument found'} + other "
          f"({x.shape[0]} channel(s), {sr} Hz; the files sum to the input)")
    return 0


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="split a piece into one file per instrument (+ other)")
    p.add_argument("input", help="audio file (wav, flac, ogg, ...)")
    p.add_argument("--out", required=True, help="folder to write (new or empty)")
    p.add_argument("--instruments", default=None, metavar="A,B,...",
                   help="only these classes (default: every class that sounds)")
    p.add_argument("--model", help="pipeline folder with a separator/ (default: "
                   "$INSTRUCTME_MODEL or the shipped one)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=_cmd_split)
