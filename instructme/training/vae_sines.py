"""Teach a trained VAE's latents the bass partials: the first stage of adding a sine band.

A VAE without a sinusoidal low band (:mod:`instructme.models.vae_sines`) has latents that
do not say precisely where a held bass note's partials lie: its decoder could not use that
(it draws held notes on the 31.25 Hz latent grid), so training never asked for it. Simply
adding the band and training on (``instructme train vae --init M --sine-slots 45``) teaches
it too slowly: after 1,000 steps with the audio and adversarial losses the sine loss had
gone 3.5 -> 2.1 and held tones 0.60 -> 0.68 (``models/vae-medium/README.md``).

This stage trains only what the sine band depends on, fast and directly: the encoder (with
its new view of the bass), the decoder's latent-rate blocks and the sine head, on the sine
head's peak loss (:func:`~instructme.training.vae.sine_loss`) plus ``keep_weight`` x the
mean squared distance of the latent means from the init's (so the latents change only as
much as the bass needs, and the frame-rate decoder still fits them roughly). No iSTFT, no
discriminator. It runs on the shared trainer (:mod:`instructme.training.trainer`): resumable,
logged to ``OUT/logs.jsonl``. The frame-rate decoder then adapts to the
new latents in a second stage, ``instructme train vae --init OUT --freeze-encoder``.

InstructME (arXiv 2308.14360) edits in the latent space of this autoencoder (method
overview, VAE E/D); a new latent space needs its editor retrained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from instructme.checkpoint import load_model, read_config, save_model
from instructme.config import Config
from instructme.dataset.audio_folder import load_audio_folder
from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE
from instructme.models.vae_sines import SinePrediction
from instructme.training.plots import plot_losses
from instructme.training.trainer import Schedule, Trainer, TrainTask, saved_configs
from instructme.training.vae import load_init_weights
from instructme.training.vae_data import CropSampler, load_split
from instructme.training.vae_losses import sine_loss

#: Parameter-name prefixes trained in this stage.
TRAINED = ("enc_", "dec_in", "dec_latent", "sine_head")


@dataclasses.dataclass
class SineStageConfig(Config):
    """Settings of the sine stage (the model is the init's plus ``sine_slots`` sines)."""

    init: str = ""
    data: str = ""
    sine_slots: int = 45
    steps: int = 2500
    lr: float = 1e-3
    keep_weight: float = 1.0
    batch_size: int = 8
    segment: int = 16384
    extra_audio: str | None = None
    p_extra: float = 0.5
    seed: int = 0
    warmup_steps: int = 50
    log_every: int = 50
    save_every: int = 500


class SineStageTask(TrainTask):
    """The init VAE grown by a sine band; only :data:`TRAINED` parameters learn."""

    name = "vae-sines"

    def __init__(self, cfg: SineStageConfig) -> None:
        self.cfg = cfg
        self.configs = {"train": cfg}
        self.schedule = Schedule(steps=cfg.steps, log_every=cfg.log_every,
                                 save_every=cfg.save_every)
        self.source = load_model(AudioVAE, cfg.init).eval()
        if self.source.config.sine_slots and self.source.config.sine_slots != cfg.sine_slots:
            raise CheckpointError(f"{cfg.init} already has a sine band of "
                                  f"{self.source.config.sine_slots} slots")
        for p in self.source.parameters():
            p.requires_grad_(False)
        sr = self.source.config.sample_rate
        extra = (load_audio_folder(cfg.extra_audio, "train", sr)
                 if cfg.extra_audio is not None else None)
        self.sampler = CropSampler(load_split(cfg.data, "train", sr), cfg.segment, 0.5,
                                   seed=cfg.seed, extra=extra,
                                   p_extra=cfg.p_extra if extra else 0.0)

    def setup(self, accelerator: Accelerator) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        vae = AudioVAE(dataclasses.replace(self.source.config, sine_slots=cfg.sine_slots))
        load_init_weights(vae, self.source)
        for n, p in vae.named_parameters():
            p.requires_grad_(n.startswith(TRAINED))
        self.trained = [p for p in vae.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(self.trained, lr=cfg.lr)
        self.wrapped, self.opt = accelerator.prepare(vae, opt)
        self.model, self.acc = accelerator.unwrap_model(self.wrapped), accelerator

    def train_step(self, step: int) -> dict[str, float]:
        """Sine peak loss + ``keep_weight`` x the latent means' squared shift from the
        init's, on crops ``x: [B, N]``."""
        cfg, vae = self.cfg, self.model
        x = torch.from_numpy(self.sampler.batch(cfg.batch_size)).to(self.acc.device)
        mean, logvar = vae.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        pred = SinePrediction(*vae.sine_head(vae.dec_latent(vae.dec_in(z))))
        l_sine = sine_loss(pred, x, vae.config)
        with torch.no_grad():
            target = self.source.encode(x)[0]
        keep = (mean - target).pow(2).mean()
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad()
        self.acc.backward(l_sine + cfg.keep_weight * keep)
        self.acc.clip_grad_norm_(self.trained, 10.0)
        self.opt.step()
        return {"sine": float(l_sine.detach()), "keep": float(keep.detach()), "lr": lr}

    def state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sampler.set_state(state["sampler"])

    def export(self, directory: Path, step: int, final: bool) -> None:
        cfg = self.cfg
        history = read_config(cfg.init).get("_extra", {}).get("history", cfg.init)
        record = {k: v for k, v in self.last_log.items() if k != "time"}
        save_model(self.model, directory, extra={
            "history": f"{history}; + a {cfg.sine_slots}-slot sine band, {step} steps of "
                       "train vae-sines", "sine_stage": record})

    def plot(self, log_path: Path, png_path: Path) -> None:
        plot_losses(log_path, png_path, ("sine", "keep"))


def train_vae_sines(init: str | Path, data_dir: str | Path, out: str | Path,
                    resume: bool = False, quiet: bool = False, steps: int | None = None,
                    **settings: Any) -> dict[str, Any]:
    """Add a sine band to the VAE in ``init`` and train it (see the module docstring);
    writes a loadable VAE folder to ``out``; returns the last log record. ``settings`` are
    :class:`SineStageConfig` fields (new runs; a resumed run keeps its own but ``steps``)."""
    if resume:
        cfg = SineStageConfig.from_dict(saved_configs(out)["train"])
    else:
        cfg = SineStageConfig(init=str(init), data=str(data_dir),
                              **{k: (str(v) if k == "extra_audio" and v is not None else v)
                                 for k, v in settings.items()})
    if steps is not None:
        cfg.steps = steps
    task = SineStageTask(cfg)
    result = Trainer(task, out, resume=resume, log=None if quiet else print).fit()
    return {k: v for k, v in result.items() if k != "eval"}
