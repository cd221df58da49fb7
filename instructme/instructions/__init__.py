"""The instruction language: free-text edits <-> ``(task, args)`` in :mod:`instructme.vocab`.

- :mod:`~instructme.instructions.grammar`: cleaning, the ordered patterns, slot resolution
  and splitting of chains ("add a piano then remove the drums");
- :mod:`~instructme.instructions.parse`: text -> ``(task, args)`` and canonical args;
- :mod:`~instructme.instructions.templates`: ``(task, args)`` -> a random phrasing (training
  triplets) or every phrasing;
- :mod:`~instructme.instructions.split`: "split this into stems" -> the classes to split out
  (a request for the stem separator, not an editor task).

Inference (the edit pipeline, the CLI, the web studio) and dataset building both use it; it
depends on nothing but the vocabulary.
"""

from __future__ import annotations

from instructme.instructions.grammar import split_chain
from instructme.instructions.parse import (
    canonical_args,
    known_styles,
    parse_instruction,
    parse_instructions,
    resolve_style,
)
from instructme.instructions.split import parse_split
from instructme.instructions.templates import make_instruction, phrasings

__all__ = [
    "canonical_args", "known_styles", "make_instruction", "parse_instruction",
    "parse_instructions", "parse_split", "phrasings", "resolve_style", "split_chain",
]
