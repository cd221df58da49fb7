"""Weight averaging of VAE snapshots from one training run.

The trainer already keeps an EMA of the generator (decay 0.999: a horizon of ~1,000 steps),
but with a discriminator in the loop the EMA weights still wander from snapshot to snapshot:
in ``vae-medium``'s continuation the held-out mel distance of the snapshots at 500 / 750 /
1,000 steps went 0.161 -> 0.163 -> 0.164 with no trend. A uniform average of the
snapshots (checkpoint averaging, as in stochastic weight averaging, Izmailov et al. 2018) is
a longer-horizon average that lands where the best snapshot was, without picking a snapshot
by its score on held-out data (``models/vae-medium/README.md``).

Snapshots must share one architecture and come from one run (weights that started from the
same point and stayed close); averaging unrelated models is meaningless and is not checked
beyond the architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from instructme.checkpoint import load_model, read_config, save_model
from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE


def average_vaes(snapshots: Sequence[str | Path], out: str | Path,
                 data_dir: str | Path | None = None, fp16: bool = False,
                 seed: int = 0) -> AudioVAE:
    """Average the weights of ``snapshots`` (VAE folders) into a new folder ``out``.

    ``scaling_factor``: with ``data_dir``, re-measured as the trainer does (``1 / std`` of
    the latent means of :class:`VAETrainConfig`'s ``scale_clips`` training crops, drawn with
    ``seed + 1``); without, the mean of the snapshots' factors (exact for snapshots of a
    frozen-encoder run, whose encoder and factor never change).
    """
    if len(snapshots) < 2:
        raise CheckpointError("averaging needs at least two snapshots")
    models = [load_model(AudioVAE, s) for s in snapshots]
    arch = [dataclasses.replace(m.config, scaling_factor=1.0) for m in models]
    if any(a != arch[0] for a in arch[1:]):
        raise CheckpointError("the snapshots have different architectures; average snapshots "
                              "of one run only")
    states = [m.state_dict() for m in models]
    avg = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
               if states[0][k].is_floating_point() else states[0][k]) for k in states[0]}
    vae = models[0]
    vae.load_state_dict(avg)
    vae.eval()
    extra: dict = {"averaged_from": [str(s) for s in snapshots],
                   "steps": [read_config(s).get("_extra", {}).get("step") for s in snapshots]}
    if data_dir is not None:
        from instructme.training.vae import VAETrainConfig
        from instructme.training.vae_data import CropSampler, load_split

        cfg = VAETrainConfig()
        songs = load_split(data_dir, "train", vae.config.sample_rate)
        segment = int(round(cfg.segment_seconds * vae.config.sample_rate))
        batch = torch.from_numpy(CropSampler(songs, segment, cfg.p_mix, seed=seed + 1)
                                 .batch(cfg.scale_clips))[:, None]
        with torch.no_grad():
            mean, _ = vae.encode(batch)
        std = float(mean.std())
        extra["latent_std"] = std
        scaling = 1.0 / max(std, 1e-6)
    else:
        scaling = float(sum(m.config.scaling_factor for m in models) / len(models))
    vae.config = dataclasses.replace(vae.config, scaling_factor=scaling)
    save_model(vae, out, extra=extra, dtype=torch.float16 if fp16 else None)
    return vae
