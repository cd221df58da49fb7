"""Instruction-guided editing at inference (InstructME, arXiv 2308.14360, Method): the
pipeline and its helpers.

- :mod:`~instructme.editing.pipeline`: :class:`EditPipeline` (audio + instruction -> edited
  audio), :func:`edit` (file to file).
- :mod:`~instructme.editing.user_audio`: the user's audio to the models' mono rate and level,
  and back.
- :mod:`~instructme.editing.preserve`: source-preserving output (the generated mix as a guide).
- :mod:`~instructme.editing.folder`: pipeline folders (``vae/``, ``chord/``, ``editor/``,
  ``pipeline.json``).

Names are imported lazily: importing this package does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EditPipeline", "EditResult", "edit", "load_pipeline"]

if TYPE_CHECKING:
    from instructme.editing.pipeline import EditPipeline, EditResult, edit, load_pipeline


def __getattr__(name: str) -> Any:
    if name in __all__:
        from instructme.editing import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'instructme.editing' has no attribute {name!r}")
