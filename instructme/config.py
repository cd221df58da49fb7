"""Configuration dataclasses and presets.

Every model has a config dataclass deriving from :class:`Config` with named presets
(``tiny`` for tests, ``small`` for CPU, a larger one for GPU). Configs serialise to plain
JSON (``config.json`` beside ``model.safetensors``) so that ``load(dir)`` rebuilds the model.
This module also holds the project-wide audio defaults and the data-build presets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Self

from instructme.errors import CheckpointError

#: Project sample rate (DESIGN: mono, 16 kHz by default).
SAMPLE_RATE = 16_000


def shipped_model_dir(name: str) -> Path:
    """``models/<name>`` of the repository this package runs from (the shipped models)."""
    return Path(__file__).resolve().parent.parent / "models" / name


@dataclasses.dataclass
class Config:
    """Base class: JSON round trip and named presets.

    Subclasses fill ``PRESETS`` with ``{name: {field: value}}`` overrides of the defaults.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        if name not in cls.PRESETS:
            known = ", ".join(sorted(cls.PRESETS))
            raise ValueError(f"unknown {cls.__name__} preset {name!r} (known: {known})")
        return cls(**{**cls.PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Build from a JSON dict; every value is checked against its field's annotation
        (one-line :class:`CheckpointError` naming the field)."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{cls.__name__}: config must be a JSON object, got "
                                  f"{type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise CheckpointError(f"{cls.__name__}: unknown config fields {unknown}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                if not _fits(v, hints[f.name]):
                    raise CheckpointError(f"{cls.__name__}: field {f.name!r} must be "
                                          f"{_type_name(hints[f.name])}, got {v!r}")
                # JSON turns tuples into lists; give tuple-typed fields their tuples back.
                if isinstance(v, list) and "tuple" in str(f.type):
                    v = tuple(v)
                kwargs[f.name] = v
        try:
            return cls(**kwargs)
        except ValueError as e:  # a config's own checks (__post_init__)
            raise CheckpointError(f"{cls.__name__}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path: str | Path) -> Self:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: config file not found")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e.msg})") from None
        return cls.from_dict(d)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config annotation (bool, int, float, str, ``X | None``,
    ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict``; other annotations: any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_fits, value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    """``int``, ``float or null``, ``a list of float``, ... for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return getattr(hint, "__name__", str(hint))


@dataclasses.dataclass
class DataConfig(Config):
    """What ``instructme data build`` renders and how triplets are cut.

    Durations are seconds. ``corpus_pieces`` music21 works and ``arranger_songs`` generated
    songs (each arranged in ``styles_per_song`` styles, so remix targets exist) are rendered.
    """

    sample_rate: int = SAMPLE_RATE
    corpus_pieces: int = 40
    corpus_max_seconds: float = 120.0
    arranger_songs: int = 40
    styles_per_song: int = 2
    arranger_bars: int = 24
    window_seconds: float = 10.0
    windows_per_song: int = 4
    replace_variants_per_song: int = 1
    multiround_per_song: int = 1
    max_silent_fraction: float = 0.5
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    #: Timbre diversity: soundfonts (registry names or paths, see
    #: :mod:`instructme.dataset.soundfonts`) drawn per stem; empty: ``soundfont`` only.
    soundfonts: tuple[str, ...] = ()
    #: Seeded per-stem pedalboard chains (:mod:`instructme.dataset.effects`).
    stem_fx: bool = False
    #: Per-stem level variation around the role's level (uniform, +- dB).
    gain_jitter_db: float = 1.5
    #: Probability that a song's mix bus is limited (the gain curve applies to every stem).
    limiter_prob: float = 0.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Seconds to build: for tests and the quick demo.
        "tiny": dict(
            corpus_pieces=2, corpus_max_seconds=24.0, arranger_songs=3, styles_per_song=2,
            arranger_bars=8, window_seconds=4.0, windows_per_song=2,
        ),
        # >= 20 hours of distinct source material; builds in well under 30 min on 2 cores.
        "small": dict(
            corpus_pieces=300, corpus_max_seconds=150.0, arranger_songs=300, styles_per_song=3,
            arranger_bars=40,
        ),
        # The small preset's songs, each stem drawn from three soundfonts and processed
        # (EQ, compression, saturation, reverb, +-6 dB), a fifth of the mixes limited: the
        # timbre-diverse training data (the held-out soundfonts are never among them).
        "diverse": dict(
            corpus_pieces=300, corpus_max_seconds=150.0, arranger_songs=300, styles_per_song=3,
            arranger_bars=40, soundfonts=("fluidr3", "musescore", "csound"), stem_fx=True,
            gain_jitter_db=6.0, limiter_prob=0.2,
        ),
        # Everything the corpus offers plus many generated songs (hours to build).
        "full": dict(
            corpus_pieces=2000, corpus_max_seconds=240.0, arranger_songs=2000,
            styles_per_song=4, arranger_bars=48, windows_per_song=8,
            replace_variants_per_song=2, multiround_per_song=2,
        ),
    }
