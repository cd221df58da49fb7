"""Instruction templates, paraphrases and parsing into ``(task, args)``.

InstructME (arXiv 2308.14360, Sec. 3.1 and 4.1) edits music with free-text instructions from
five families -- add, remove, extract, replace and remix -- plus multi-round chains of them.
Training triplets get a random phrasing from :func:`make_instruction`; user text is mapped
back onto the same ``(task, args)`` vocabulary by :func:`parse_instruction` so that the CLI
can check an instruction before editing, and so that instruction accuracy can be scored.

Canonical args: ``add``/``remove``/``extract``: ``{"instrument": cls}``; ``replace``:
``{"instrument": old, "new_instrument": new}``; ``remix``: ``{"style": s}`` (or ``{}`` for
"remix this"); ``multiround``: ``{"rounds": [{"task": t, "args": a}, ...]}``. Instrument
classes come from :mod:`instructme.data.instruments`; styles from :data:`KNOWN_STYLES`.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

from instructme.data._instruction_patterns import (
    PATTERNS,
    clean,
    resolve_phrase,
    split_chain,
    strip_determiners,
    strip_politeness,
)
from instructme.data.instruments import DISPLAY_NAMES, INSTRUMENT_CLASSES, resolve_instrument
from instructme.errors import InstructionError

TASKS: tuple[str, ...] = ("add", "remove", "extract", "replace", "remix", "multiround")

#: Styles the procedural arranger renders (DESIGN "Data"); ``arranger.STYLES`` must be a subset
#: of these plus :data:`SUBSTYLES`.
KNOWN_STYLES: tuple[str, ...] = (
    "pop", "rock", "jazz", "funk", "ballad", "electronic", "latin", "orchestral", "country",
    "reggae",
)

#: Style words (lower case) -> style.
STYLE_SYNONYMS: dict[str, str] = {
    "pop": "pop", "poppy": "pop", "pop music": "pop",
    "rock": "rock", "hard rock": "rock", "rock n roll": "rock", "rock and roll": "rock",
    "rock'n'roll": "rock", "punk": "rock", "metal": "rock", "grunge": "rock",
    "jazz": "jazz", "jazzy": "jazz", "swing": "jazz", "bebop": "jazz", "big band": "jazz",
    "funk": "funk", "funky": "funk", "disco": "funk",
    "ballad": "ballad", "slow": "ballad", "slow ballad": "ballad", "power ballad": "ballad",
    "love song": "ballad",
    "electronic": "electronic", "electro": "electronic", "edm": "electronic",
    "techno": "electronic", "house": "electronic", "dance": "electronic",
    "electronica": "electronic", "trance": "electronic", "synthwave": "electronic",
    "latin": "latin", "latino": "latin", "latin jazz": "latin", "bossa": "latin",
    "bossa nova": "latin", "salsa": "latin", "samba": "latin", "cumbia": "latin",
    "reggaeton": "latin", "tango": "latin",
    "orchestral": "orchestral", "classical": "orchestral", "symphonic": "orchestral",
    "orchestra": "orchestral", "symphony": "orchestral", "cinematic": "orchestral",
    "country": "country", "country music": "country", "bluegrass": "country",
    "western": "country", "country and western": "country",
    "reggae": "reggae", "ska": "reggae", "dub": "reggae", "dancehall": "reggae",
}

#: Styles that are synonyms of a broader one unless the arranger renders them on their own
#: (then their words resolve to them): style -> its words.
SUBSTYLES: dict[str, tuple[str, ...]] = {"bossa": ("bossa", "bossa nova", "bossanova")}

#: Surface forms used when generating: class -> [(text, kind)], kind: count | plural | mass.
INSTRUMENT_FORMS: dict[str, list[tuple[str, str]]] = {
    "piano": [("piano", "count"), ("keys", "plural"), ("electric piano", "count")],
    "mallets": [("mallets", "plural"), ("vibraphone", "count"), ("marimba", "count")],
    "organ": [("organ", "count"), ("hammond", "count")],
    "guitar": [("guitar", "count"), ("electric guitar", "count"), ("acoustic guitar", "count")],
    "bass": [("bass", "mass"), ("bassline", "count"), ("bass guitar", "count")],
    "strings": [("strings", "plural"), ("violins", "plural"), ("string section", "count")],
    "choir": [("choir", "count"), ("voices", "plural")],
    "brass": [("brass", "mass"), ("horns", "plural"), ("brass section", "count"),
              ("trumpets", "plural")],
    "woodwinds": [("woodwinds", "plural"), ("flute", "count"), ("sax", "count"),
                  ("clarinet", "count")],
    "synth_lead": [("synth lead", "count"), ("lead synth", "count"), ("synth", "count")],
    "synth_pad": [("synth pad", "count"), ("pad", "count"), ("pads", "plural")],
    "drums": [("drums", "plural"), ("drum kit", "count"), ("beat", "count"),
              ("percussion", "mass")],
    "vocals": [("vocals", "plural"), ("lead vocals", "plural"), ("singing", "mass")],
}

#: Style surface forms: style -> (nouns for "as X"/"like X", adjectives for "a X version").
STYLE_FORMS: dict[str, tuple[list[str], list[str]]] = {
    "pop": (["pop", "a pop song"], ["pop"]),
    "rock": (["rock", "a rock song"], ["rock"]),
    "jazz": (["jazz", "a jazz tune"], ["jazz", "jazzy"]),
    "funk": (["funk", "a funk track"], ["funk", "funky"]),
    "ballad": (["a ballad", "a slow ballad"], ["ballad", "slow"]),
    "electronic": (["electronic music", "edm"], ["electronic", "edm"]),
    "latin": (["latin music", "salsa"], ["latin", "salsa"]),
    "orchestral": (["an orchestral piece", "classical music"], ["orchestral", "symphonic"]),
    "country": (["country", "a country song"], ["country"]),
    "reggae": (["reggae", "a reggae tune"], ["reggae"]),
    "bossa": (["bossa nova"], ["bossa nova"]),
}

_IT_FORMS = ["this", "it", "the song", "this track"]

#: Phrasings per task; slots: {x_def} "the X", {x_indef} "a/some X", {x_bare}, {x_optdef},
#: same for y (new instrument), {s_noun}/{s_adj} (style), {it} (the music).
TEMPLATES: dict[str, list[str]] = {
    "add": [
        "add {x_indef}", "add {x_indef} to {it}", "put {x_indef} on {it}", "bring in {x_indef}",
        "layer {x_indef} on top", "can you add {x_indef}?", "throw in {x_indef}",
        "include {x_indef} as well", "give {it} a {x_bare} part", "let's hear {x_indef} too",
        "I want {x_indef} in the mix", "could you add {x_indef} to the track?",
        "overdub {x_indef}", "accompany {it} with {x_indef}", "mix in {x_indef}",
        "have {x_indef} join in", "{it} needs {x_indef}",
    ],
    "remove": [
        "remove {x_def}", "take out {x_def}", "take {x_def} out", "mute {x_def}",
        "get rid of {x_def}", "drop {x_def}", "without {x_optdef}", "can you remove {x_def}?",
        "delete {x_def} from {it}", "lose {x_def}", "cut {x_def}", "strip out {x_def}",
        "no more {x_bare}", "I don't want {x_def} anymore", "keep everything except {x_def}",
        "play {it} without {x_def}", "silence {x_def} part",
        "could you take {x_def} out of the mix?",
    ],
    "extract": [
        "extract {x_def}", "isolate {x_def}", "keep only {x_def}", "solo {x_def}",
        "just {x_def}", "only {x_def}", "{x_bare} only", "give me just {x_def}",
        "separate {x_def} from the mix", "remove everything except {x_def}",
        "mute everything but {x_def}", "I only want to hear {x_def}", "can you isolate {x_def}?",
        "extract {x_def} stem", "{x_def} on its own", "leave just {x_def}",
    ],
    "replace": [
        "replace {x_def} with {y_indef}", "swap {x_def} for {y_indef}",
        "play {x_def} part on {y_bare}", "turn {x_def} into {y_indef}",
        "change {x_def} to {y_indef}", "use {y_indef} instead of {x_def}",
        "switch {x_def} to {y_indef}", "have {y_def} play {x_def} part",
        "swap out {x_def} for {y_indef}", "substitute {y_indef} for {x_def}",
        "can you replace {x_def} with {y_indef}?", "let {y_def} take over {x_def} part",
        "instead of {x_def}, use {y_indef}", "replace {x_def} part with {y_indef}",
    ],
    "remix": [
        "remix {it} as {s_noun}", "make {it} sound like {s_noun}",
        "turn {it} into a {s_adj} song", "{s_adj} version please", "give {it} a {s_adj} feel",
        "rearrange {it} in a {s_adj} style", "reimagine {it} as {s_noun}",
        "convert {it} to {s_noun}", "can you do a {s_adj} remix?", "make {it} a {s_adj} track",
        "play {it} in a {s_adj} style", "change the style to {s_noun}",
        "remix {it} in the style of {s_noun}", "how would {it} sound as {s_noun}?",
    ],
    "remix_any": [
        "remix {it}", "give me a remix", "rearrange {it} in a new style",
        "remix {it} in another genre", "make a remix of {it}", "restyle {it}",
    ],
}

_CONNECTORS = [" then ", ", then ", " and then ", "; ", ". Then ", ", after that "]
_ENDINGS = ["", "", "", ".", " please", ", please", "!"]
_EXAMPLES = ("add X ('add a piano'), remove X ('remove the drums'), extract X ('extract the "
             "bass'), replace X with Y ('replace the guitar with strings'), remix ('remix this "
             "as jazz'); chain edits with 'then'")


@cache
def known_styles() -> tuple[str, ...]:
    """:data:`KNOWN_STYLES` plus any further style the arranger (if present) renders."""
    try:
        from instructme.data.arranger import STYLES
    except ImportError:
        return KNOWN_STYLES
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


# -- generation ----------------------------------------------------------------------------

def _instrument_options(cls: str) -> dict[str, list[list[str]]]:
    """Slot options per surface form: ``{"def": [["the piano"], ...], "indef": ...}``."""
    forms = INSTRUMENT_FORMS.get(cls) or [(DISPLAY_NAMES[cls], "count")]
    art = {t: (f"a {t}" if kind == "count" else f"some {t}") for t, kind in forms}
    return {"def": [[f"the {t}"] for t, _ in forms], "indef": [[art[t], t] for t, _ in forms],
            "bare": [[t] for t, _ in forms], "optdef": [[f"the {t}", t] for t, _ in forms]}


def _slot_options(task: str, canon: Mapping[str, Any]
                  ) -> tuple[list[str], dict[str, list[list[str]]]]:
    """(templates, slot -> options grouped by surface form) for a canonical single edit."""
    opts: dict[str, list[list[str]]] = {"it": [[t] for t in _IT_FORMS]}
    if "instrument" in canon:
        opts.update({f"x_{k}": v for k, v in _instrument_options(canon["instrument"]).items()})
    if "new_instrument" in canon:
        opts.update({f"y_{k}": v for k, v in _instrument_options(canon["new_instrument"]).items()})
    if task == "remix" and "style" in canon:
        plain = canon["style"].replace("_", " ")
        nouns, adjs = STYLE_FORMS.get(canon["style"], ([plain], [plain]))
        opts.update({"s_noun": [[n] for n in nouns], "s_adj": [[a] for a in adjs]})
    key = "remix_any" if task == "remix" and "style" not in canon else task
    return TEMPLATES[key], opts


def _fields(template: str) -> list[str]:
    return sorted({f for _, f, _, _ in string.Formatter().parse(template) if f})


def _realise(template: str, values: Mapping[str, str]) -> str:
    text = template.format_map(values)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def phrasings(task: str, args: Mapping[str, Any]) -> list[str]:
    """Every phrasing :func:`make_instruction` can produce (before casing/endings)."""
    if task == "multiround":
        raise InstructionError("phrasings() enumerates single-round tasks only")
    canon = canonical_args(task, args)
    templates, opts = _slot_options(task, canon)
    out: list[str] = []
    for t in templates:
        fields = _fields(t)
        flat = [[v for form in opts[f] for v in form] for f in fields]
        for combo in itertools.product(*flat):
            out.append(_realise(t, dict(zip(fields, combo))))
    return out


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _make_single(task: str, canon: Mapping[str, Any], rng: np.random.Generator) -> str:
    templates, opts = _slot_options(task, canon)
    template = _pick(templates, rng)
    values = {}
    for f in _fields(template):
        # The display name (first surface form) half the time, otherwise any form.
        forms = opts[f]
        form = forms[0] if rng.random() < 0.5 else forms[int(rng.integers(len(forms)))]
        values[f] = _pick(form, rng)
    return _realise(template, values)


def _decorate(text: str, rng: np.random.Generator) -> str:
    if not text.endswith("?"):
        text += _pick(_ENDINGS, rng)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text


def make_instruction(task: str, args: Mapping[str, Any], rng: np.random.Generator) -> str:
    """A random phrasing of ``task`` with ``args`` (see module doc for the args per task).

    ``parse_instruction`` maps every output back to ``(task, canonical_args(task, args))``.
    """
    canon = canonical_args(task, args)
    if task != "multiround":
        return _decorate(_make_single(task, canon, rng), rng)
    parts = [_make_single(r["task"], r["args"], rng) for r in canon["rounds"]]
    text = parts[0]
    for part in parts[1:]:
        text = text.rstrip("?") + _pick(_CONNECTORS, rng) + part
    return _decorate(text, rng)


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
