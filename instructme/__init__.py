"""instructme: instruction-guided music editing and remixing with latent diffusion.

An open implementation of InstructME (Han et al., arXiv 2308.14360).

    >>> import instructme
    >>> pipe = instructme.EditPipeline.from_pretrained("models/instructme-small")
    >>> result = pipe(audio, 44100, "add a piano")          # audio: [N] or [C, N]
    >>> instructme.edit("song.wav", "remove the drums", "out.wav")

``EditPipeline``, ``EditResult`` and ``edit`` are imported lazily (``import instructme``
stays light: no torch until they are used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["EditPipeline", "EditResult", "edit", "__version__"]

if TYPE_CHECKING:
    from instructme.editing.pipeline import EditPipeline, EditResult, edit


def __getattr__(name: str) -> Any:
    if name in ("EditPipeline", "EditResult", "edit"):
        from instructme.editing import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'instructme' has no attribute {name!r}")
