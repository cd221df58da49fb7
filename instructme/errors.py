"""User-facing errors.

Every problem a user can cause (bad audio, unknown instruction, missing checkpoint, bad
manifest, ...) raises :class:`InstructMEError` with a one-line message. The CLI prints
``error: <message>`` and exits non-zero instead of dumping a traceback.
"""

from __future__ import annotations


class InstructMEError(Exception):
    """A clear, one-line error meant for the user (not a bug)."""

    exit_code = 2


class AudioError(InstructMEError):
    """An audio file could not be read or is unusable (empty, NaN, absurd rate, ...)."""


class InstructionError(InstructMEError):
    """An instruction could not be understood (unknown task, instrument or style)."""


class CheckpointError(InstructMEError):
    """A model folder is missing, incomplete or does not match the expected model."""


class ManifestError(InstructMEError):
    """A dataset manifest or dataset folder is missing or malformed."""


class DependencyError(InstructMEError):
    """A system dependency (FluidSynth, a soundfont, ffmpeg, ...) is missing."""
