"""Instruction templates and paraphrases: :func:`make_instruction` phrases an edit in words.

Training triplets get a random phrasing of their ``(task, args)``: one of 14-18 templates per
task (:data:`TEMPLATES`) with instruments and styles in one of their surface forms
(:data:`INSTRUMENT_FORMS`, :data:`STYLE_FORMS`). :func:`~instructme.instructions.parse_instruction`
maps every phrasing back onto the same ``(task, args)``.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from instructme.errors import InstructionError
from instructme.instructions.parse import canonical_args
from instructme.vocab import DISPLAY_NAMES

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
