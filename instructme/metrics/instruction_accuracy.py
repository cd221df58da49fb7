"""Instruction accuracy (IA): did the edit do what the instruction asked?

InstructME (arXiv 2308.14360, Sec. 5) measures text relevance with classifiers run on the
edited music. Here an instrument-activity classifier (multi-label over
:data:`~instructme.vocab.INSTRUMENT_CLASSES`) and a style classifier judge each
edit from the class probabilities of the SOURCE and of the OUTPUT. With "present" meaning
``prob >= threshold``:

=========  ===================================================================
task       obeyed when
=========  ===================================================================
add X      X absent in the source and present in the output
remove X   X absent in the output
extract X  X present in the output and every other class absent
replace    X absent in the output and Y present (args: instrument=X,
           new_instrument=Y)
remix S    the output's most probable style is S
multi      every round's requirement on the FINAL output (later rounds win when
           they contradict earlier ones); an ``add`` round's "absent in source"
           refers to the original source
=========  ===================================================================

IA of a set of edits is the fraction obeyed. :func:`judge` is a pure function of
``(task, args, source, output, threshold)``; :func:`classifier_probs` runs a classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instructme.errors import InstructionError, InstructMEError
from instructme.vocab import INSTRUMENT_CLASSES, TASKS

DEFAULT_THRESHOLD = 0.5


@dataclass
class Probs:
    """Classifier output for one clip: ``instruments: [K]`` probs, ``style: [S]`` or None."""

    instruments: np.ndarray
    style: np.ndarray | None = None


@dataclass
class Requirements:
    """What the output must satisfy: classes present / absent, an exact class set, a style."""

    present: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)
    absent_in_source: set[str] = field(default_factory=set)
    only: set[str] | None = None
    style: str | None = None


@dataclass
class Judgement:
    obeyed: bool
    reason: str


def requirements(task: str, args: Mapping[str, Any],
                 rounds: Sequence[Mapping[str, Any]] | None = None) -> Requirements:
    """Translate ``(task, args)`` (or the rounds of a multi-round edit) into requirements."""
    if task == "multiround":
        if not rounds:
            raise InstructionError("multiround edit without rounds")
        req = Requirements()
        for i, r in enumerate(rounds):
            sub = r.get("task")
            if sub == "multiround":
                raise InstructionError("a multiround edit cannot contain multiround rounds")
            _apply(req, str(sub), r.get("args") or {}, first=(i == 0))
        return req
    req = Requirements()
    _apply(req, task, args, first=True)
    return req


def _apply(req: Requirements, task: str, args: Mapping[str, Any], first: bool) -> None:
    if task == "add":
        x = _instrument(args, "instrument")
        req.present.add(x)
        req.absent.discard(x)
        if first:
            req.absent_in_source.add(x)
        if req.only is not None:
            req.only.add(x)
    elif task == "remove":
        x = _instrument(args, "instrument")
        req.absent.add(x)
        req.present.discard(x)
        if req.only is not None:
            req.only.discard(x)
    elif task == "extract":
        x = _instrument(args, "instrument")
        req.only = {x}
        req.present = {x}
        req.absent = set()
    elif task == "replace":
        x = _instrument(args, "instrument")
        y = _instrument(args, "new_instrument")
        req.absent.add(x)
        req.present.discard(x)
        req.present.add(y)
        req.absent.discard(y)
        if req.only is not None:
            req.only.discard(x)
            req.only.add(y)
    elif task == "remix":
        style = args.get("style")
        if not isinstance(style, str) or not style:
            raise InstructionError("remix edit without a target style in args")
        req.style = style
    else:
        raise InstructionError(f"unknown task {task!r} (known: {', '.join(TASKS)})")


def _instrument(args: Mapping[str, Any], key: str) -> str:
    name = args.get(key)
    if name not in INSTRUMENT_CLASSES:
        raise InstructionError(
            f"args[{key!r}] = {name!r} is not an instrument class "
            f"(known: {', '.join(INSTRUMENT_CLASSES)})"
        )
    return str(name)


def judge(task: str, args: Mapping[str, Any], source: Probs | np.ndarray,
          output: Probs | np.ndarray, threshold: float | np.ndarray = DEFAULT_THRESHOLD,
          style_names: Sequence[str] | None = None,
          rounds: Sequence[Mapping[str, Any]] | None = None) -> Judgement:
    """Was the instruction obeyed? ``source``, ``output``: :class:`Probs` or probs ``[K]``;
    ``threshold``: one presence threshold or one per class ``[K]``.

    ``style_names`` (order of ``Probs.style``) is needed for remix. Pure function.
    """
    src, out = _as_probs(source), _as_probs(output)
    req = requirements(task, args, rounds)
    present_out = _present(out.instruments, threshold)
    present_src = _present(src.instruments, threshold)
    failures = []
    for x in sorted(req.absent_in_source & present_src):
        failures.append(f"{x} already present in the source")
    for x in sorted(req.present - present_out):
        failures.append(f"{x} not present in the output")
    for x in sorted(req.absent & present_out):
        failures.append(f"{x} still present in the output")
    if req.only is not None:
        extra = present_out - req.only
        if extra:
            failures.append(f"other instruments present: {', '.join(sorted(extra))}")
    if req.style is not None:
        if out.style is None or style_names is None:
            raise InstructMEError("remix judgement needs style probabilities and style names")
        if req.style not in style_names:
            raise InstructionError(
                f"style {req.style!r} unknown to the classifier (known: {', '.join(style_names)})"
            )
        got = style_names[int(np.argmax(out.style))]
        if got != req.style:
            failures.append(f"style recognised as {got}, not {req.style}")
    if failures:
        return Judgement(False, "; ".join(failures))
    return Judgement(True, "ok")


def instruction_obeyed(task: str, args: Mapping[str, Any], source_probs: Probs | np.ndarray,
                       output_probs: Probs | np.ndarray,
                       threshold: float | np.ndarray = DEFAULT_THRESHOLD,
                       style_names: Sequence[str] | None = None,
                       rounds: Sequence[Mapping[str, Any]] | None = None) -> bool:
    """Boolean form of :func:`judge`."""
    return judge(task, args, source_probs, output_probs, threshold, style_names, rounds).obeyed


def classifier_probs(classifier: Any, clips: Sequence[np.ndarray] | np.ndarray) -> list[Probs]:
    """Run ``classifier.predict(x: [B, N]) -> {"instruments": [B, K], "style": [B, S]}``.

    ``clips``: equal-length mono clips ``[B, N]`` (or a list of them; unequal lengths are
    run one at a time). Torch modules get a float32 tensor under ``no_grad``. The classifier's
    ``instrument_names`` (if any) must equal ``INSTRUMENT_CLASSES``.
    """
    names = getattr(classifier, "instrument_names", None)
    if names is not None and tuple(names) != INSTRUMENT_CLASSES:
        raise InstructMEError("classifier's instrument classes differ from INSTRUMENT_CLASSES")
    if isinstance(clips, np.ndarray) and clips.ndim == 2:
        batches = [clips]
    else:
        batches = [np.asarray(c, dtype=np.float32)[None] for c in clips]
    result: list[Probs] = []
    for batch in batches:
        pred = _predict(classifier, np.ascontiguousarray(batch, dtype=np.float32))
        inst = _to_numpy(pred["instruments"])
        style = _to_numpy(pred["style"]) if pred.get("style") is not None else None
        if inst.shape != (batch.shape[0], len(INSTRUMENT_CLASSES)):
            raise InstructMEError(
                f"classifier returned instrument probabilities of shape {inst.shape}, expected "
                f"[{batch.shape[0]}, {len(INSTRUMENT_CLASSES)}]"
            )
        for i in range(batch.shape[0]):
            result.append(Probs(inst[i], None if style is None else style[i]))
    return result


def _predict(classifier: Any, batch: np.ndarray) -> Mapping[str, Any]:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return classifier.predict(batch)
    if isinstance(classifier, torch.nn.Module):
        classifier.eval()
        with torch.no_grad():
            return classifier.predict(torch.from_numpy(batch))
    return classifier.predict(batch)


def _as_probs(p: Probs | np.ndarray | Mapping[str, Any]) -> Probs:
    if isinstance(p, Probs):
        probs = p
    elif isinstance(p, Mapping):
        probs = Probs(np.asarray(p["instruments"]), None if p.get("style") is None
                      else np.asarray(p["style"]))
    else:
        probs = Probs(np.asarray(p))
    inst = np.asarray(probs.instruments, dtype=np.float64)
    if inst.shape != (len(INSTRUMENT_CLASSES),):
        raise InstructMEError(
            f"instrument probabilities must have shape [{len(INSTRUMENT_CLASSES)}], "
            f"got {inst.shape}"
        )
    return Probs(inst, None if probs.style is None else np.asarray(probs.style, dtype=np.float64))


def _present(inst: np.ndarray, threshold: float | np.ndarray) -> set[str]:
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), np.shape(inst))
    return {c for c, p, t in zip(INSTRUMENT_CLASSES, inst, thr) if p >= t}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().to("cpu").float().numpy()
    return np.asarray(value, dtype=np.float32)
