"""The one trainer every model trains on (audiocraft's ``StandardSolver`` is the model).

A model supplies a :class:`TrainTask`: how to build itself (networks, optimisers, EMA), its
batch source, one optimisation step, an optional evaluation and how to export a loadable
model folder. :class:`Trainer` owns everything else, the same way for every model, on
Hugging Face ``accelerate`` (one CPU process, or ``accelerate launch`` on many GPUs):

- the run folder (below) and its three refusals, each a one-line
  :class:`~instructme.errors.CheckpointError`: a new run into a folder that holds a run
  (pass ``--resume``), a new run into a folder that holds a model but no run (nothing is
  overwritten), ``--resume`` of a folder with no run;
- resume: the ``accelerate`` state (models, optimisers, schedulers, EMA, RNG) plus the step
  and the task's own state; a resumed run continues exactly, and the log records written
  after the checkpoint (a kill) are dropped, so every step is logged once;
- atomic checkpoints: a new state is written to ``state.tmp`` (``trainer.json`` last, the
  mark of a complete state) and swapped in; a crash at any moment leaves a complete state
  that the next ``--resume`` finds (:func:`recover_state`), never deleting the only one;
- SIGINT / SIGTERM: the step in flight finishes, a checkpoint is written, the run exits
  (every rank at the same step);
- logs (window means of the step's scalars), evaluation with the EMA weights swapped in,
  the exported model, snapshots and the loss plot on their schedules.

Run folder (the same for every model)::

    OUT/config.json, OUT/model.safetensors   the model, always loadable (EMA weights)
    OUT/state/                               accelerate state + trainer.json (step, task
                                             state) + <name>_config.json per config
    OUT/logs.jsonl                           one record per log or evaluation event
    OUT/loss.png                             curves of the logged terms
    OUT/snapshots/step_NNNNNNN/              loadable snapshots (when the task keeps them)

See ``docs/ARCHITECTURE.md`` (the trainer contract) for how to add a model.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from accelerate import Accelerator

from instructme.checkpoint import CONFIG_NAME, read_config
from instructme.config import Config
from instructme.errors import CheckpointError
from instructme.fileio import atomic_write_json, atomic_write_jsonl
from instructme.training.ema import EMA, maybe_applied

STATE = "state"
TRAINER_FILE = "trainer.json"
LOG_FILE = "logs.jsonl"
#: The previous supervised trainer's layout (chord / classifier runs): still resumable.
LEGACY_PROGRESS = "progress.json"
LEGACY_LOG = "train_log.jsonl"

C = TypeVar("C", bound=Config)


@dataclass
class Schedule:
    """When the trainer logs, evaluates, saves and snapshots (in optimiser steps).

    ``eval_every`` 0 evaluates only where ``eval_at_start`` / ``eval_at_end`` say."""

    steps: int
    log_every: int
    save_every: int
    eval_every: int = 0
    eval_at_start: bool = False
    eval_at_end: bool = False
    snapshot_every: int = 0


class TrainTask:
    """What a model supplies to :class:`Trainer`. Subclasses set ``name`` (the model's kind,
    recorded in ``trainer.json``), ``configs`` (saved to ``state/<key>_config.json``, read
    back on resume) and ``schedule``, and implement :meth:`setup` and :meth:`train_step`."""

    name: str = "model"
    configs: dict[str, Config]
    schedule: Schedule
    #: The module exported and evaluated (unwrapped), and its weight average, set by setup.
    model: torch.nn.Module
    ema: EMA | None = None
    #: The run folder, set by the trainer before :meth:`setup`; the last log record, kept
    #: up to date by the trainer (for exports that record it).
    out: Path
    last_log: dict[str, Any]

    def accelerator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the :class:`~accelerate.Accelerator` (precision, ...)."""
        return {}

    def setup(self, accelerator: Accelerator) -> None:
        """Build and ``accelerator.prepare`` the networks and optimisers; register every
        stateful object for checkpointing (the EMA's :meth:`checkpoint_object` too)."""
        raise NotImplementedError

    def start(self, step: int) -> None:
        """Prepare the batch source for a run that continues at ``step`` (after resume)."""

    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser step (``step`` counts from 0); returns its scalars (``lr`` among
        them). A non-finite value of any but ``grad_norm`` stops the run."""
        raise NotImplementedError

    def evaluate(self, step: int, model: torch.nn.Module) -> dict[str, Any]:
        """Metrics of ``model`` (EMA weights swapped in, eval mode, no grad); logged as
        ``val_<name>``."""
        return {}

    def state(self) -> dict[str, Any]:
        """JSON state of the task's own (e.g. a sampler's position), saved with each
        checkpoint."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` on resume."""

    def export(self, directory: Path, step: int, final: bool) -> None:
        """Write a loadable model folder (EMA weights) to ``directory``."""
        raise NotImplementedError

    def plot(self, log_path: Path, png_path: Path) -> None:
        """Draw the loss curves (after each checkpoint)."""


class StopFlag:
    """Set by SIGINT/SIGTERM while installed, so the loop saves and exits cleanly."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def recover_state(out: Path) -> Path | None:
    """The run's complete state folder, after finishing a swap a crash interrupted.

    A state is complete when it holds ``trainer.json`` (written last). When ``state/`` is
    not, the newest complete one of ``state.tmp`` (written, not yet swapped in) and
    ``state.old`` (swapped out, not yet removed) takes its place. Nothing is deleted."""
    state = out / STATE
    if (state / TRAINER_FILE).is_file() or (state / LEGACY_PROGRESS).is_file():
        return state
    found = [(int(json.loads((d / TRAINER_FILE).read_text())["step"]), d)
             for d in (out / f"{STATE}.tmp", out / f"{STATE}.old") if (d / TRAINER_FILE).is_file()]
    if not found:
        return None
    best = max(found, key=lambda x: x[0])[1]
    if state.exists():
        state.rename(out / f"{STATE}.broken-{int(time.time())}")
    best.rename(state)
    return state


def saved_configs(out: str | Path) -> dict[str, dict[str, Any]]:
    """The configs a run saved (``state/<key>_config.json``), for rebuilding it on resume;
    a one-line error when ``out`` holds no run."""
    state = recover_state(Path(out))
    if state is None:
        raise CheckpointError(f"{out}: nothing to resume (no training state in {out}/{STATE}); "
                              "start a new run without --resume")
    return {p.name[: -len("_config.json")]: json.loads(p.read_text())
            for p in sorted(state.glob("*_config.json"))}


def saved_state(out: str | Path) -> dict[str, Any]:
    """The task state of the run in ``out`` (``trainer.json``'s ``state``; an earlier
    trainer kept its keys at the top level)."""
    saved_configs(out)  # the one-line error when there is no run
    info = Trainer.read_progress(Path(out) / STATE)
    return info.get("state", info)


def resumed_config(out: str | Path, key: str, cls: type[C]) -> C:
    """The config ``key`` of the run in ``out`` as ``cls``; a run of the earlier supervised
    trainer saved none, and its model folder's ``config.json`` says it instead."""
    configs = saved_configs(out)
    if key in configs:
        return cls.from_dict(configs[key])
    d = read_config(out)
    d.pop("model_class", None)
    d.pop("_extra", None)
    return cls.from_dict(d)


def check_run_folder(out: Path, resume: bool) -> Path | None:
    """The state folder to resume (``None`` for a new run); refuses, with a one-line error,
    what would lose work: see the module docstring."""
    state = recover_state(out) if out.exists() else None
    if resume and state is None:
        raise CheckpointError(f"{out}: nothing to resume (no training state in {out}/{STATE}); "
                              "start a new run without --resume")
    if not resume and state is not None:
        raise CheckpointError(f"{out} already holds a training run; pass --resume to continue "
                              "it or choose another --out")
    if not resume and (out / CONFIG_NAME).is_file():
        raise CheckpointError(f"{out} holds a model and no training run: choose another --out "
                              "(nothing was written)")
    return state


class Trainer:
    """Runs a :class:`TrainTask` into the run folder ``out`` (see the module docstring)."""

    def __init__(self, task: TrainTask, out: str | Path, resume: bool = False,
                 log: Callable[[str], None] | None = print) -> None:
        self.task, self.out, self.resume = task, Path(out), resume
        task.out, task.last_log = self.out, {}
        self.echo = log
        self.state_dir = check_run_folder(self.out, resume)
        self.step = 0
        self.stop = StopFlag()

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to ``schedule.steps``; returns the last log record, the last evaluation
        (``eval``) and the ``step`` reached."""
        task, sched = self.task, self.task.schedule
        self.accelerator = acc = Accelerator(**task.accelerator_kwargs())
        task.setup(acc)
        self._begin()
        task.start(self.step)
        window: dict[str, list[float]] = {}
        last: dict[str, Any] = {"step": self.step}
        metrics: dict[str, Any] = {}
        saved, evaluated, t0 = self.step, -1, time.perf_counter()
        with self.stop.installed():
            if sched.eval_at_start and self.step == 0 and sched.steps > 0:
                metrics, evaluated = self._evaluate(), 0
            while self.step < sched.steps and not self._stop_requested():
                scalars = task.train_step(self.step)
                self.step += 1
                for k, v in scalars.items():
                    window.setdefault(k, []).append(float(v))
                self._check_finite(scalars)
                if self.step % sched.log_every == 0 or self.step == sched.steps:
                    last = self._log_window(window, time.perf_counter() - t0)
                    window, t0 = {}, time.perf_counter()
                if sched.eval_every and self.step % sched.eval_every == 0:
                    metrics, evaluated = self._evaluate(), self.step
                if self.step % sched.save_every == 0 and self.step < sched.steps:
                    self._save(final=False)
                    saved = self.step
                if sched.snapshot_every and self.step % sched.snapshot_every == 0:
                    if acc.is_main_process:
                        task.export(self.out / "snapshots" / f"step_{self.step:07d}", self.step,
                                    final=False)
            done = self.step >= sched.steps
            if done and sched.eval_at_end and evaluated != self.step:
                metrics = self._evaluate()
            if saved != self.step or not (self.out / CONFIG_NAME).is_file():
                self._save(final=done)
        if self.stop.requested:
            self._say(f"stopped at step {self.step}; continue with --resume")
        return {**last, "step": self.step, "eval": metrics}

    def _begin(self) -> None:
        acc = self.accelerator
        if self.state_dir is not None:
            acc.load_state(str(self.state_dir))
            info = self.read_progress(self.state_dir)
            self.step = int(info["step"])
            self.task.load_state(info.get("state", info))
            if acc.is_main_process:
                self._adopt_legacy_log()
                truncate_logs(self.out / LOG_FILE, self.step)
            self._say(f"resumed {self.out} at step {self.step}")
        elif acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / LOG_FILE).unlink(missing_ok=True)
        acc.wait_for_everyone()

    @staticmethod
    def read_progress(state: Path) -> dict[str, Any]:
        path = state / TRAINER_FILE
        if not path.is_file():  # a run of the earlier supervised trainer
            path = state / LEGACY_PROGRESS
        return json.loads(path.read_text())

    def _adopt_legacy_log(self) -> None:
        legacy = self.out / LEGACY_LOG
        if legacy.is_file() and not (self.out / LOG_FILE).is_file():
            legacy.rename(self.out / LOG_FILE)

    def _stop_requested(self) -> bool:
        acc = self.accelerator
        if acc.num_processes > 1:  # every rank must stop at the same step
            flag = torch.tensor([float(self.stop.requested)], device=acc.device)
            self.stop.requested = bool(acc.reduce(flag, "sum").item() > 0)
        return self.stop.requested

    def _check_finite(self, scalars: dict[str, float]) -> None:
        bad = {k: v for k, v in scalars.items() if k != "grad_norm" and not math.isfinite(v)}
        if bad:
            raise FloatingPointError(f"non-finite loss at step {self.step}: {bad}")

    # -- logs, evaluation, checkpoints -------------------------------------------------
    def _log_window(self, window: dict[str, list[float]], seconds: float) -> dict[str, Any]:
        acc = self.accelerator
        means = {k: float(np.mean(v)) for k, v in window.items()}
        if acc.num_processes > 1 and means:
            keys = sorted(means)
            t = acc.reduce(torch.tensor([means[k] for k in keys], device=acc.device), "mean")
            means = dict(zip(keys, (float(x) for x in t.tolist())))
        n = len(next(iter(window.values()), []))
        record = {"step": self.step, "time": time.time(), "steps_per_s": n / max(seconds, 1e-9),
                  **means}
        self._write(record)
        self.task.last_log = record
        return record

    def _write(self, record: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        self._say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.items() if k != "time" and not isinstance(v, dict)))

    def _evaluate(self) -> dict[str, Any]:
        """The task's metrics on the main process (EMA weights, eval mode, no grad)."""
        acc, task = self.accelerator, self.task
        metrics: dict[str, Any] = {}
        if acc.is_main_process:
            was = task.model.training
            with maybe_applied(task.ema, task.model) as model, torch.no_grad():
                model.eval()
                try:
                    metrics = task.evaluate(self.step, model)
                finally:
                    model.train(was)
            if metrics:
                self._write({"step": self.step, "time": time.time(),
                             **{f"val_{k}": v for k, v in metrics.items()}})
        acc.wait_for_everyone()
        return metrics

    def _save(self, final: bool) -> None:
        """Checkpoint to ``state.tmp`` (``trainer.json`` last), swap it in, export."""
        acc, task = self.accelerator, self.task
        tmp, state, old = (self.out / f"{STATE}.tmp", self.out / STATE,
                           self.out / f"{STATE}.old")
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            for key, cfg in task.configs.items():
                atomic_write_json(tmp / f"{key}_config.json", cfg.to_dict())
            atomic_write_json(tmp / TRAINER_FILE, {"step": self.step, "model": task.name,
                                                   "state": task.state()})
            shutil.rmtree(old, ignore_errors=True)
            if state.exists():
                state.rename(old)
            tmp.rename(state)
            shutil.rmtree(old, ignore_errors=True)
            task.export(self.out, self.step, final)
            task.plot(self.out / LOG_FILE, self.out / "loss.png")
        acc.wait_for_everyone()

    def _say(self, message: str) -> None:
        if self.echo is not None and self.accelerator.is_main_process:
            self.echo(message)


def truncate_logs(path: Path, step: int) -> None:
    """Drop log records written after the checkpoint being resumed (e.g. after a kill -9)."""
    if not path.is_file():
        return
    keep = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    atomic_write_jsonl(path, [r for r in keep if r.get("step", 0) <= step])
