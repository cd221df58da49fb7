"""Train and evaluate the stem separator on rendered stems (exact targets).

An example is a random stem-subset crop of a training song (:mod:`instructme.training.
stem_mixes`, with per-stem and mix gains) and a class to separate: usually one that sounds
in the crop, sometimes (``absent_prob``) one that is not in the mix at all, whose target is
silence. The target is the sum of the crop's stems of that class, exactly as mixed. The loss
is the L1 distance of the masked magnitudes to the target's magnitudes at the model's STFT
plus, weighted by ``sisdr_weight``, the negative SI-SDR of the extracted waveform (clamped,
so silent targets do not dominate). Runs on the shared trainer
(:class:`~instructme.training.supervised.SupervisedTask`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import auraloss
import numpy as np
import torch
from torch import nn

from instructme.config import Config
from instructme.models.separator import Separator, SeparatorConfig
from instructme.training.stem_mixes import MixSpec, SongRef, draw_mix, has_split, load_songs
from instructme.training.supervised import LoopConfig, SupervisedTask
from instructme.training.trainer import Trainer, resumed_config

_SISDR = auraloss.time.SISDRLoss(zero_mean=True, reduction="none")
LOSS_CURVES = ("loss", "l1", "sisdr", "val_extract_sisdr", "val_remove_sisdr")


@dataclasses.dataclass
class SeparatorTrainConfig(Config):
    """Trainer settings (the model's are a :class:`SeparatorConfig` preset)."""

    steps: int = 20_000
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    crop_seconds: float = 4.0
    full_mix_prob: float = 0.5
    absent_prob: float = 0.1
    sisdr_weight: float = 0.05
    eval_every: int = 1000
    save_every: int = 250
    eval_items: int = 128
    log_every: int = 50
    num_workers: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=20, batch_size=4, crop_seconds=1.0, warmup_steps=2, ema_decay=0.0,
                     eval_every=0, save_every=10, eval_items=4, log_every=5, num_workers=0),
        "small": dict(),
        "large": dict(steps=200_000, batch_size=32, crop_seconds=6.0, eval_every=5000,
                      save_every=2000, eval_items=512, num_workers=4),
    }


class SeparationCrops(torch.utils.data.Dataset):
    """Item ``i``: ``(mix float32 [n], target float32 [n], class int64)``, a pure function
    of ``(seed, i)``."""

    def __init__(self, songs: list[SongRef], model_cfg: SeparatorConfig, spec: MixSpec,
                 length: int, seed: int = 0, absent_prob: float = 0.1) -> None:
        self.songs, self.spec, self.length, self.seed = songs, spec, length, seed
        self.classes = model_cfg.instruments
        self.absent_prob = absent_prob

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        mix = draw_mix(self.songs, self.spec, rng, augment=True, keep_parts=True)
        assert mix.parts is not None
        sounding = sorted({s.instrument for s, a in zip(mix.stems, mix.active)
                           if a and s.instrument in self.classes})
        absent = [c for c in self.classes if c not in {s.instrument for s in mix.stems}]
        if absent and (not sounding or rng.random() < self.absent_prob):
            target_class = str(rng.choice(absent))
        else:
            target_class = str(rng.choice(sounding))
        target = np.zeros_like(mix.audio)
        for stem, part in zip(mix.stems, mix.parts):
            if stem.instrument == target_class:
                target += part
        return (torch.from_numpy(mix.audio), torch.from_numpy(target),
                torch.tensor(self.classes.index(target_class)))


def si_sdr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB (Le Roux et al., 2019) of ``est`` against ``ref``
    (``[B, N]`` each, ``ref`` not silent) -> ``[B]``, with ``auraloss`` (differentiable)."""
    return -_SISDR(est, ref)


def separator_loss(model: nn.Module, batch: Any, sisdr_weight: float
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Magnitude L1 at the model's STFT + ``sisdr_weight`` x negative clamped SI-SDR."""
    mix, target, classes = batch
    net = model.module if hasattr(model, "module") else model
    spec = net.stft(mix)
    mask = net.mask(spec, classes)
    est_spec = mask * spec
    l1 = (est_spec.abs() - net.stft(target).abs()).abs().mean()
    est = net.istft(est_spec, mix.shape[-1])
    sounding = target.pow(2).mean(-1) > 1e-8
    sdr = si_sdr(est[sounding], target[sounding]).clamp(max=30.0).mean() if sounding.any() \
        else est.sum() * 0.0
    loss = l1 - sisdr_weight * sdr
    return loss, {"l1": float(l1.detach()), "sisdr": float(sdr.detach())}


def ideal_ratio_mask(model: Separator, mix: torch.Tensor, target: torch.Tensor
                     ) -> torch.Tensor:
    """The extract answer of the ideal ratio mask ``|T| / (|T| + |R|)`` from the true
    stems (``R = mix - target``) at the model's STFT: the limit of any real mask. ``[B, N]``."""
    spec, t, r = model.stft(mix), model.stft(target).abs(), model.stft(mix - target).abs()
    return model.istft(t / (t + r).clamp_min(1e-8) * spec, mix.shape[-1])


@torch.no_grad()
def evaluate_separator(model: Separator, dataset: torch.utils.data.Dataset,
                       batch_size: int = 8, per_class: bool = False) -> dict[str, Any]:
    """Mean SI-SDR (dB) of extract and remove on ``dataset`` (sounding targets only), beside
    doing nothing (the mix as the answer) and the ideal ratio mask; with ``per_class`` also
    ``per_class: {class: {extract, remove, count}}``. A remove counts as closer to its
    target than doing nothing in ``remove_better``: the share of examples."""
    model.eval()
    names = ("extract", "remove", "extract_nothing", "remove_nothing", "extract_irm",
             "remove_irm")
    rows: dict[str, list[float]] = {k: [] for k in names}
    by_class: dict[str, dict[str, list[float]]] = {}
    better: list[bool] = []
    for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        mix, target, classes = (torch.stack(x) for x in zip(*items))
        keep = (target.pow(2).mean(-1) > 1e-8) & ((mix - target).pow(2).mean(-1) > 1e-8)
        if not keep.any():
            continue
        mix, target, classes = mix[keep], target[keep], classes[keep]
        est, irm = model(mix, classes), ideal_ratio_mask(model, mix, target)
        scores = {"extract": si_sdr(est, target), "remove": si_sdr(mix - est, mix - target),
                  "extract_nothing": si_sdr(mix, target),
                  "remove_nothing": si_sdr(mix, mix - target),
                  "extract_irm": si_sdr(irm, target), "remove_irm": si_sdr(mix - irm,
                                                                            mix - target)}
        for k, v in scores.items():
            rows[k] += v.tolist()
        better += (scores["remove"] > scores["remove_nothing"]).tolist()
        for i, c in enumerate(classes.tolist()):
            d = by_class.setdefault(model.config.instruments[c], {"extract": [], "remove": []})
            d["extract"].append(float(scores["extract"][i]))
            d["remove"].append(float(scores["remove"][i]))
    out: dict[str, Any] = {f"{k}_sisdr": float(np.mean(v)) if v else float("nan")
                           for k, v in rows.items()}
    out["remove_better"] = float(np.mean(better)) if better else float("nan")
    if per_class:
        out["per_class"] = {c: {"extract": float(np.mean(d["extract"])),
                                "remove": float(np.mean(d["remove"])),
                                "count": len(d["extract"])} for c, d in sorted(by_class.items())}
    return out


def heldout_set(data: str | Path, model_cfg: SeparatorConfig, split: str, items: int,
                crop_seconds: float, seed: int = 4321, absent_prob: float = 0.0
                ) -> SeparationCrops:
    """Fixed separation examples: crops of the full mixes of the songs of ``split``
    (``absent_prob=1``: each queries a class the mix does not have, where there is one)."""
    songs = load_songs(data, (split,))
    spec = MixSpec(crop_seconds=crop_seconds, full_mix_prob=1.0, use_variants=False,
                   mix_gain_db=(-6.0, 0.0))
    return SeparationCrops(songs, model_cfg, spec, items, seed, absent_prob=absent_prob)


def train_separator(data: str | Path, out: str | Path, preset: str = "small",
                    steps: int | None = None, resume: bool = False, seed: int = 0,
                    train_config: SeparatorTrainConfig | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a :class:`Separator` on ``data`` (train split), evaluated on val songs."""
    tcfg = train_config or SeparatorTrainConfig.preset(preset)
    if steps is not None:
        tcfg = dataclasses.replace(tcfg, steps=steps)
    mcfg = (resumed_config(out, "separator", SeparatorConfig) if resume
            else SeparatorConfig.preset(preset))
    train_songs = load_songs(data, ("train",))
    if train_songs[0].sample_rate != mcfg.sample_rate:
        raise ValueError(f"dataset is {train_songs[0].sample_rate} Hz, model expects "
                         f"{mcfg.sample_rate} Hz")
    spec = MixSpec(crop_seconds=tcfg.crop_seconds, full_mix_prob=tcfg.full_mix_prob,
                   exclude_drums_only=False)
    dataset = SeparationCrops(train_songs, mcfg, spec, tcfg.steps * tcfg.batch_size, seed,
                              tcfg.absent_prob)
    val: SeparationCrops | None = None
    if has_split(data, "val"):  # a corrupt val split is an error, not a skipped evaluation
        val = heldout_set(data, mcfg, "val", tcfg.eval_items, tcfg.crop_seconds)
    else:
        log(f"{data}: no val split, training without validation")
    torch.manual_seed(seed)
    model = Separator(mcfg)
    log(f"separator: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(train_songs)} train songs, {len(model.bands)} bands")

    def step_fn(m: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return separator_loss(m, batch, tcfg.sisdr_weight)

    def evaluate(m: nn.Module) -> dict[str, Any]:
        return evaluate_separator(m, val)  # type: ignore[arg-type]

    loop = LoopConfig.of(tcfg, seed)
    task = SupervisedTask("separator", model, dataset, step_fn, loop, {"separator": mcfg},
                          evaluate=evaluate if val is not None else None,
                          extra={"data": str(data), "train": tcfg.to_dict(), "seed": seed},
                          curves=LOSS_CURVES)
    return Trainer(task, out, resume=resume, log=log).fit()["eval"]
