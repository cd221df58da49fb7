"""``instructme edit IN "add a piano" -o OUT.wav`` and ``instructme pipeline`` (assemble a
pipeline folder from trained models).

Edits run through :class:`instructme.editing.pipeline.EditPipeline`; ``--then`` chains more rounds
(each output is the next source), ``--keep-intermediate`` also writes ``OUT.round1.wav``,
... for every round but the last (whose output is ``OUT``). Every user error (bad audio,
unknown instruction, missing model, output = input) is one ``error:`` line, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from instructme.errors import InstructMEError


def intermediate_path(out: Path, k: int) -> Path:
    """``OUT.round{k}.wav`` (same folder and suffix as ``out``)."""
    return out.with_name(f"{out.stem}.round{k}{out.suffix}")


def _check_request(args: argparse.Namespace, out: Path, texts: list[str]) -> list[Any]:
    """Check the instructions and every output path (format, not the input, writable) before
    anything is loaded (one-line errors); returns the planned rounds."""
    from instructme.editing.pipeline import check_output_path, plan_rounds

    check_output_path(args.input, out)
    rounds = plan_rounds(texts)  # unknown instructions fail before anything is loaded
    destinations = [out]
    if args.keep_intermediate:
        for k in range(1, len(rounds)):
            check_output_path(args.input, intermediate_path(out, k))
            destinations.append(intermediate_path(out, k))
    if args.part is not None:
        if rounds[-1].task == "remix":
            raise InstructMEError("--part: a remix has no separate part (add, remove, extract "
                                  "and replace have)")
        check_output_path(args.input, args.part)
        if Path(args.part).resolve() == out.resolve():
            raise InstructMEError(f"{args.part}: --part must differ from the output file")
        destinations.append(Path(args.part))
    if args.spectrogram is not None:
        png = Path(args.spectrogram)
        if png.suffix.lower() != ".png" or png.is_dir():
            raise InstructMEError(f"{png}: --spectrogram must be a .png file name")
        if png.resolve() in (Path(args.input).resolve(), out.resolve()):
            raise InstructMEError(f"{png}: --spectrogram would overwrite an audio file")
        destinations.append(png)
    _check_writable(destinations)
    return rounds


def _check_writable(paths: list[Path]) -> None:
    """Every destination can be written (before minutes of editing are spent on it)."""
    from instructme.fileio import writable_problem

    for path in paths:
        problem = writable_problem(path)
        if problem is not None:
            raise InstructMEError(f"{path}: cannot write the output here ({problem})")


def _cmd_edit(args: argparse.Namespace) -> int:
    from instructme.audio import load, save_all
    from instructme.editing.pipeline import load_pipeline
    from instructme.editing.user_audio import check

    settings = edit_settings(args, seed=args.seed)
    out = Path(args.output)
    texts = [args.instruction, *args.then]
    rounds = _check_request(args, out, texts)
    if args.threads is not None:
        if args.threads < 1:
            raise InstructMEError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    x, sr = load(args.input, sample_rate=None, mono=False)  # [C, N]
    check(x, sr)  # silence, length: before the model is loaded
    seconds = x.shape[-1] / sr
    t0 = time.perf_counter()
    pipe = load_pipeline(args.model, args.device)
    if args.no_separator:
        pipe.separator = None  # remove / extract take the generated path
    load_s = time.perf_counter() - t0
    settings = pipe.resolve_settings(settings)  # the model's defaults for what is not given
    if args.part is not None and not settings.preserve:
        raise InstructMEError("--part needs source-preserving output (drop --no-preserve)")

    bar: Any = None
    steps = int(settings.steps or 0)
    sampling = [k for k, rd in enumerate(rounds) if pipe.samples(rd)]  # separated: no bar
    if not args.quiet and sampling and steps:
        from tqdm import tqdm

        bar = tqdm(total=steps * len(sampling), unit="step", file=sys.stderr,
                   dynamic_ncols=True, leave=False)

    def progress(done: int, total: int) -> None:
        if bar is None:
            return
        k = sampling[min(len(sampling), (done - 1) // steps + 1) - 1]
        if bar.total != total:
            bar.reset(total=total)
        bar.set_description(f"round {k + 1}/{len(rounds)}: {rounds[k].text}"
                            if len(rounds) > 1 else rounds[0].text, refresh=False)
        bar.update(done - bar.n)

    t1 = time.perf_counter()
    try:
        results = pipe.edit_chain(x, sr, texts, settings, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    edit_s = time.perf_counter() - t1
    outputs = [(intermediate_path(out, k), r.audio) for k, r in enumerate(results[:-1], start=1)
               if args.keep_intermediate] + [(out, results[-1].audio)]
    if args.part is not None and results[-1].part is not None:
        outputs.append((Path(args.part), results[-1].part))
    save_all(outputs, sr)  # all or none; a failure leaves every old file as it was
    if args.spectrogram is not None:
        _write_spectrogram(Path(args.spectrogram), x, sr, results, Path(args.input).name)
    for k, r in enumerate(results, start=1):
        for note in r.notes:  # a notice, not an error: the edit was written
            print(f"note: {note}" + (f" (round {k})" if len(results) > 1 else ""))
    if not args.quiet:
        n_mid = len(results) - 1 if args.keep_intermediate else 0
        extra = f" (+ {n_mid} intermediate)" if n_mid else ""
        if args.part is not None and results[-1].part is not None:
            extra += f" and the edited part to {args.part}"
        print(f"wrote {out}{extra}: {len(results)} edit(s) of {seconds:.1f} s of audio in "
              f"{edit_s:.1f} s, real-time factor {edit_s / seconds:.2f} "
              f"(model loaded in {load_s:.1f} s)")
    return 0


def _write_spectrogram(path: Path, x: Any, sr: int, results: list[Any], name: str) -> None:
    """Before/after spectrograms (mono downmix of ``x: [C, N]``), one panel per round."""
    import numpy as np

    from instructme.fileio import atomic_path
    from instructme.web.spectrogram import render_comparison_png

    def mono(a: Any) -> Any:
        a = np.asarray(a, dtype=np.float32)
        return a if a.ndim == 1 else a.mean(axis=0)

    panels = [(f"before: {name}", mono(x))]
    many = len(results) > 1
    panels += [(f"after{f' round {k}' if many else ''}: \"{r.instruction}\"", mono(r.audio))
               for k, r in enumerate(results, start=1)]
    try:
        with atomic_path(path) as tmp:
            render_comparison_png(panels, sr, tmp)
    except OSError as e:
        raise InstructMEError(f"{path}: could not write ({e.strerror or e})") from None


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from instructme.checkpoint import load_model
    from instructme.editing.folder import write_pipeline_folder
    from instructme.models.chord import ChordRecognizer
    from instructme.models.unet import EditorUNet
    from instructme.models.vae import AudioVAE

    defaults = edit_settings(args)
    editor = load_model(EditorUNet, args.editor)
    chord = load_model(ChordRecognizer, args.chord) if args.chord else None
    vae = load_model(AudioVAE, args.vae)
    separator = None
    if args.separator:
        from instructme.models.separator import Separator

        separator = load_model(Separator, args.separator)
        if int(separator.config.sample_rate) != int(vae.config.sample_rate):
            raise InstructMEError(f"{args.separator}: the separator is "
                                  f"{separator.config.sample_rate} Hz, the VAE "
                                  f"{vae.config.sample_rate} Hz")
    import torch

    write_pipeline_folder(args.out, vae, chord, editor, editor.config.text_encoder_config(),
                          defaults, editor_dtype=torch.float16 if args.fp16 else None,
                          separator=separator)
    print(f"wrote {args.out}")
    return 0


def edit_settings(args: argparse.Namespace, seed: int = 0) -> Any:
    """The :class:`~instructme.editing.settings.EditSettings` of the options (unset: the
    model's), checked: a bad value is a one-line error naming its option."""
    from instructme.editing.settings import EditSettings

    return EditSettings(steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                        seed=seed, preserve=args.preserve).validate("--{}")


def add_settings_options(p: argparse.ArgumentParser, folder: bool = False) -> None:
    """``--steps``, ``--guidance``, ``--sampler`` (the registry's names) and
    ``--preserve``; ``folder``: as the defaults a pipeline folder records."""
    from instructme.editing.folder import DEFAULTS
    from instructme.samplers import SAMPLERS

    names = ", ".join(f"{s.name}: {s.summary}" for s in SAMPLERS.values())
    if folder:
        p.add_argument("--steps", type=int, help=f"default sampler steps ({DEFAULTS.steps})")
        p.add_argument("--guidance", type=float,
                       help=f"default guidance scale ({DEFAULTS.guidance:g})")
        p.add_argument("--sampler", choices=list(SAMPLERS),
                       help=f"default sampler ({DEFAULTS.sampler}; {names})")
        p.add_argument("--preserve", action=argparse.BooleanOptionalAction, default=None,
                       help="default output mode: source-preserving "
                            f"({'on' if DEFAULTS.preserve else 'off'}) or the generated mix")
        return
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float,
                   help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--sampler", choices=list(SAMPLERS),
                   help=f"sampler (default: the model's; {names})")
    p.add_argument("--preserve", action=argparse.BooleanOptionalAction, default=None,
                   help="source-preserving output for add/remove/replace: the generated mix "
                        "only guides gains on your audio and adds the new part, so what is not "
                        "edited keeps its quality, rate and stereo image, at the price of a "
                        "less decisive edit (default: the model's; extract and remix always "
                        "return the generated mix)")


def add_commands(sub: argparse._SubParsersAction, train_sub: argparse._SubParsersAction,
                 eval_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit", help="edit a music file by instruction ('add a piano', 'remove the drums')",
        description="Edit audio with a text instruction: add X, remove X, extract X, replace X "
                    "with Y, remix (as a style). Any length, rate and channel count; the "
                    "output keeps them (stereo is edited as its mono downmix, on every "
                    "channel).")
    p.add_argument("input", help="audio file (wav, flac, ogg, ...)")
    p.add_argument("instruction", help="what to do, e.g. \"add a piano\"")
    p.add_argument("-o", "--output", required=True, help="output file (.wav, .flac or .ogg)")
    p.add_argument("--model", help="pipeline folder (default: $INSTRUCTME_MODEL or the "
                                   "shipped models/instructme-small)")
    add_settings_options(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--then", action="append", default=[], metavar="INSTRUCTION",
                   help="another edit applied to the result (repeatable)")
    p.add_argument("--keep-intermediate", action="store_true",
                   help="also write OUT.round1.wav, ... for every round but the last")
    p.add_argument("--part", metavar="FILE",
                   help="also write the edited part alone (the added, removed or extracted "
                        "instrument; the new one of a replace) here")
    p.add_argument("--spectrogram", metavar="PNG",
                   help="also write before/after spectrograms (one panel per round) here")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int,
                   help="CPU threads (default: torch's; use 1 when other jobs keep the cores "
                        "busy)")
    p.add_argument("--no-separator", action="store_true",
                   help="remove / extract by generating the edited mix even when the pipeline "
                        "has a stem separator (for comparison)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_edit)

    a = sub.add_parser("pipeline", help="assemble an edit pipeline folder from trained models",
                       description="Check that a VAE, chord recognizer and editor fit "
                                   "together and write them as one pipeline folder for "
                                   "'instructme edit --model'.")
    a.add_argument("--vae", required=True, help="VAE model folder")
    a.add_argument("--chord", help="chord recognizer folder (needed by chord-conditioned "
                                   "editors)")
    a.add_argument("--editor", required=True, help="editor model folder")
    a.add_argument("--separator", help="stem separator folder (answers remove / extract)")
    a.add_argument("-o", "--out", required=True, help="pipeline folder to write")
    add_settings_options(a, folder=True)
    a.add_argument("--fp16", action="store_true",
                   help="store the editor's weights in float16 (half the size; they are "
                        "loaded back as float32)")
    a.set_defaults(func=_cmd_pipeline)
