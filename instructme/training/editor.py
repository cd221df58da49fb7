"""The editor U-Net's training task on cached latents (InstructME, arXiv 2308.14360: Method
and training set-up), on the shared :class:`~instructme.training.trainer.Trainer`.

Reads a latent cache (:mod:`instructme.training.editor_cache`) and minimises the diffusion
loss of :class:`~instructme.diffusion.Diffusion` for ``z_tgt`` given ``z_src``, the
instruction and the source chords, dropping the instruction (classifier-free guidance) and
the chords with the config's probabilities. An editor with ``target="part"`` learns
``z_part`` given ``[z_src; z_cond]`` on the add / replace / remix items of a cache built with
parts; a replace follows the separator's estimate of its old instrument (``z_cond_sep``) with
probability ``separated_condition``, else the true stem, so that inference (which has only
the estimate) is not out of distribution.

bf16 autocast on GPU; gradient accumulation; EMA weights
(:class:`~instructme.training.ema.DiffusersEMA`); gradient clipping; linear warm-up. Each
rank's batch, crop, dropout, timesteps and noise for step ``s`` come from generators seeded
by ``(seed, s, micro-step)``: every rank draws the same *global* batch of
``batch_size x num_processes`` items and trains on its own slice of it, so a resumed run
continues exactly and N processes of batch B train as one process of batch N x B would
(the same items, crops, dropout, timesteps and noise; DDP averages the slices' gradients).
Validation: the diffusion loss of the EMA weights on fixed items,
timesteps spread over the schedule and fixed noise (``val_loss``), also before the first
step.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from accelerate import Accelerator

from instructme.checkpoint import save_model
from instructme.config import Config
from instructme.diffusion import Diffusion
from instructme.errors import CheckpointError, ManifestError
from instructme.models.unet import EditorConfig, EditorUNet
from instructme.training.editor_cache import PART_TASKS, LatentCache
from instructme.training.ema import DiffusersEMA
from instructme.training.plots import plot_losses
from instructme.training.trainer import Schedule, Trainer, TrainTask, saved_configs, saved_state


@dataclasses.dataclass
class EditorTrainConfig(Config):
    """Optimisation settings (the model has :class:`EditorConfig`)."""

    steps: int = 50_000
    batch_size: int = 8  # per process and micro-step
    grad_accum: int = 1
    crop_seconds: float | None = None  # random crops of the cached windows (None: whole)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    mixed_precision: str = "auto"  # auto (bf16 on GPU, none on CPU) | no | bf16 | fp16
    log_every: int = 50
    save_every: int = 1_000
    val_every: int = 1_000
    val_batches: int = 4
    separated_condition: float = 0.5  # part target: p(a replace follows the separator's X)
    seed: int = 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=20, batch_size=4, lr=3e-3, warmup_steps=2, ema_decay=0.9,
                     log_every=5, save_every=10, val_every=10, val_batches=1),
        "small": dict(),
        "large": dict(steps=300_000, batch_size=32, lr=1e-4, warmup_steps=2_000,
                      ema_decay=0.9999, save_every=5_000, val_every=5_000, val_batches=16),
    }


def editor_config_for_cache(meta: dict[str, Any], preset: str, variant: str = "full",
                            **overrides: Any) -> EditorConfig:
    """The ``preset``/``variant`` editor, sized to the cache's latents, chords and text."""
    fit: dict[str, Any] = dict(latent_channels=int(meta["latent_channels"]),
                               latent_rate=float(meta["latent_rate"]),
                               text_dim=int(meta["text_dim"]),
                               text_encoder=meta["text"]["kind"],
                               text_encoder_path=meta["text"].get("path"))
    if meta.get("has_chords"):
        fit.update(chord_rate=float(meta["chord_rate"]), chord_classes=int(meta["chord_classes"]))
    try:
        cfg = EditorConfig.variant(preset, variant, **{**fit, **overrides})
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if cfg.chord_conditioning and not meta.get("has_chords"):
        raise ManifestError("the latent cache has no chord matrices (built without a chord "
                            "model): give a chord model or train the 'no-chord' variant")
    if cfg.target == "part" and not meta.get("parts"):
        raise ManifestError("the latent cache has no part latents: build it with parts "
                            "('train editor --target part' does)")
    return cfg


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the parameters (float32, CPU, name order): equal digests = equal weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _rng(seed: int, step: int, micro: int) -> np.random.Generator:
    # The trailing 0 keeps the streams of runs made when each rank drew its own batch.
    return np.random.default_rng([seed, step, micro, 0])


def _trained_items(cache: LatentCache, model_cfg: EditorConfig) -> np.ndarray:
    """Indices of the items an editor trains on: all, or for a part target the items of
    :data:`~instructme.training.editor_cache.PART_TASKS` (their true stems: ``z_cond``)."""
    if model_cfg.target != "part":
        return np.arange(len(cache), dtype=np.int64)
    keep = [i for i, it in enumerate(cache.items) if it["task"] in PART_TASKS]
    if not keep and cache.split == "train":
        raise ManifestError(f"{cache.root}: no add, replace or remix items to train on")
    return np.array(keep, dtype=np.int64)


def _mixed_precision(name: str) -> str:
    if name != "auto":
        return name
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


class EditorTask(TrainTask):
    """The editor ``model_cfg`` trained with ``cfg`` on the latent cache ``cache_dir``."""

    name = "editor"

    def __init__(self, cache_dir: str | Path, cfg: EditorTrainConfig, model_cfg: EditorConfig,
                 variant: str = "full", cpu: bool | None = None) -> None:
        self.cache_dir, self.cfg, self.model_cfg, self.variant = cache_dir, cfg, model_cfg, variant
        self.cpu = bool(cpu) if cpu is not None else not torch.cuda.is_available()
        self.configs = {"train": cfg, "editor": model_cfg}
        self.train = LatentCache(cache_dir, "train")
        try:
            self.val: LatentCache | None = LatentCache(cache_dir, "val")
        except ManifestError:
            self.val = None
        self.pool = _trained_items(self.train, model_cfg)
        self.val_pool = _trained_items(self.val, model_cfg) if self.val is not None else None
        if self.val_pool is not None and not len(self.val_pool):
            self.val, self.val_pool = None, None
        self.schedule = Schedule(steps=cfg.steps, log_every=cfg.log_every,
                                 save_every=cfg.save_every,
                                 eval_every=cfg.val_every if self.val is not None else 0,
                                 eval_at_start=self.val is not None)
        self.crop = (None if cfg.crop_seconds is None else
                     max(model_cfg.downsample_factor,
                         round(cfg.crop_seconds * model_cfg.latent_rate)))

    def accelerator_kwargs(self) -> dict[str, Any]:
        return dict(cpu=self.cpu, mixed_precision=_mixed_precision(self.cfg.mixed_precision),
                    gradient_accumulation_steps=self.cfg.grad_accum)

    def setup(self, accelerator: Accelerator) -> None:
        cfg = self.cfg
        self.accelerator = accelerator
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = EditorUNet(self.model_cfg)
        self.diffusion = Diffusion.from_config(self.model_cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                weight_decay=cfg.weight_decay, fused=True)
        self.wrapped, self.opt = accelerator.prepare(model, opt)
        self.ema = DiffusersEMA(self.wrapped.parameters(), cfg.ema_decay, power=2 / 3,
                                foreach=True)
        accelerator.register_for_checkpointing(self.ema.checkpoint_object())
        self.model = accelerator.unwrap_model(self.wrapped)
        self.wrapped.train()

    def loss(self, batch: dict[str, Any], gen: torch.Generator | None, net: torch.nn.Module,
             t: torch.Tensor | None = None) -> torch.Tensor:
        """Diffusion loss of ``net`` on ``batch`` (``z_src, z_tgt: [B, C, T]``, text tokens
        ``[B, L, D]`` and mask ``[B, L]``, chords ``[B, T_c, K]`` or None; timesteps ``t [B]``
        and ``noise`` like ``z_tgt`` from the batch, else from ``gen``)."""
        dev = self.accelerator.device
        z_src, z_tgt = batch["z_src"].to(dev), batch["z_tgt"].to(dev)
        if self.model_cfg.target == "part":
            z_src = torch.cat([z_src, batch["z_cond"].to(dev)], 1)  # [B, 2C, T]
            z_tgt = batch["z_part"].to(dev)
        text, mask = batch["text"].to(dev), batch["text_mask"].to(dev)
        chords = batch["chords"].to(dev) if batch["chords"] is not None else None
        if not self.model_cfg.chord_conditioning:
            chords = None

        def fn(z: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            return net(z, tt, z_src, text, mask, chords)

        with self.accelerator.autocast():
            return self.diffusion.training_loss(fn, z_tgt, gen, t=batch.get("t", t),
                                                noise=batch.get("noise"))

    def batch(self, step: int, micro: int) -> dict[str, Any]:
        """This rank's slice of the global batch of ``step``: items, crops, text/chord
        dropout, timesteps ``t [B]`` and noise ``[B, C, T]``."""
        cfg, mcfg, acc = self.cfg, self.model_cfg, self.accelerator
        n, b = cfg.batch_size * acc.num_processes, cfg.batch_size
        rng = _rng(cfg.seed, step, micro)
        idx = self.pool[rng.integers(0, len(self.pool), n)]
        batch: dict[str, Any] = self.train.batch(idx, self.crop, rng)
        if mcfg.target == "part" and "z_cond_sep" in batch:
            sep = torch.from_numpy(rng.random(n) < cfg.separated_condition)[:, None, None]
            batch["z_cond"] = torch.where(sep, batch.pop("z_cond_sep"), batch["z_cond"])
        keep_text = torch.from_numpy(rng.random(n) >= mcfg.text_dropout)
        batch["text_mask"] = batch["text_mask"] & keep_text[:, None]
        if batch["chords"] is not None:
            keep_chords = torch.from_numpy(rng.random(n) >= mcfg.chord_dropout)
            batch["chords"] = batch["chords"] * keep_chords[:, None, None]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch["t"] = self.diffusion.sample_timesteps(n, gen)
        batch["noise"] = torch.randn(batch["z_tgt"].shape, generator=gen)
        mine = slice(acc.process_index * b, (acc.process_index + 1) * b)
        return {k: None if v is None else v[mine] for k, v in batch.items()}

    def train_step(self, step: int) -> dict[str, float]:
        acc, cfg = self.accelerator, self.cfg
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        for group in self.opt.param_groups:
            group["lr"] = lr
        losses, gnorm = [], float("nan")
        for micro in range(cfg.grad_accum):
            batch = self.batch(step, micro)
            with acc.accumulate(self.wrapped):
                loss = self.loss(batch, None, self.wrapped)
                acc.backward(loss)
                if acc.sync_gradients:
                    gnorm = float(acc.clip_grad_norm_(self.wrapped.parameters(), cfg.grad_clip))
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        self.ema.update(self.wrapped)
        return {"loss": float(np.mean(losses)), "grad_norm": gnorm, "lr": lr}

    def evaluate(self, step: int, model: torch.nn.Module) -> dict[str, Any]:
        cfg, val, pool = self.cfg, self.val, self.val_pool
        assert val is not None and pool is not None
        n = min(len(pool), cfg.val_batches * cfg.batch_size)
        total = 0.0
        for a in range(0, n, cfg.batch_size):
            idx = pool[a:min(n, a + cfg.batch_size)].tolist()
            batch = val.batch(idx, self.crop, np.random.default_rng([cfg.seed, a]))
            t = torch.linspace(0, self.diffusion.num_train_timesteps - 1, len(idx)).long()
            gen = torch.Generator().manual_seed(a)
            total += float(self.loss(batch, gen, model, t.to(self.accelerator.device))) * len(idx)
        return {"loss": total / max(1, n)}

    def state(self) -> dict[str, Any]:
        return {"cache": str(self.cache_dir)}

    def export(self, directory: Path, step: int, final: bool) -> None:
        assert self.ema is not None
        with self.ema.applied(self.model) as model:
            save_model(model, directory, extra={"step": step, "variant": self.variant,
                                                "cache": str(self.cache_dir)})

    def plot(self, log_path: Path, png_path: Path) -> None:
        plot_losses(log_path, png_path, ("loss", "val_loss", "grad_norm"))


def train_editor(cache_dir: str | Path, out_dir: str | Path, preset: str = "small",
                 variant: str = "full", steps: int | None = None, resume: bool = False,
                 quiet: bool = False, cpu: bool | None = None,
                 editor_overrides: dict[str, Any] | None = None,
                 **train_overrides: Any) -> dict[str, Any]:
    """Train (or ``resume``) an editor on a latent cache; returns the last log record plus
    ``weights_sha256`` (this process's raw weights) and ``step``.

    ``train_overrides`` are :class:`EditorTrainConfig` fields (``batch_size``, ``grad_accum``,
    ...; on resume all but ``seed`` apply); ``editor_overrides`` are :class:`EditorConfig`
    fields (new runs). Call from every process of a distributed launch.
    """
    train_overrides = {k: v for k, v in train_overrides.items() if v is not None}
    if resume:
        saved = saved_configs(out_dir)
        cfg = EditorTrainConfig.from_dict(saved["train"])
        cfg = dataclasses.replace(cfg, **{k: v for k, v in train_overrides.items()
                                          if k != "seed"})
        model_cfg = EditorConfig.from_dict(saved["editor"])
        cache_dir = saved_state(out_dir).get("cache", cache_dir)
    else:
        try:
            cfg = EditorTrainConfig.preset(preset, **train_overrides)
        except (ValueError, TypeError) as e:
            raise CheckpointError(str(e)) from None
        model_cfg = editor_config_for_cache(LatentCache(cache_dir).meta, preset, variant,
                                            **(editor_overrides or {}))
    if steps is not None:
        cfg.steps = steps
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.steps < 0:
        raise CheckpointError("batch size, gradient accumulation and steps must be positive")
    task = EditorTask(cache_dir, cfg, model_cfg, variant, cpu)
    result = Trainer(task, out_dir, resume=resume, log=None if quiet else print).fit()
    return {**{k: v for k, v in result.items() if k != "eval"},
            "weights_sha256": weights_digest(task.model)}
