"""A small supervised training loop on Hugging Face ``accelerate`` (analysis models).

Used by the chord recognizer and the instrument/style classifier trainers: AdamW with a
linear warm-up and cosine decay, gradient clipping, optional EMA weights
(``torch.optim.swa_utils.AveragedModel``), periodic evaluation, JSONL logs and resumable
state. One process on CPU; the same code runs data-parallel on several GPUs.

Output folder layout::

    OUT/config.json, OUT/model.safetensors   the model (EMA weights when EMA is on)
    OUT/state/                               accelerate state (model, optimiser, scheduler,
                                             EMA, RNG) + progress.json, for --resume
    OUT/train_log.jsonl                      one line per log/eval event
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instructme.checkpoint import save_model
from instructme.errors import CheckpointError
from instructme.fileio import atomic_write_json

StepFn = Callable[[nn.Module, Any, int], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], dict[str, Any]]


@dataclasses.dataclass
class LoopConfig:
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


def _lr_lambda(cfg: LoopConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(cfg.warmup_steps, 1)
        progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


def train_loop(model: nn.Module, dataset: torch.utils.data.Dataset, step_fn: StepFn,
               out_dir: str | Path, cfg: LoopConfig, evaluate: EvalFn | None = None,
               resume: bool = False, extra: dict[str, Any] | None = None,
               collate_fn: Callable | None = None, log: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """Train ``model`` for ``cfg.steps`` optimiser steps; returns the last evaluation.

    ``dataset[i]`` must be deterministic in ``i`` (``len >= steps * batch_size``): batch
    ``s`` holds items ``s*B .. s*B+B-1``, so a resumed run continues with the same data.
    ``step_fn(model, batch, step) -> (loss, scalars)``; ``evaluate(model) -> metrics``.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    out = Path(out_dir)
    state_dir = out / "state"
    progress_path = state_dir / "progress.json"
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    accelerator = Accelerator()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    ema = None
    if cfg.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                            use_buffers=True)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    step = 0
    if resume:
        if not progress_path.is_file():
            raise CheckpointError(f"{out}: nothing to resume (no state/progress.json)")
        accelerator.load_state(str(state_dir))
        step = int(json.loads(progress_path.read_text())["step"])
        log(f"resumed at step {step}")
    elif progress_path.is_file():
        raise CheckpointError(f"{out}: holds a training run; pass --resume or use another --out")

    if len(dataset) < cfg.steps * cfg.batch_size:  # type: ignore[arg-type]
        raise ValueError("dataset shorter than steps * batch_size")
    remaining = torch.utils.data.Subset(dataset, range(step * cfg.batch_size,
                                                       cfg.steps * cfg.batch_size))
    loader = torch.utils.data.DataLoader(
        remaining, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
        collate_fn=collate_fn, drop_last=True, persistent_workers=cfg.num_workers > 0)
    loader = accelerator.prepare(loader)

    def eval_model() -> nn.Module:
        m = ema.module if ema is not None else accelerator.unwrap_model(model)
        return m

    def save(final: bool = False) -> None:
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return
        accelerator.save_state(str(state_dir))
        atomic_write_json(progress_path, {"step": step, "steps": cfg.steps})
        unwrapped = accelerator.unwrap_model(model)
        sd = ema.module.state_dict() if ema is not None else None
        save_model(unwrapped, out, extra={**(extra or {}), "step": step, "final": final},
                   state_dict=sd)

    def write_log(rec: dict[str, Any]) -> None:
        if accelerator.is_main_process:
            with open(out / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    metrics: dict[str, Any] = {}
    t0, running, n_running = time.perf_counter(), {}, 0
    model.train()
    for batch in loader:
        loss, scalars = step_fn(model, batch, step)
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(accelerator.unwrap_model(model))
        step += 1
        scalars = {"loss": float(loss.detach()), **scalars}
        for k, v in scalars.items():
            running[k] = running.get(k, 0.0) + v
        n_running += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {"step": step, "lr": sched.get_last_lr()[0],
                   "sec_per_step": (time.perf_counter() - t0) / n_running,
                   **{k: v / n_running for k, v in running.items()}}
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in rec.items()))
            write_log(rec)
            t0, running, n_running = time.perf_counter(), {}, 0
        if evaluate is not None and cfg.eval_every and step % cfg.eval_every == 0 \
                and step < cfg.steps:
            metrics = _evaluate(evaluate, eval_model(), step, log, write_log)
            model.train()
        if cfg.save_every and step % cfg.save_every == 0 and step < cfg.steps:
            save()
    if evaluate is not None:
        metrics = _evaluate(evaluate, eval_model(), step, log, write_log)
    save(final=True)
    return metrics


def _evaluate(evaluate: EvalFn, model: nn.Module, step: int, log: Callable[[str], None],
              write_log: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    was = model.training
    model.eval()
    with torch.no_grad():
        metrics = evaluate(model)
    model.train(was)
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    log(f"eval step={step} " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in flat.items()))
    write_log({"step": step, "eval": metrics})
    return metrics
