"""The multitrack score: what the corpus and the arranger produce and the renderer plays.

Times are in seconds. A :class:`Song` holds parts (one stem each), per-beat chord labels in
``mir_eval`` syntax (``"C:maj"``, ``"A:min"``, ``"N"``), tempo and key. Songs of the same
``group`` share melody and progression (the arranger renders one group in several styles):
that is what makes remix targets exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pretty_midi


@dataclass
class Note:
    pitch: int
    start: float
    end: float
    velocity: int = 90


@dataclass
class Part:
    """One stem. ``role`` is musical (melody, bass, comp, pad, drums, voice);
    ``instrument`` is the instrument class (see :mod:`instructme.vocab`)."""

    name: str
    program: int
    instrument: str
    role: str
    notes: list[Note] = field(default_factory=list)
    is_drum: bool = False

    def to_pretty_midi(self) -> pretty_midi.Instrument:
        inst = pretty_midi.Instrument(program=self.program, is_drum=self.is_drum, name=self.name)
        inst.notes = [
            pretty_midi.Note(velocity=int(n.velocity), pitch=int(n.pitch),
                             start=float(n.start), end=float(n.end))
            for n in self.notes
        ]
        return inst


@dataclass
class ChordSegment:
    start: float
    end: float
    label: str


@dataclass
class Song:
    song_id: str
    source: str  # "corpus" | "arranger"
    group: str
    tempo: float
    key: str
    duration: float
    parts: list[Part]
    chords: list[ChordSegment] = field(default_factory=list)
    style: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Song:
        d = dict(d)
        d["parts"] = [
            Part(**{**p, "notes": [Note(**n) for n in p.get("notes", [])]}) for p in d["parts"]
        ]
        d["chords"] = [ChordSegment(**c) for c in d.get("chords", [])]
        return cls(**d)

    def to_pretty_midi(self) -> pretty_midi.PrettyMIDI:
        pm = pretty_midi.PrettyMIDI(initial_tempo=self.tempo)
        pm.instruments = [p.to_pretty_midi() for p in self.parts]
        return pm
