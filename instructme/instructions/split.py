"""Split requests: "split this into stems" -> the instrument classes to split out.

A split is not an edit of the editor's vocabulary (:data:`instructme.vocab.TASKS`): it asks
for every stem at once, which the stem separator answers
(:func:`instructme.editing.separation.split_stems`). The studio and the Python API recognise
it before :func:`~instructme.instructions.parse.parse_instructions` sees the text:

- "split this into stems", "separate the song into tracks", "give me the stems", "stems",
  "demix this" -> ``()``: every class that sounds;
- "split this into drums, bass and the rest" -> ``("drums", "bass")``.

"separate the bass" stays an extract (no "into", no stems).
"""

from __future__ import annotations

import re

from instructme.errors import InstructionError
from instructme.instructions.grammar import clean, resolve_phrase, strip_politeness
from instructme.vocab import INSTRUMENT_CLASSES, resolve_instrument

_IT = (r"(?:(?:this|that|it|the|my|our)(?: (?:song|track|tune|piece|clip|mix|music|recording"
       r"|audio|one|whole thing))?|everything)")
_PARTS = (r"(?:(?:its |the |separate |individual |all the |all |all its |all of the )?"
          r"(?:stems?|tracks|parts|instruments|layers|sources))")
_VERB = r"(?:split|separate|demix|unmix|break|break down|break up|pull apart|decompose)"
_GET = r"(?:give me|get|make|export|bounce|extract|show me|i want|i need|create)"
_ALL = [
    rf"{_VERB}(?: {_IT})?(?: up| down| apart)?(?: (?:into|in|to) {_PARTS})?",
    rf"(?:{_GET} )?{_PARTS}(?: of {_IT})?",
    rf"stem split(?: {_IT})?",
    rf"split {_PARTS}",
]
#: "split this into X, Y and the rest": the named classes.
_NAMED = re.compile(rf"{_VERB}(?: {_IT})?(?: up)? (?:into|in|to) (?P<list>.+)")
_REST = re.compile(r"^(?:the )?(?:rest|others?|everything else|all else|remainder|other "
                   r"(?:instruments|parts|stuff))$")
_ALL_RX = [re.compile(rx) for rx in _ALL]
#: Words between named classes that mean nothing ("into the drums, a bass ...").
_FILL = {"the", "a", "an", "its", "stems", "stem", "separate", "tracks", "parts"}


def _words_to_classes(chunk: str) -> list[str] | None:
    """``"drums bass"`` (commas are gone after cleaning) -> classes, longest names first;
    ``None`` if some word is neither a class nor filler."""
    words, out, i = chunk.split(), [], 0
    while i < len(words):
        for n in (3, 2, 1):
            cand = " ".join(words[i:i + n])
            if len(words[i:i + n]) == n and (cand in _FILL or _REST.match(cand)):
                break
            cls = resolve_instrument(cand) if len(words[i:i + n]) == n else None
            if cls is not None:
                out.append(cls)
                break
        else:
            return None
        i += n
    return out


def _named(items: str, text: str) -> tuple[str, ...]:
    """``"drums bass and the rest"`` -> ``("drums", "bass")``; an unknown name is an
    :class:`InstructionError` listing the known classes."""
    names: list[str] = []
    for chunk in (p.strip() for p in re.split(r" and | plus | with ", f" {items} ")):
        if not chunk or _REST.match(chunk):
            continue
        found = _words_to_classes(chunk)
        if not found:  # "the funky bass part": the grammar's slot resolution
            one = resolve_phrase(chunk, "instrument", resolve_instrument)
            found = [one] if one is not None else None
        if not found:
            raise InstructionError(f"cannot split out {chunk!r} in {text!r} (instrument "
                                   f"classes: {', '.join(INSTRUMENT_CLASSES)})")
        names += [c for c in found if c not in names]
    return tuple(names)


def parse_split(text: str) -> tuple[str, ...] | None:
    """The classes a split request names (``()``: all), or ``None`` if ``text`` is not a
    split request."""
    norm = strip_politeness(clean(text))
    if any(rx.fullmatch(norm) for rx in _ALL_RX):
        return ()
    m = _NAMED.fullmatch(norm)
    if m is None:
        return None
    return _named(m.group("list"), text)
