"""The audio VAE's training task (InstructME's latent space, arXiv 2308.14360, VAE E/D) on
the shared :class:`~instructme.training.trainer.Trainer`.

One step: the generator objective of :mod:`instructme.training.vae_losses` (reconstruction,
KL, sine peaks; after ``disc_start`` steps also adversarial and feature matching), then,
once the discriminator is on, its hinge step. EMA of the generator weights
(:class:`~instructme.training.ema.DiffusersEMA`); gradient clipping; the batch source is a
seeded :class:`~instructme.training.vae_data.CropSampler` whose position is saved with each
checkpoint. The exported folder (EMA weights) carries the latent ``scaling_factor`` measured
on training crops; an evaluation writes validation reconstructions to
``OUT/samples/step_NNNNNNN/`` (logged as ``val_mel``); with ``snapshot_every``, loadable EMA
snapshots go to ``OUT/snapshots/`` (for :mod:`~instructme.training.vae_average`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from torch import nn

from instructme.checkpoint import load_model, save_model
from instructme.config import Config
from instructme.dataset.audio_folder import load_audio_folder
from instructme.errors import CheckpointError
from instructme.models.discriminator import Discriminator, DiscriminatorConfig, discriminator_loss
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import grow_vae
from instructme.training.ema import DiffusersEMA
from instructme.training.trainer import Schedule, Trainer, TrainTask, saved_configs
from instructme.training.vae_data import CropSampler, fixed_clips, load_split
from instructme.training.vae_losses import ReconstructionLoss, generator_step_losses
from instructme.training.vae_plots import plot_vae_losses, save_reconstructions


@dataclasses.dataclass
class VAETrainConfig(Config):
    """Optimisation settings (the model and discriminator have their own configs)."""

    steps: int = 20_000
    batch_size: int = 8
    segment_seconds: float = 1.024
    lr: float = 4e-4
    betas: tuple[float, float] = (0.8, 0.99)
    warmup_steps: int = 200
    #: The last ``decay_steps`` steps decay the learning rate (cosine) to ``lr_final`` x lr.
    decay_steps: int = 0
    lr_final: float = 0.05
    grad_clip: float = 10.0
    w_mel: float = 15.0
    w_stft: float = 1.0
    w_kl: float = 1e-4
    #: Extra weight of the mel bands centred under 500 Hz in the mel loss (1 = none).
    low_band_weight: float = 1.0
    #: Weight of the sine head's peak losses (models with a sinusoidal low band only), and
    #: how far under a frame's loudest bin a spectral peak still counts as a partial.
    w_sine: float = 1.0
    sine_floor_db: float = -60.0
    w_adv: float = 1.0
    w_fm: float = 2.0
    disc_start: int = 2_000
    ema_decay: float = 0.999
    p_mix: float = 0.5
    log_every: int = 25
    save_every: int = 500
    #: Keep a loadable EMA snapshot every N steps in ``OUT/snapshots/`` (0 = none).
    snapshot_every: int = 0
    sample_every: int = 1_000
    val_clips: int = 4
    val_seconds: float = 5.0
    scale_clips: int = 32
    seed: int = 0
    #: Imported recorded music (``instructme data import-audio``) drawn with ``p_extra``.
    extra_audio: str | None = None
    p_extra: float = 0.0
    #: A VAE folder whose weights (and model config) a new run starts from.
    init: str | None = None
    #: Train the decoder only: the init's encoder and ``scaling_factor`` are kept exactly
    #: (the latent space an editor was trained in does not move).
    freeze_encoder: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=4, batch_size=2, segment_seconds=0.25, warmup_steps=1, disc_start=2,
                     log_every=1, save_every=2, sample_every=2, val_clips=1, val_seconds=0.5,
                     scale_clips=2),
        "small": dict(),
        "medium": dict(),
        "large": dict(steps=400_000, batch_size=32, segment_seconds=2.048, disc_start=20_000,
                      ema_decay=0.9999, save_every=5_000, sample_every=10_000, val_clips=8),
    }


def lr_factor(cfg: VAETrainConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, constant, then (the last
    ``decay_steps`` steps before ``steps``) cosine decay to ``lr_final``."""
    factor = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    start = cfg.steps - cfg.decay_steps
    if cfg.decay_steps > 0 and step >= start:
        p = min(1.0, (step - start) / cfg.decay_steps)
        factor *= cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * p))
    return factor


class VAETask(TrainTask):
    """The VAE (``vae_cfg``) and its discriminator (``disc_cfg``) trained on ``data_dir``."""

    name = "vae"

    def __init__(self, data_dir: str | Path, cfg: VAETrainConfig, vae_cfg: VAEConfig,
                 disc_cfg: DiscriminatorConfig, init_vae: AudioVAE | None = None,
                 log: Any = print) -> None:
        self.cfg, self.vae_cfg, self.disc_cfg, self.init_vae = cfg, vae_cfg, disc_cfg, init_vae
        self.log = log
        self.configs = {"train": cfg, "vae": vae_cfg, "disc": disc_cfg}
        self.schedule = Schedule(steps=cfg.steps, log_every=cfg.log_every,
                                 save_every=cfg.save_every, eval_every=cfg.sample_every,
                                 snapshot_every=cfg.snapshot_every)
        torch.manual_seed(cfg.seed)
        sr = vae_cfg.sample_rate
        train_songs = load_split(data_dir, "train", sr)
        extra = load_audio_folder(cfg.extra_audio, "train", sr) if cfg.extra_audio else None
        val_songs = train_songs  # no validation manifest: show training songs instead
        if (Path(data_dir) / "manifests" / "val.jsonl").is_file():  # a corrupt one: an error
            val_songs = load_split(data_dir, "val", sr) or train_songs
        segment = int(round(cfg.segment_seconds * sr))
        self.sampler = CropSampler(train_songs, segment, cfg.p_mix, seed=cfg.seed, extra=extra,
                                   p_extra=cfg.p_extra)
        self.val = fixed_clips(val_songs, cfg.val_clips, cfg.val_seconds, sr, stems_too=True)
        scale_sampler = CropSampler(train_songs, segment, cfg.p_mix, seed=cfg.seed + 1)
        self.scale_batch = torch.from_numpy(scale_sampler.batch(cfg.scale_clips))

    def setup(self, accelerator: Accelerator) -> None:
        cfg = self.cfg
        self.accelerator = accelerator
        vae = AudioVAE(self.vae_cfg)
        if self.init_vae is not None:
            load_init_weights(vae, self.init_vae)
            if self.log:
                self.log(f"initialised the VAE from {cfg.init} (a new discriminator and "
                         f"optimiser; {vae.num_parameters:,} parameters)")
        if cfg.freeze_encoder:
            if cfg.init is None:
                raise CheckpointError("freeze_encoder needs an init VAE (the encoder to keep)")
            for p in encoder_parameters(vae):
                p.requires_grad_(False)
        disc = Discriminator(self.disc_cfg)
        recon = ReconstructionLoss(self.vae_cfg.sample_rate, cfg.low_band_weight)
        opt_g = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=cfg.lr,
                                  betas=cfg.betas)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=cfg.betas)
        sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: lr_factor(cfg, s))
        (self.vae, self.disc, self.recon, self.opt_g, self.opt_d,
         self.sched_g) = accelerator.prepare(vae, disc, recon, opt_g, opt_d, sched_g)
        self.ema = DiffusersEMA(self.vae.parameters(), cfg.ema_decay, power=3 / 4)
        accelerator.register_for_checkpointing(self.ema.checkpoint_object())
        self.model = accelerator.unwrap_model(self.vae)

    def train_step(self, step: int) -> dict[str, float]:
        acc, cfg = self.accelerator, self.cfg
        self.vae.train()
        x = torch.from_numpy(self.sampler.batch(cfg.batch_size))[:, None].to(acc.device)
        total, terms, d_inputs = generator_step_losses(
            self.vae, self.disc if step >= cfg.disc_start else None, self.recon, x, cfg)
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(total)
        gnorm = acc.clip_grad_norm_(self.vae.parameters(), cfg.grad_clip)
        self.opt_g.step()
        self.sched_g.step()
        self.ema.update(self.vae)
        if d_inputs is not None:
            recon_d, real_logits = d_inputs
            fake_logits, _ = self.disc(recon_d)
            loss_d = discriminator_loss(real_logits, fake_logits)
            self.opt_d.zero_grad(set_to_none=True)
            acc.backward(loss_d)
            acc.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
            self.opt_d.step()
            terms["disc"] = loss_d
        return {**{k: float(v.detach()) for k, v in terms.items()},
                "total": float(total.detach()), "grad_norm": float(gnorm),
                "lr": self.sched_g.get_last_lr()[0]}

    def evaluate(self, step: int, model: nn.Module) -> dict[str, Any]:
        return {"mel": save_reconstructions(model, self.val,
                                            self.out / "samples" / f"step_{step:07d}")}

    def state(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.sampler.set_state(state["sampler"])

    @torch.no_grad()
    def export(self, directory: Path, step: int, final: bool) -> None:
        """The EMA weights with ``scaling_factor = 1 / std(latent means)`` of the training
        crops (a frozen encoder keeps its own: its latent space is fixed)."""
        vae = self.model
        with self.ema.applied(vae):
            vae.eval()
            mean, _ = vae.encode(self.scale_batch.to(next(vae.parameters()).device))
            std = float(mean.std())
            scaling = (vae.config.scaling_factor if self.cfg.freeze_encoder
                       else 1.0 / max(std, 1e-6))
            original = vae.config
            vae.config = dataclasses.replace(original, scaling_factor=scaling)
            try:
                save_model(vae, directory, extra={"step": step, "latent_std": std})
            finally:
                vae.config = original

    def plot(self, log_path: Path, png_path: Path) -> None:
        plot_vae_losses(log_path, png_path)


def train_vae(data_dir: str | Path, out_dir: str | Path, preset: str | None = None,
              steps: int | None = None, resume: bool = False, quiet: bool = False,
              model_overrides: dict[str, Any] | None = None, decay_steps: int | None = None,
              **overrides: Any) -> dict[str, Any]:
    """Train (or resume) a VAE on ``data_dir``; returns the last logged record.

    ``preset`` (default ``small``) names the model and training presets. With ``init`` (a
    trained VAE folder) and no ``preset`` the model is the init's; with a ``preset`` whose
    decoder is wider or deeper (e.g. ``medium`` from ``small``), the init's weights are grown
    into it without changing its output (:func:`~instructme.models.vae_grow.grow_vae`).
    ``overrides`` change :class:`VAETrainConfig` fields, ``model_overrides`` :class:`VAEConfig`
    fields of the preset (new runs only; a resumed run keeps its saved configs, except
    ``steps`` and ``decay_steps``: a run can be extended and end with a learning-rate decay).
    """
    if resume:
        saved = saved_configs(out_dir)
        cfg = VAETrainConfig.from_dict(saved["train"])
        vae_cfg = VAEConfig.from_dict(saved["vae"])
        disc_cfg = DiscriminatorConfig.from_dict(saved["disc"])
    else:
        name = preset or "small"
        cfg = VAETrainConfig.preset(name, **overrides)
        vae_cfg = VAEConfig.preset(name, **(model_overrides or {}))
        disc_cfg = DiscriminatorConfig.preset(
            name if name in DiscriminatorConfig.PRESETS else "small")  # CPU decoders: small
    if steps is not None:
        cfg.steps = steps
    if decay_steps is not None:
        cfg.decay_steps = decay_steps
    init_vae = None
    if cfg.init is not None and not resume:
        init_vae = load_model(AudioVAE, cfg.init)
        if preset is None:  # the init's own architecture
            vae_cfg = dataclasses.replace(init_vae.config, **(model_overrides or {}))
        else:  # the preset's architecture, grown from the init when it is bigger
            if vae_cfg != dataclasses.replace(init_vae.config, scaling_factor=1.0):
                init_vae = grow_vae(init_vae, vae_cfg, seed=cfg.seed)
            vae_cfg = init_vae.config
    log = None if quiet else print
    task = VAETask(data_dir, cfg, vae_cfg, disc_cfg, init_vae, log=log)
    result = Trainer(task, out_dir, resume=resume, log=log).fit()
    return {k: v for k, v in result.items() if k != "eval"}


def load_init_weights(vae: AudioVAE, init: AudioVAE) -> None:
    """Copy ``init``'s weights into ``vae``; a sinusoidal low band that ``init`` lacks keeps
    its fresh initialisation (the encoder's bass view starts at zero: same latents)."""
    missing, unexpected = vae.load_state_dict(init.state_dict(), strict=False)
    new = [k for k in missing if not k.startswith(SINE_PARAMETERS)]
    if new or unexpected:
        raise CheckpointError(f"--init does not fit this model: missing {new[:3]}, "
                              f"unexpected {list(unexpected)[:3]}")


#: Parameter-name prefixes of the sinusoidal low band (absent from older VAEs).
SINE_PARAMETERS = ("enc_bass.", "sine_head.")


def encoder_parameters(vae: AudioVAE) -> list[nn.Parameter]:
    """The parameters that define the latent space (everything before ``z``)."""
    return [p for name, p in vae.named_parameters() if name.startswith("enc_")]
