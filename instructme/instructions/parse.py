"""Instruction parsing: free text -> ``(task, args)`` in the project's vocabulary.

InstructME (arXiv 2308.14360, Sec. 3.1 and 4.1) edits music with free-text instructions from
five families -- add, remove, extract, replace and remix -- plus multi-round chains of them.
User text is mapped onto the ``(task, args)`` vocabulary that
:func:`~instructme.instructions.templates.make_instruction` phrases, so that the CLI can check
an instruction before editing, and so that instruction accuracy can be scored. The grammar
(patterns, cleaning, slot resolution) is in :mod:`instructme.instructions.grammar`.

Canonical args: ``add``/``remove``/``extract``: ``{"instrument": cls}``; ``replace``:
``{"instrument": old, "new_instrument": new}``; ``remix``: ``{"style": s}`` (or ``{}`` for
"remix this"); ``multiround``: ``{"rounds": [{"task": t, "args": a}, ...]}``. Instrument
classes and styles come from :mod:`instructme.vocab`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from instructme.errors import InstructionError
from instructme.instructions.grammar import (
    PATTERNS,
    clean,
    resolve_phrase,
    split_chain,
    strip_determiners,
    strip_politeness,
)
from instructme.vocab import (
    INSTRUMENT_CLASSES,
    KNOWN_STYLES,
    STYLE_SYNONYMS,
    STYLES,
    SUBSTYLES,
    TASKS,
    resolve_instrument,
)

_EXAMPLES = ("add X ('add a piano'), remove X ('remove the drums'), extract X ('extract the "
             "bass'), replace X with Y ('replace the guitar with strings'), remix ('remix this "
             "as jazz'); chain edits with 'then'")


def known_styles() -> tuple[str, ...]:
    """Styles instructions resolve to: :data:`~instructme.vocab.KNOWN_STYLES` plus any further
    style the arranger renders (:data:`~instructme.vocab.STYLES`, e.g. "bossa")."""
    return KNOWN_STYLES + tuple(s for s in STYLES if s not in KNOWN_STYLES)


def resolve_style(name: str) -> str | None:
    """Style name or synonym (any case) -> style, or ``None`` if unknown.

    A style the arranger renders wins over a synonym ("bossa" is latin unless the arranger
    has a "bossa" style of its own).
    """
    key = " ".join(name.lower().replace("-", " ").replace("_", " ").split())
    styles = known_styles()
    for s in styles:
        if key in (s, s.replace("_", " ")):
            return s
    for sub, words in SUBSTYLES.items():
        if sub in styles and key in words:
            return sub
    return STYLE_SYNONYMS.get(key)


def canonical_args(task: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``args`` for ``task`` and return them in canonical form (classes, not synonyms)."""
    if task not in TASKS:
        raise InstructionError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    if not isinstance(args, Mapping):
        raise InstructionError(f"args for {task!r} must be a dict, not {type(args).__name__}")
    if task in ("add", "remove", "extract", "replace"):
        out = {"instrument": _instrument_arg(args, "instrument")}
        if task == "replace":
            out["new_instrument"] = _instrument_arg(args, "new_instrument")
            if out["new_instrument"] == out["instrument"]:
                raise InstructionError("replace needs two different instruments")
        return out
    if task == "remix":
        style = args.get("style")
        if style is None:
            return {}
        resolved = resolve_style(str(style))
        if resolved is None:
            raise InstructionError(f"unknown style {style!r}; known styles: "
                                   f"{', '.join(known_styles())}")
        return {"style": resolved}
    rounds = args.get("rounds")
    if not isinstance(rounds, list) or len(rounds) < 2:
        raise InstructionError("multiround needs args {'rounds': [{'task', 'args'}, ...]} "
                               "with at least 2 rounds")
    out_rounds = []
    for r in rounds:
        if (not isinstance(r, Mapping) or r.get("task") in (None, "multiround")
                or not isinstance(r.get("args"), Mapping)):
            raise InstructionError(f"bad round {r!r}: needs a single-round 'task' and 'args'")
        out_rounds.append({"task": r["task"], "args": canonical_args(r["task"], r["args"])})
    return {"rounds": out_rounds}


def _instrument_arg(args: Mapping[str, Any], key: str) -> str:
    name = args.get(key)
    cls = resolve_instrument(str(name)) if name is not None else None
    if cls is None:
        raise InstructionError(f"{key} {name!r} is not an instrument; known instruments: "
                               f"{', '.join(INSTRUMENT_CLASSES)}")
    return cls



# -- parsing -------------------------------------------------------------------------------

def _resolve_slot(phrase: str, kind: str, text: str) -> str:
    resolver = resolve_style if kind == "style" else resolve_instrument
    value = resolve_phrase(phrase, kind, resolver)
    if value is not None:
        return value
    shown = strip_determiners(phrase) or phrase.strip()
    if kind == "style":
        raise InstructionError(f"unknown style {shown!r} in {text!r}; known styles: "
                               f"{', '.join(known_styles())}")
    if re.search(r"\b(?:and|or|plus|with)\b", shown):
        raise InstructionError(f"{shown!r} in {text!r}: name one instrument per instruction "
                               "(chain edits with 'then', e.g. 'remove the drums then remove "
                               "the bass')")
    raise InstructionError(f"unknown instrument {shown!r} in {text!r}; known instruments: "
                           f"{', '.join(INSTRUMENT_CLASSES)} (synonyms such as 'keys', "
                           "'violins', 'sax' or 'beat' work too)")


def _parse_single(text: str) -> tuple[str, dict[str, Any]]:
    norm = strip_politeness(clean(text))
    if not norm:
        raise InstructionError(f"no edit in {text.strip()!r}; say one of: {_EXAMPLES}")
    first_error: InstructionError | None = None
    for task, pattern in PATTERNS:
        m = pattern.fullmatch(norm)
        if m is None:
            continue
        groups = m.groupdict()
        try:
            args: dict[str, Any] = {}
            if groups.get("x") is not None:
                args["instrument"] = _resolve_slot(groups["x"], "instrument", text)
            if groups.get("y") is not None:
                args["new_instrument"] = _resolve_slot(groups["y"], "instrument", text)
                if args["new_instrument"] == args["instrument"]:
                    raise InstructionError(f"{text!r} replaces an instrument with itself")
            if groups.get("s") is not None:
                args["style"] = _resolve_slot(groups["s"], "style", text)
        except InstructionError as e:
            first_error = first_error or e
            continue
        return task, args
    if first_error is not None:
        raise first_error
    raise InstructionError(f"could not understand the instruction {text.strip()!r}; "
                           f"say one of: {_EXAMPLES}")


def parse_instructions(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Split a (possibly multi-round) instruction into single edits, in order.

    Rounds are separated by ';', sentence ends, 'then', 'and then', 'after that'; failing
    that, a clause that does not parse as a whole is tried split at 'and' / commas.
    """
    if not isinstance(text, str) or not text.strip():
        raise InstructionError(f"empty instruction; say one of: {_EXAMPLES}")
    out: list[tuple[str, dict[str, Any]]] = []
    for clause in split_chain(text):
        try:
            out.append(_parse_single(clause))
        except InstructionError as e:
            pieces = [p for p in re.split(r",|\band\b", clause) if p.strip()]
            if len(pieces) < 2:
                raise
            try:
                out += [_parse_single(p) for p in pieces]
            except InstructionError:
                raise e from None
    if not out:
        raise InstructionError(f"no edit in {text.strip()!r}; say one of: {_EXAMPLES}")
    return out


def parse_instruction(text: str) -> tuple[str, dict[str, Any]]:
    """Instruction text -> ``(task, args)``; a chain gives ``("multiround", {"rounds": ...})``.

    Raises :class:`InstructionError` (one line) for empty text, no recognisable task (the
    message lists the tasks with an example each), an unknown instrument (lists the classes)
    or an unknown style (lists the styles).
    """
    edits = parse_instructions(text)
    if len(edits) == 1:
        return edits[0]
    return "multiround", {"rounds": [{"task": t, "args": a} for t, a in edits]}
