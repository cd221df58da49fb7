"""Remove, extract and split with the stem separator (:mod:`instructme.models.separator`).

Remove and extract are separation problems: the pipeline answers them with one forward pass
of the separator instead of generating a mix. The separator's ratio mask ``M [F, T]`` is
computed on the model side of the user's audio (mono, model rate) and applied, like the
generated guide of :mod:`instructme.editing.preserve`, to the user's own audio at its own
rate, on every channel (:func:`~instructme.editing.preserve.apply_keep`), so what is kept
keeps its waveform, bandwidth and stereo image::

    extracted = M * audio  (per channel, at the user's rate)
    extract X -> extracted;   remove X -> audio - extracted      (they sum to the input)
    replace X with Y -> (audio - extracted) + the generated Y    (:mod:`~.preserve`)

An instrument that does not sound (extracted power more than :data:`PRESENT_DB` below the
input's) is reported as absent, and its part is silence rather than the mask's leakage.

:func:`split_stems` does this for every class the separator knows and returns the classes
that sound plus ``other`` (the rest): the stems sum back to the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from instructme.editing.preserve import Guide, apply_keep
from instructme.editing.user_audio import UserAudio
from instructme.errors import CheckpointError, InstructionError

#: Tasks the separator answers.
SEPARATED_TASKS = ("remove", "extract")
#: A split keeps a class whose extracted energy is within this many dB of the mix's.
PRESENT_DB = -35.0


@torch.no_grad()
def class_mask(separator: torch.nn.Module, model_audio: np.ndarray, instrument: str) -> Guide:
    """The separator's mask of ``instrument`` for ``model_audio: [N']`` as a :class:`Guide`
    (``keep = M [F, T]`` on the separator's STFT grid)."""
    cfg = separator.config
    try:
        index = separator.class_index(instrument)
    except KeyError:
        raise InstructionError(f"the separator does not know {instrument!r} (it knows: "
                               f"{', '.join(cfg.instruments)})") from None
    device = next(separator.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(model_audio, dtype=np.float32))[None].to(device)
    x = torch.nn.functional.pad(x, (0, max(0, cfg.n_fft - x.shape[-1])))
    spec = separator.stft(x)
    mask = separator.mask(spec, torch.tensor([index], device=device))[0]  # [F, T]
    return Guide(mask.float().cpu().numpy(), np.zeros(0, np.float32), cfg.sample_rate,
                 cfg.n_fft)


def level_db(part: np.ndarray, audio: np.ndarray) -> float:
    """The power of ``part [C, N]`` relative to ``audio [C, N]``'s, in dB (>= -120)."""
    mix_power = float(np.mean(np.square(audio, dtype=np.float64))) + 1e-12
    power = float(np.mean(np.square(part, dtype=np.float64)))
    return float(10 * np.log10(power / mix_power + 1e-12))


def sounds(part: np.ndarray, audio: np.ndarray) -> bool:
    """Whether ``part [C, N]`` is within :data:`PRESENT_DB` of ``audio [C, N]``'s power."""
    return level_db(part, audio) > PRESENT_DB


def separate(source: UserAudio, separator: torch.nn.Module, instrument: str, task: str
             ) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(output, part, found)`` of remove / extract ``instrument``: output and part
    ``[C, N]`` float32 at the user's rate and level (``part``: what was removed or
    extracted). An instrument that does not sound (``found`` False, :func:`sounds`) gives a
    silent part: extract returns silence, remove the input unchanged."""
    if task not in SEPARATED_TASKS:
        raise ValueError(f"the separator answers {SEPARATED_TASKS}, not {task!r}")
    extracted = apply_keep(source.audio, source.sample_rate,
                           class_mask(separator, source.model, instrument))
    found = sounds(extracted, source.audio)
    if not found:
        extracted = np.zeros_like(source.audio, dtype=np.float32)
    if task == "extract":
        return extracted, extracted, found
    return (source.audio - extracted).astype(np.float32), extracted, found


def absent_notice(instrument: str) -> str:
    """The one-line notice of an edit whose instrument the separator did not hear."""
    return f"no {instrument} heard in the input: its part is silent"


def split_stems(source: UserAudio, separator: torch.nn.Module | None,
                instruments: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Class -> ``[C, N]`` stem for every class (of ``instruments``, default all the
    separator knows) that sounds, plus ``"other"``: the input minus them (so the stems sum to
    the input).

    The classes' masks are queried independently, so in a bin where they add up to more
    than 1 they are divided by their sum (the masks then share the bin's energy, as in
    Wiener-style multi-source filtering; Open-Unmix, Stoter et al. 2019) and ``other`` never
    has to cancel an over-estimate.
    """
    if separator is None:
        raise CheckpointError("this pipeline has no separator/ (splitting into stems needs "
                              "one)")
    names = tuple(instruments) if instruments else tuple(separator.config.instruments)
    guides = {name: class_mask(separator, source.model, name) for name in names}
    total = np.maximum(1.0, sum(g.keep for g in guides.values()))  # [F, T]
    stems: dict[str, np.ndarray] = {}
    for name, g in guides.items():
        g.keep = g.keep / total
        part = apply_keep(source.audio, source.sample_rate, g)
        if sounds(part, source.audio):
            stems[name] = part
    rest = source.audio.astype(np.float64) - sum((s.astype(np.float64) for s in stems.values()),
                                                 np.zeros_like(source.audio, np.float64))
    stems["other"] = rest.astype(np.float32)
    return stems
