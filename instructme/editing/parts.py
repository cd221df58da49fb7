"""Edits by an editor with part targets (``EditorConfig.target == "part"``): it generates
only what is new, and the pipeline mixes that into the untouched source::

    add X             -> source + part
    replace X with Y  -> (source - separated X) + part     (the part follows X's estimate)
    remix             -> the generated mix                 (a remix's part is the whole mix)

The editor is conditioned on ``[z_src; z_follow]`` (:mod:`instructme.models.unet`): the
source mix's latent and the latent of the part it must follow, which for a replace is the
separator's estimate of the old instrument from the source mix (training mixes in the same
estimate, :mod:`instructme.training.editor`) and silence otherwise. The generated part is at
the model's rate and training level (the training targets are stems at their level in the
mix); :meth:`~instructme.editing.user_audio.UserAudio.from_model` brings it to the user's
rate, level and channels, and it is added to the user's own audio, so that what the edit
leaves alone never passes through the VAE.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from instructme.audio import peak_safe
from instructme.editing.separation import absent_notice, separate
from instructme.editing.user_audio import UserAudio
from instructme.errors import CheckpointError

if TYPE_CHECKING:
    from instructme.editing.pipeline import EditPipeline, EditResult, Round
    from instructme.editing.settings import EditSettings

#: Tasks whose output is the source plus (or instead of part of it) a generated part.
PART_TASKS = ("add", "replace")


def followed_part(pipe: EditPipeline, source: UserAudio, task: str, instrument: str | None,
                  timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(kept [C, N], follow [N'], notes)``: what of the user's audio stays (all of it, or a
    replace's source without the old instrument) and the part the editor follows at the model
    rate and level (the separator's estimate of the old instrument, or silence)."""
    follow = np.zeros_like(source.model, dtype=np.float32)
    if task != "replace":
        return source.audio.astype(np.float32), follow, []
    if pipe.separator is None:
        raise CheckpointError("this pipeline's editor generates parts: a replace needs the "
                              "stem separator (a separator/ in the pipeline folder)")
    assert instrument is not None
    t = time.perf_counter()
    kept, _, found = separate(source, pipe.separator, instrument, "remove")
    if found:
        x = torch.from_numpy(np.ascontiguousarray(source.model, dtype=np.float32))[None]
        index = torch.tensor([pipe.separator.class_index(instrument)])
        with torch.no_grad():
            follow = pipe.separator(x.to(pipe.device), index.to(pipe.device))[0]
        follow = follow.float().cpu().numpy()
    timings["separate"] = time.perf_counter() - t
    return kept, follow, [] if found else [absent_notice(instrument)]


def part_round(pipe: EditPipeline, source: UserAudio, rd: Round, cfg: EditSettings, seed: int,
               progress: Any) -> tuple[EditResult, UserAudio]:
    """One round of a part editor (stages 3-7 of :mod:`instructme.editing.pipeline`) ->
    ``(result, the next round's source)``."""
    from instructme.editing.pipeline import EditResult, _f16

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    kept, follow, notes = followed_part(pipe, source, rd.task, rd.args.get("instrument"),
                                        timings)
    src = torch.from_numpy(source.model)[None].to(pipe.device)  # [1, N']
    cond = pipe._encode(src, rd.text, timings)  # 3. encode, 4. condition
    t = time.perf_counter()
    z_follow = _f16(pipe.vae.encode_latents(torch.from_numpy(follow)[None].to(pipe.device)))
    cond.z_src = torch.cat([cond.z_src, z_follow], 1)  # [1, 2 C_z, T]
    timings["encode"] += time.perf_counter() - t
    z = pipe._sample(cond, cfg, seed, progress, timings)  # 5. sample
    y, _ = pipe._decode(z, None, src.shape[-1], timings)  # 6. decode: the part [N']
    t = time.perf_counter()
    if rd.task in PART_TASKS:  # 7. compose: the part into the user's own audio
        part_cn = source.from_model(y)
        user = peak_safe(np.nan_to_num(kept + part_cn))
        part, nxt = source.to_layout(part_cn, safe=False), source.next_round(user, None)
    else:  # a remix: the generated mix is the output
        user = peak_safe(np.nan_to_num(source.from_model(y)))
        part, nxt = None, source.next_round(user, y)
    timings["output"] = time.perf_counter() - t
    result = EditResult(source.to_layout(user), source.sample_rate, rd.text, rd.task,
                        dict(rd.args), time.perf_counter() - t0, timings, part, notes)
    return result, nxt
