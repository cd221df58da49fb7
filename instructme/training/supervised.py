"""The supervised task of the analysis models (chord recognizer, instrument/style classifier)
on the shared :class:`~instructme.training.trainer.Trainer`.

AdamW with a linear warm-up and cosine decay to 5 %, gradient clipping, optional EMA of the
weights and buffers (:class:`~instructme.training.ema.AveragedEMA`), batches of a dataset
whose item ``i`` is deterministic in ``i``: batch ``s`` holds items ``s*B .. s*B+B-1``, so a
resumed run continues with the same data. A model supplies its network, its dataset, its
loss ``step_fn(model, batch, step) -> (loss, scalars)`` and optionally ``evaluate(model)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from instructme.checkpoint import save_model
from instructme.config import Config
from instructme.training.ema import AveragedEMA, maybe_applied
from instructme.training.plots import plot_losses
from instructme.training.trainer import Schedule, TrainTask

StepFn = Callable[[nn.Module, Any, int], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], dict[str, Any]]


@dataclasses.dataclass
class LoopConfig(Config):
    """Optimisation and schedule of a supervised run."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0 disables EMA
    log_every: int = 50
    eval_every: int = 500  # 0: only at the end
    save_every: int = 500
    num_workers: int = 0
    seed: int = 0

    @classmethod
    def of(cls, tcfg: Any, seed: int) -> LoopConfig:
        """The loop of a model's train config (the fields both have; ``save_every``
        defaults to its ``eval_every``)."""
        shared = ("steps", "batch_size", "lr", "warmup_steps", "ema_decay", "log_every",
                  "eval_every", "num_workers")
        return cls(**{k: getattr(tcfg, k) for k in shared}, seed=seed,
                   save_every=getattr(tcfg, "save_every", tcfg.eval_every))


def lr_lambda(cfg: LoopConfig) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to 0.05 at ``cfg.steps``."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(cfg.warmup_steps, 1)
        progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


class SupervisedTask(TrainTask):
    """``model`` trained on ``dataset`` with ``step_fn``; ``configs`` are saved for resume
    (``loop`` is added as ``train``); ``extra`` goes into the exported ``config.json``."""

    def __init__(self, name: str, model: nn.Module, dataset: torch.utils.data.Dataset,
                 step_fn: StepFn, loop: LoopConfig, configs: dict[str, Config],
                 evaluate: EvalFn | None = None, extra: dict[str, Any] | None = None,
                 collate_fn: Callable | None = None, curves: tuple[str, ...] = ("loss",)
                 ) -> None:
        if len(dataset) < loop.steps * loop.batch_size:  # type: ignore[arg-type]
            raise ValueError("dataset shorter than steps * batch_size")
        self.name, self.net, self.dataset, self.step_fn = name, model, dataset, step_fn
        self.loop, self.eval_fn, self.extra = loop, evaluate, extra or {}
        self.collate_fn, self.curves = collate_fn, curves
        self.configs = {**configs, "train": loop}
        self.schedule = Schedule(steps=loop.steps, log_every=loop.log_every,
                                 save_every=loop.save_every or loop.steps or 1,
                                 eval_every=loop.eval_every if evaluate else 0,
                                 eval_at_end=evaluate is not None)

    def setup(self, accelerator: Accelerator) -> None:
        cfg, model = self.loop, self.net
        set_seed(cfg.seed)
        self.accelerator = accelerator
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
        if cfg.ema_decay > 0:
            self.ema = AveragedEMA(model, cfg.ema_decay, accelerator.device)
        self.wrapped, self.opt, self.sched = accelerator.prepare(model, opt, sched)
        if self.ema is not None:
            accelerator.register_for_checkpointing(self.ema.checkpoint_object())
        self.model = accelerator.unwrap_model(self.wrapped)

    def start(self, step: int) -> None:
        cfg = self.loop
        remaining = torch.utils.data.Subset(self.dataset, range(step * cfg.batch_size,
                                                                cfg.steps * cfg.batch_size))
        loader = torch.utils.data.DataLoader(
            remaining, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
            collate_fn=self.collate_fn, drop_last=True,
            persistent_workers=cfg.num_workers > 0)
        self.batches = iter(self.accelerator.prepare(loader))
        self.wrapped.train()

    def train_step(self, step: int) -> dict[str, float]:
        acc, cfg = self.accelerator, self.loop
        loss, scalars = self.step_fn(self.wrapped, next(self.batches), step)
        self.opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(self.wrapped.parameters(), cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": float(loss.detach()), **scalars, "lr": self.sched.get_last_lr()[0]}

    def evaluate(self, step: int, model: nn.Module) -> dict[str, Any]:
        return self.eval_fn(model) if self.eval_fn is not None else {}

    def export(self, directory: Path, step: int, final: bool) -> None:
        with maybe_applied(self.ema, self.model) as model:
            save_model(model, directory, extra={**self.extra, "step": step, "final": final})

    def plot(self, log_path: Path, png_path: Path) -> None:
        plot_losses(log_path, png_path, self.curves)
