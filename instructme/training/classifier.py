"""Train and evaluate the instrument-activity / style classifier on rendered stems.

Examples (InstructME evaluation: the instruction-accuracy judge) are crops of songs mixed from
1..all of their stem slots (a slot may sound as its re-instrumented ``replace`` variant),
with random gains (:mod:`instructme.training.stem_mixes`). Instrument targets are the
classes of the included stems that are active in the crop; the style target is the song's
arranger style when at least ``style_min_fraction`` of its slots sound. Music21 corpus songs
have no style: they are ignored by the style loss (no "classical corpus" class), but train
the instrument head.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from instructme.config import Config
from instructme.errors import CheckpointError
from instructme.models.classifier import ClassifierConfig, InstrumentClassifier, default_styles
from instructme.models.classifier_grow import grow_classifier
from instructme.training.stem_mixes import MixSpec, SongRef, draw_mix, has_split, load_songs
from instructme.training.supervised import LoopConfig, SupervisedTask
from instructme.training.trainer import Trainer, resumed_config

IGNORE_STYLE = -100
#: Curves of the training log drawn into ``loss.png`` (validation numbers every eval_every).
LOSS_CURVES = ("loss_inst", "loss_style", "val_macro_f1", "val_style_accuracy")


@dataclasses.dataclass
class ClassifierTrainConfig(Config):
    """Trainer settings (the model's own settings are a :class:`ClassifierConfig` preset)."""

    steps: int = 4000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    crop_seconds: float = 4.0
    full_mix_prob: float = 0.2
    style_min_fraction: float = 0.5
    style_weight: float = 0.5
    eval_every: int = 1000
    eval_items: int = 512  # held-out mixes per evaluation
    log_every: int = 50
    num_workers: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=40, batch_size=8, crop_seconds=2.0, warmup_steps=5, ema_decay=0.0,
                     eval_every=0, eval_items=16, log_every=10, num_workers=0),
        "small": dict(),
        "large": dict(steps=30000, batch_size=64, warmup_steps=500, eval_every=3000,
                      eval_items=2048, num_workers=4),
    }


class ClassifierCrops(torch.utils.data.Dataset):
    """Item ``i``: ``(audio float32 [n], instruments float32 [K] 0/1, style int64)``."""

    def __init__(self, songs: list[SongRef], model_cfg: ClassifierConfig, spec: MixSpec,
                 length: int, seed: int = 0, style_min_fraction: float = 0.5) -> None:
        self.songs, self.spec, self.length, self.seed = songs, spec, length, seed
        self.inst_index = {c: i for i, c in enumerate(model_cfg.instruments)}
        self.style_index = {s: i for i, s in enumerate(model_cfg.styles)}
        self.style_min_fraction = style_min_fraction

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        mix = draw_mix(self.songs, self.spec, rng, augment=True)
        target = torch.zeros(len(self.inst_index))
        for stem, active in zip(mix.stems, mix.active):
            if active and stem.instrument in self.inst_index:
                target[self.inst_index[stem.instrument]] = 1.0
        style = self.style_index.get(mix.song.style or "", IGNORE_STYLE)
        if mix.slot_fraction < self.style_min_fraction:
            style = IGNORE_STYLE
        return torch.from_numpy(mix.audio), target, torch.tensor(style, dtype=torch.long)


def classifier_loss(model: nn.Module, batch: Any, style_weight: float
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """Binary cross-entropy over instruments + ``style_weight`` x style cross-entropy."""
    audio, inst, style = batch
    out = model(audio)
    loss_inst = nn.functional.binary_cross_entropy_with_logits(out["instruments"], inst)
    valid = style != IGNORE_STYLE
    if valid.any():
        loss_style = nn.functional.cross_entropy(out["style"][valid], style[valid])
    else:
        loss_style = out["style"].sum() * 0.0
    return loss_inst + style_weight * loss_style, {"loss_inst": float(loss_inst.detach()),
                                                    "loss_style": float(loss_style.detach())}


def _predictions(model: InstrumentClassifier, dataset: torch.utils.data.Dataset,
                 batch_size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Instrument probabilities ``[M, K]``, targets ``[M, K]`` (bool), predicted and true
    style ``[M]`` (``IGNORE_STYLE`` where a mix has none) over ``dataset``."""
    probs, targets, pred_style, true_style = [], [], [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for audio, inst, style in loader:
        pred = model.predict(audio)
        probs.append(pred["instruments"].cpu().numpy())
        targets.append(inst.numpy() > 0.5)
        pred_style.append(pred["style"].argmax(-1).cpu().numpy())
        true_style.append(style.numpy())
    return (np.concatenate(probs), np.concatenate(targets), np.concatenate(pred_style),
            np.concatenate(true_style))


def _f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = float((pred & true).sum())
    denom = float(pred.sum() + true.sum())
    return 2 * tp / denom if denom else 0.0


def calibrate_thresholds(model: InstrumentClassifier, dataset: torch.utils.data.Dataset,
                         grid: np.ndarray | None = None) -> tuple[float, ...]:
    """Per-class presence thresholds that maximise F1 on ``dataset`` (held-out mixes).

    The grid is 0.05..0.95 in steps of 0.025; among equally good thresholds the one nearest
    0.5 wins; a class absent from ``dataset`` keeps 0.5.
    """
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3) if grid is None else grid
    order = grid[np.argsort(np.abs(grid - 0.5), kind="stable")]
    probs, targets, _, _ = _predictions(model, dataset)
    out = []
    for j in range(probs.shape[1]):
        if not targets[:, j].any():
            out.append(0.5)
            continue
        scores = [_f1(probs[:, j] >= t, targets[:, j]) for t in order]
        out.append(float(order[int(np.argmax(scores))]))
    return tuple(out)


def evaluate_classifier(model: InstrumentClassifier, dataset: torch.utils.data.Dataset,
                        batch_size: int = 16, threshold: float | None = None
                        ) -> dict[str, Any]:
    """Per-class precision/recall/F1, macro-F1, style accuracy.

    ``threshold`` None uses the model's per-class thresholds (calibrated, else 0.5). Macro-F1
    averages the classes that occur in the evaluation set.
    """
    names = model.instrument_names
    probs, t, pred_style, true_style = _predictions(model, dataset, batch_size)
    thr = model.thresholds if threshold is None else np.full(len(names), float(threshold))
    p = probs >= thr[None, :]
    tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
    valid = true_style != IGNORE_STYLE
    style_hits, style_n = int((pred_style == true_style)[valid].sum()), int(valid.sum())
    per_class = {}
    for j, name in enumerate(names):
        support = int(tp[j] + fn[j])
        prec = tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] > 0 else 0.0
        rec = tp[j] / support if support > 0 else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        per_class[name] = {"precision": float(prec), "recall": float(rec), "f1": float(f1),
                           "support": support, "false_positives": int(fp[j]),
                           "threshold": float(thr[j])}
    seen = [v["f1"] for v in per_class.values() if v["support"] > 0]
    return {"macro_f1": float(np.mean(seen)) if seen else float("nan"),
            "style_accuracy": style_hits / style_n if style_n else float("nan"),
            "style_items": style_n, "items": len(dataset),  # type: ignore[arg-type]
            "per_class": per_class}


def format_classifier_report(metrics: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate_classifier` results."""
    lines = [f"{'class':<12} {'F1':>6} {'prec':>6} {'recall':>6} {'support':>8} {'false+':>7} "
             f"{'thresh':>6}"]
    for name, v in metrics["per_class"].items():
        if v["support"] == 0 and v["false_positives"] == 0:
            continue
        f1 = f"{v['f1']:6.3f}" if v["support"] else f"{'-':>6}"
        lines.append(f"{name:<12} {f1} {v['precision']:6.3f} {v['recall']:6.3f} "
                     f"{v['support']:8d} {v['false_positives']:7d} {v['threshold']:6.3f}")
    lines.append(f"{'macro-F1':<12} {metrics['macro_f1']:6.3f}   ({metrics['items']} mixes; "
                 "classes with support)")
    if metrics["style_items"]:
        lines.append(f"{'style acc':<12} {metrics['style_accuracy']:6.3f}   "
                     f"({metrics['style_items']} mixes with a style)")
    else:
        lines.append(f"{'style acc':<12} {'n/a':>6}   (no mix with a style)")
    return "\n".join(lines)


def styles_for(songs: list[SongRef]) -> tuple[str, ...]:
    """The arranger's styles plus any other style found in the data (stable order)."""
    styles = list(default_styles())
    for s in sorted({song.style for song in songs if song.style}):
        if s not in styles:
            styles.append(s)
    return tuple(styles)


def heldout_set(data: str | Path, model_cfg: ClassifierConfig, split: str, items: int,
                crop_seconds: float, seed: int = 1234, style_min_fraction: float = 0.5
                ) -> ClassifierCrops:
    """Fixed random stem-subset mixes of the songs of ``split`` (deterministic)."""
    songs = load_songs(data, (split,))
    spec = MixSpec(crop_seconds=crop_seconds, full_mix_prob=0.2)
    return ClassifierCrops(songs, model_cfg, spec, items, seed, style_min_fraction)


def _widths(channels: tuple[int, ...] | None, embed_dim: int | None, init: Any,
            resume: bool) -> dict[str, Any]:
    """The model widths asked for (``ClassifierConfig`` fields), checked against the run."""
    if init is not None and resume:
        raise ValueError("--init starts a new run: it cannot be combined with --resume")
    if resume and (channels is not None or embed_dim is not None):
        raise ValueError("--channels / --embed-dim size a new model: not with --resume")
    if channels is not None and (not channels or min(channels) < 1):
        raise ValueError("--channels needs one positive width per conv block")
    if embed_dim is not None and embed_dim < 1:
        raise ValueError("--embed-dim must be positive")
    widths: dict[str, Any] = {}
    if channels is not None:
        widths["channels"] = tuple(channels)
    if embed_dim is not None:
        widths["embed_dim"] = embed_dim
    return widths


def train_classifier(data: str | Path, out: str | Path, preset: str = "small",
                     steps: int | None = None, resume: bool = False, seed: int = 0,
                     model_config: ClassifierConfig | None = None,
                     train_config: ClassifierTrainConfig | None = None,
                     init: str | Path | None = None, lr: float | None = None,
                     channels: tuple[int, ...] | None = None, embed_dim: int | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train an :class:`InstrumentClassifier` on ``data`` (train split); evaluate on val.

    ``init``: a classifier model folder to start from (a warm start: its config, weights and
    calibrated thresholds; a fresh optimiser and learning-rate schedule over ``steps``).
    ``lr`` overrides the preset's peak learning rate. ``channels`` / ``embed_dim`` override
    the preset's widths; with ``init`` they grow its model, function-preserving
    (:func:`~instructme.models.classifier_grow.grow_classifier`).
    """
    from instructme.checkpoint import load_model

    tcfg = train_config or ClassifierTrainConfig.preset(preset)
    if steps is not None:
        tcfg = dataclasses.replace(tcfg, steps=steps)
    if lr is not None:
        if not lr > 0:
            raise ValueError("learning rate must be positive")
        tcfg = dataclasses.replace(tcfg, lr=lr)
    widths = _widths(channels, embed_dim, init, resume)
    train_songs = load_songs(data, ("train",))
    start: InstrumentClassifier | None = None
    if init is not None:
        start = load_model(InstrumentClassifier, init)
        mcfg = start.config
        if widths and any(widths[k] != getattr(mcfg, k) for k in widths):
            try:
                start = grow_classifier(start, dataclasses.replace(mcfg, **widths), seed=seed)
            except CheckpointError as e:
                raise ValueError(f"{init}: {e}") from None
            log(f"grew {init} to channels {start.config.channels}, embedding "
                f"{start.config.embed_dim} (same function)")
            mcfg = start.config
        missing = sorted({s.style for s in train_songs if s.style} - set(mcfg.styles))
        if missing:
            raise ValueError(f"{init}: its style head lacks the dataset's styles "
                             f"{', '.join(missing)}")
    elif resume:
        mcfg = resumed_config(out, "classifier", ClassifierConfig)
    else:
        mcfg = model_config or ClassifierConfig.preset(preset)
        mcfg = dataclasses.replace(mcfg, styles=styles_for(train_songs), **widths)
    if train_songs[0].sample_rate != mcfg.sample_rate:
        raise ValueError(f"dataset is {train_songs[0].sample_rate} Hz, model expects "
                         f"{mcfg.sample_rate} Hz")
    spec = MixSpec(crop_seconds=tcfg.crop_seconds, full_mix_prob=tcfg.full_mix_prob)
    dataset = ClassifierCrops(train_songs, mcfg, spec, tcfg.steps * tcfg.batch_size, seed,
                              tcfg.style_min_fraction)
    val = None
    if has_split(data, "val"):  # a corrupt val split is an error, not a skipped evaluation
        val = heldout_set(data, mcfg, "val", tcfg.eval_items, tcfg.crop_seconds,
                          style_min_fraction=tcfg.style_min_fraction)
    else:
        log(f"{data}: no val split, training without validation")
    torch.manual_seed(seed)
    model = InstrumentClassifier(mcfg)
    if start is not None:
        model.load_state_dict(start.state_dict())
        log(f"initialised from {init}")
    log(f"classifier: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(train_songs)} train songs, styles {', '.join(mcfg.styles)}")

    def step_fn(m: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return classifier_loss(m, batch, tcfg.style_weight)

    def evaluate(m: nn.Module) -> dict[str, Any]:
        return evaluate_classifier(m, val)  # type: ignore[arg-type]

    loop = LoopConfig.of(tcfg, seed)
    task = SupervisedTask("classifier", model, dataset, step_fn, loop, {"classifier": mcfg},
                          evaluate=evaluate if val is not None else None,
                          extra={"data": str(data), "train": tcfg.to_dict(), "seed": seed,
                                 **({"init": str(init)} if init is not None else {})},
                          curves=LOSS_CURVES)
    return Trainer(task, out, resume=resume, log=log).fit()["eval"]
