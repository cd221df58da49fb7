"""Training loop of the editor U-Net on cached latents (InstructME, arXiv 2308.14360:
Method and training set-up).

Reads a latent cache (:mod:`instructme.training.editor_cache`) and minimises the diffusion
loss of :class:`~instructme.diffusion.Diffusion` for ``z_tgt`` given ``z_src``, the
instruction and the source chords, dropping the instruction (classifier-free guidance) and
the chords with the config's probabilities.

Hugging Face ``accelerate`` runs it unchanged on one CPU process or many GPUs (``accelerate
launch``; bf16 autocast on GPU); gradient accumulation; EMA weights
(``diffusers.training_utils.EMAModel``); gradient clipping; linear warm-up. Each rank's
batch, crop, dropout, timesteps and noise for step ``s`` come from generators seeded by
``(seed, s, micro-step, rank)``, so a resumed run continues exactly. ``OUT`` is always a
loadable editor folder (``config.json`` + ``model.safetensors``, EMA weights); the training
state (model, optimiser, EMA, RNG, step) lives apart in ``OUT/state``. Logs:
``OUT/logs.jsonl``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from instructme.checkpoint import save_model
from instructme.config import Config
from instructme.diffusion import Diffusion
from instructme.errors import CheckpointError, ManifestError
from instructme.fileio import atomic_write_json, atomic_write_jsonl, replace_dir
from instructme.models.unet import EditorConfig, EditorUNet
from instructme.training.editor_cache import LatentCache
from instructme.training.plots import plot_losses


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
    seed: int = 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=20, batch_size=4, lr=3e-3, warmup_steps=2, ema_decay=0.9,
                     log_every=5, save_every=10, val_every=10, val_batches=1),
        "small": dict(),
        "large": dict(steps=300_000, batch_size=32, lr=1e-4, warmup_steps=2_000,
                      ema_decay=0.9999, save_every=5_000, val_every=5_000, val_batches=16),
    }


class _Stop:
    """Set by SIGTERM/SIGINT so the loop saves a checkpoint and exits cleanly."""

    requested = False

    @classmethod
    def handler(cls, signum: int, frame: Any) -> None:
        cls.requested = True


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
    return cfg


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the parameters (float32, CPU, name order): equal digests = equal weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _rng(seed: int, step: int, micro: int, rank: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, micro, rank])


def _mixed_precision(name: str) -> str:
    if name != "auto":
        return name
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def train_editor(cache_dir: str | Path, out_dir: str | Path, preset: str = "small",
                 variant: str = "full", steps: int | None = None, resume: bool = False,
                 quiet: bool = False, cpu: bool | None = None,
                 editor_overrides: dict[str, Any] | None = None,
                 **train_overrides: Any) -> dict[str, Any]:
    """Train (or ``resume``) an editor on a latent cache; returns the last log record plus
    ``weights_sha256`` (this process's raw weights) and ``step``.

    ``train_overrides`` are :class:`EditorTrainConfig` fields (``batch_size``, ``grad_accum``,
    ...); ``editor_overrides`` are :class:`EditorConfig` fields. Call from every process of a
    distributed launch.
    """
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    out = Path(out_dir)
    state_dir = out / "state"
    if resume and not (state_dir / "trainer.json").is_file():
        if not quiet:
            print(f"no checkpoint in {out}: starting a new run")
        resume = False
    if state_dir.exists() and not resume:
        raise CheckpointError(f"{out} already holds a training run; pass --resume to continue "
                              "it or choose another --out")
    train_overrides = {k: v for k, v in train_overrides.items() if v is not None}
    if resume:
        cfg = EditorTrainConfig.from_json_file(state_dir / "train_config.json")
        cfg = dataclasses.replace(cfg, **{k: v for k, v in train_overrides.items()
                                          if k != "seed"})
        model_cfg = EditorConfig.from_json_file(state_dir / "editor_config.json")
        trainer_state = json.loads((state_dir / "trainer.json").read_text())
        cache_dir = trainer_state.get("cache", cache_dir)
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

    train = LatentCache(cache_dir, "train")
    try:
        val: LatentCache | None = LatentCache(cache_dir, "val")
    except ManifestError:
        val = None
    crop = (None if cfg.crop_seconds is None
            else max(model_cfg.downsample_factor, round(cfg.crop_seconds * model_cfg.latent_rate)))

    accelerator = Accelerator(cpu=bool(cpu) if cpu is not None else not torch.cuda.is_available(),
                              mixed_precision=_mixed_precision(cfg.mixed_precision),
                              gradient_accumulation_steps=cfg.grad_accum)
    rank, main = accelerator.process_index, accelerator.is_main_process
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = EditorUNet(model_cfg)
    diffusion = Diffusion.from_config(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                            weight_decay=cfg.weight_decay, fused=True)
    model, opt = accelerator.prepare(model, opt)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3,
                   foreach=True)
    accelerator.register_for_checkpointing(ema)
    dev = accelerator.device

    step = 0
    if resume:
        accelerator.load_state(str(state_dir))
        step = int(trainer_state["step"])
        if main:
            _truncate_logs(out / "logs.jsonl", step)
            if not quiet:
                print(f"resumed {out} at step {step}")
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "logs.jsonl").unlink(missing_ok=True)
    unwrapped = accelerator.unwrap_model(model)

    def run_loss(batch: dict[str, Any], gen: torch.Generator, net: torch.nn.Module,
                 t: torch.Tensor | None = None) -> torch.Tensor:
        z_src, z_tgt = batch["z_src"].to(dev), batch["z_tgt"].to(dev)
        text, mask = batch["text"].to(dev), batch["text_mask"].to(dev)
        chords = batch["chords"].to(dev) if batch["chords"] is not None else None
        if not model_cfg.chord_conditioning:
            chords = None

        def fn(z: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            return net(z, tt, z_src, text, mask, chords)

        with accelerator.autocast():
            return diffusion.training_loss(fn, z_tgt, gen, t=t)

    def train_batch(micro: int) -> dict[str, Any]:
        rng = _rng(cfg.seed, step, micro, rank)
        idx = rng.integers(0, len(train), cfg.batch_size)
        batch = train.batch(idx, crop, rng)
        keep_text = torch.from_numpy(rng.random(len(idx)) >= model_cfg.text_dropout)
        batch["text_mask"] = batch["text_mask"] & keep_text[:, None]
        if batch["chords"] is not None:
            keep_chords = torch.from_numpy(rng.random(len(idx)) >= model_cfg.chord_dropout)
            batch["chords"] = batch["chords"] * keep_chords[:, None, None]
        batch["gen"] = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return batch

    @torch.no_grad()
    def validate() -> float:
        """EMA weights; fixed items, timesteps spread over the schedule, fixed noise."""
        assert val is not None
        ema.store(unwrapped.parameters())
        ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        try:
            n = min(len(val), cfg.val_batches * cfg.batch_size)
            losses = []
            for a in range(0, n, cfg.batch_size):
                idx = list(range(a, min(n, a + cfg.batch_size)))
                rng = np.random.default_rng([cfg.seed, a])
                batch = val.batch(idx, crop, rng)
                t = torch.linspace(0, diffusion.num_train_timesteps - 1, len(idx)).long()
                gen = torch.Generator().manual_seed(a)
                losses.append(float(run_loss(batch, gen, unwrapped, t.to(dev))) * len(idx))
            return sum(losses) / max(1, n)
        finally:
            ema.restore(unwrapped.parameters())
            unwrapped.train()

    def save_checkpoint() -> None:
        tmp = out / "state.tmp"
        accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            atomic_write_json(tmp / "trainer.json", {"step": step, "cache": str(cache_dir)})
            atomic_write_json(tmp / "train_config.json", cfg.to_dict())
            atomic_write_json(tmp / "editor_config.json", model_cfg.to_dict())
            replace_dir(tmp, state_dir)
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
            try:
                save_model(unwrapped, out, extra={"step": step, "variant": variant,
                                                  "cache": str(cache_dir)})
            finally:
                ema.restore(unwrapped.parameters())
            plot_losses(out / "logs.jsonl", out / "loss.png", ("loss", "val_loss", "grad_norm"))
        accelerator.wait_for_everyone()

    def log(record: dict[str, Any]) -> None:
        if not main:
            return
        with open(out / "logs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if not quiet:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.items() if k != "time"), flush=True)

    in_main_thread = threading.current_thread() is threading.main_thread()
    old_handlers = ({s: signal.signal(s, _Stop.handler) for s in (signal.SIGTERM, signal.SIGINT)}
                    if in_main_thread else {})
    _Stop.requested = False
    losses: list[float] = []
    gnorms: list[float] = []
    t0 = time.perf_counter()
    last: dict[str, Any] = {"step": step}
    saved = step if resume else -1
    samples_per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    model.train()
    try:
        if val is not None and step == 0 and cfg.steps > 0:  # the untrained baseline
            if main:
                log({"step": 0, "time": time.time(), "val_loss": validate()})
            accelerator.wait_for_everyone()
        while step < cfg.steps:
            if accelerator.num_processes > 1:  # every rank must stop at the same step
                flag = torch.tensor([float(_Stop.requested)], device=dev)
                _Stop.requested = bool(accelerator.reduce(flag, "sum").item() > 0)
            if _Stop.requested:
                break
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            for group in opt.param_groups:
                group["lr"] = lr
            for micro in range(cfg.grad_accum):
                batch = train_batch(micro)
                with accelerator.accumulate(model):
                    loss = run_loss(batch, batch["gen"], model)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        gnorms.append(float(accelerator.clip_grad_norm_(model.parameters(),
                                                                        cfg.grad_clip)))
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
            ema.step(model.parameters())
            step += 1
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"non-finite loss at step {step}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                dt = time.perf_counter() - t0
                mean_loss = accelerator.reduce(torch.tensor([np.mean(losses)], device=dev),
                                               "mean").item()
                n_steps = len(losses) // cfg.grad_accum
                last = {"step": step, "time": time.time(), "loss": float(mean_loss),
                        "grad_norm": float(np.mean(gnorms)), "lr": lr,
                        "samples_per_s": n_steps * samples_per_step / dt}
                log(last)
                losses, gnorms, t0 = [], [], time.perf_counter()
            if val is not None and step % cfg.val_every == 0:
                if main:
                    log({"step": step, "time": time.time(), "val_loss": validate()})
                accelerator.wait_for_everyone()
            if step % cfg.save_every == 0:
                save_checkpoint()
                saved = step
        if saved != step or not (out / "config.json").is_file():
            save_checkpoint()
        if _Stop.requested and main and not quiet:
            print(f"stopped at step {step}; continue with --resume")
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
    return {**last, "step": step, "weights_sha256": weights_digest(unwrapped)}


def _truncate_logs(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint being resumed (e.g. after a kill -9)."""
    if not path.is_file():
        return
    keep = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    atomic_write_jsonl(path, [r for r in keep if r.get("step", 0) <= step])
