"""How one edit is sampled and returned: :class:`EditSettings`.

The CLI (``instructme edit``, ``instructme serve``, ``instructme eval generate``), the web
studio and the Python API all build an :class:`EditSettings`; a field left ``None`` takes the
pipeline folder's default (``pipeline.json``, :mod:`instructme.editing.folder`). Sampler names
come from the registry :data:`instructme.samplers.SAMPLERS`. Guidance is classifier-free
guidance on the instruction (InstructME, arXiv 2308.14360, Method;
:mod:`instructme.editing.guidance`).

This module does not import torch: the CLI checks its options with it before loading a model.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from instructme.errors import InstructMEError
from instructme.samplers import Sampler, lookup, sampler_names

__all__ = ["EditSettings", "MAX_STEPS", "MAX_GUIDANCE", "FOLDER_FIELDS"]

#: Most sampler steps of one edit (the training schedule has 1000 timesteps).
MAX_STEPS = 1000
#: Largest guidance scale accepted.
MAX_GUIDANCE = 50.0
#: Seeds are 64-bit integers (``torch.Generator.manual_seed``; round ``k`` uses ``seed + k``).
SEED_RANGE = (-(2**63), 2**63 - 1)
#: The fields whose defaults a pipeline folder sets (``pipeline.json`` ``"defaults"``).
FOLDER_FIELDS = ("steps", "guidance", "sampler", "preserve")


def _is_int(value: object) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class EditSettings:
    """The settings of one edit (for a multi-round edit, of every round).

    ``steps``: sampler steps (1..:data:`MAX_STEPS`); ``guidance``: classifier-free guidance
    scale (0..:data:`MAX_GUIDANCE`; 1 = no guidance); ``sampler``: a name (or alias) of
    :data:`instructme.samplers.SAMPLERS`; ``seed``: the noise seed (round ``k`` of a chain,
    from 0, uses ``seed + k``); ``preserve``: source-preserving output for add, remove and
    replace (:mod:`instructme.editing.preserve`). ``None``: the pipeline folder's default.
    """

    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    seed: int = 0
    preserve: bool | None = None

    def validate(self, label: str = "{}") -> EditSettings:
        """The settings checked and normalised (ints, floats, the sampler's own name);
        ``None`` fields stay ``None``. Raises :class:`~instructme.errors.InstructMEError` with
        a one-line message naming the field as ``label.format(field)`` (e.g. ``"--{}"`` for
        CLI options)."""
        def bad(name: str, problem: str) -> InstructMEError:
            return InstructMEError(f"{label.format(name)} {problem}")

        steps, guidance, sampler = self.steps, self.guidance, self.sampler
        if steps is not None:
            if not _is_int(steps) or not 1 <= int(steps) <= MAX_STEPS:
                raise bad("steps", f"must be an integer in 1..{MAX_STEPS}, got {steps!r}")
            steps = int(steps)
        if guidance is not None:
            try:
                guidance = float(guidance)
            except (TypeError, ValueError):
                raise bad("guidance", f"must be a number, got {guidance!r}") from None
            if not (math.isfinite(guidance) and 0.0 <= guidance <= MAX_GUIDANCE):
                raise bad("guidance", f"must be in 0..{MAX_GUIDANCE:g}, got {guidance}")
        if sampler is not None:
            spec = lookup(sampler)
            if spec is None:
                raise bad("sampler", f"must be one of {', '.join(sampler_names())}, "
                                     f"got {sampler!r}")
            sampler = spec.name
        if not _is_int(self.seed) or not SEED_RANGE[0] <= int(self.seed) <= SEED_RANGE[1]:
            raise bad("seed", f"must be a 64-bit integer, got {self.seed!r}")
        preserve = self.preserve
        if preserve is not None:
            if not (isinstance(preserve, bool) or type(preserve).__name__ == "bool"
                    or type(preserve).__name__ == "bool_"):  # NumPy's, without importing it
                raise bad("preserve", f"must be true or false, got {preserve!r}")
            preserve = bool(preserve)
        return EditSettings(steps, guidance, sampler, int(self.seed), preserve)

    def resolve(self, defaults: EditSettings) -> EditSettings:
        """These settings with every ``None`` field taken from ``defaults`` (a pipeline's),
        validated: a complete :class:`EditSettings`."""
        mine = self.validate()
        filled = {f: getattr(defaults, f) if getattr(mine, f) is None else getattr(mine, f)
                  for f in FOLDER_FIELDS}
        out = dataclasses.replace(mine, **filled).validate()
        missing = [f for f in FOLDER_FIELDS if getattr(out, f) is None]
        if missing:
            raise InstructMEError(f"no default for {', '.join(missing)}")
        return out

    def override(self, **values: Any) -> EditSettings:
        """A copy with the given fields replaced, ignoring ``None`` values (unknown fields:
        :class:`~instructme.errors.InstructMEError`)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InstructMEError(f"unknown edit settings: {', '.join(unknown)} "
                                  f"(known: {', '.join(sorted(names))})")
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    @property
    def sampler_spec(self) -> Sampler:
        """The registry entry of :attr:`sampler` (which must be set and known)."""
        spec = lookup(self.sampler)
        if spec is None:
            raise InstructMEError(f"sampler must be one of {', '.join(sampler_names())}, "
                                  f"got {self.sampler!r}")
        return spec

    def folder_defaults(self) -> dict[str, Any]:
        """The fields a pipeline folder records (``pipeline.json`` ``"defaults"``), set ones
        only."""
        return {f: getattr(self, f) for f in FOLDER_FIELDS if getattr(self, f) is not None}

    @classmethod
    def from_folder(cls, values: dict[str, Any] | None, base: EditSettings) -> EditSettings:
        """``base`` with a pipeline folder's recorded defaults on top, validated (one-line
        :class:`~instructme.errors.InstructMEError` for an unknown key or a bad value)."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(FOLDER_FIELDS))
        if unknown:
            raise InstructMEError(f"unknown default settings {unknown} (known: "
                                  f"{', '.join(FOLDER_FIELDS)})")
        return base.override(**values).validate("default {}")
