"""Split requests ("split this into stems") are told apart from extracts and parsed into the
classes they name."""

from __future__ import annotations

import pytest

from instructme.errors import InstructionError
from instructme.instructions import parse_instruction, parse_split


@pytest.mark.parametrize("text", ["split this into stems", "Split the song into its stems, "
                                  "please", "give me the stems", "stems", "demix this",
                                  "separate this into tracks", "break this down into stems",
                                  "split it"])
def test_split_requests_for_every_stem(text: str) -> None:
    assert parse_split(text) == ()


@pytest.mark.parametrize(("text", "classes"), [
    ("split into drums, bass and the rest", ("drums", "bass")),
    ("split this into the electric guitar and synth pad", ("guitar", "synth_pad")),
    ("split this into drums and everything else", ("drums",)),
    ("split this into the funky bass part and drums", ("bass", "drums")),
])
def test_split_requests_naming_classes(text: str, classes: tuple[str, ...]) -> None:
    assert parse_split(text) == classes


@pytest.mark.parametrize("text", ["separate the bass", "extract the drums", "split out the "
                                  "piano", "remove the drums", "add a piano"])
def test_edits_are_not_splits(text: str) -> None:
    assert parse_split(text) is None
    parse_instruction(text)  # still an edit of the vocabulary


def test_an_unknown_class_is_a_one_line_error() -> None:
    with pytest.raises(InstructionError, match="kazoo.*instrument classes: piano"):
        parse_split("split this into kazoo and drums")
