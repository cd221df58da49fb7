"""Train and evaluate the chord recognizer on rendered songs whose chords are known.

Training data (InstructME, method: chord conditioning of the source audio): crops of
songs from a dataset folder, mixed from random stem subsets with random gains
(:mod:`instructme.training.stem_mixes`); frame targets are the score's chord labels mapped to
the model's vocabulary, maj/min/N or sevenths (:func:`~instructme.models.chord.chord_to_index`).
Each batch is transposed by a random number of semitones in the log-frequency domain (labels
rotated to match), so every key is seen. Evaluation transcribes whole held-out songs and scores
them with ``mir_eval.chord`` (root, majmin and sevenths), duration-weighted over all songs (WCSR).
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
from instructme.errors import ManifestError
from instructme.models.chord import (
    IGNORE_INDEX,
    VOCABULARIES,
    ChordConfig,
    ChordRecognizer,
    chord_to_index,
    transpose_index,
)
from instructme.training.stem_mixes import (
    MixSpec,
    SongRef,
    chord_frame_targets,
    draw_mix,
    has_split,
    load_songs,
    song_mix,
)
from instructme.training.supervised import LoopConfig, SupervisedTask
from instructme.training.trainer import Trainer, resumed_config

Segments = list[tuple[float, float, str]]


@dataclasses.dataclass
class ChordTrainConfig(Config):
    """Trainer settings (the model's own settings are a :class:`ChordConfig` preset)."""

    steps: int = 3000
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    crop_seconds: float = 10.0
    full_mix_prob: float = 0.4
    pitch_shift: bool = True
    eval_every: int = 1000
    eval_songs: int = 20  # validation songs transcribed at each evaluation
    log_every: int = 50
    num_workers: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(steps=40, batch_size=4, crop_seconds=4.0, warmup_steps=5, ema_decay=0.0,
                     eval_every=0, eval_songs=2, log_every=10, num_workers=0),
        "small": dict(),
        "large": dict(steps=30000, batch_size=32, lr=1e-3, warmup_steps=500, eval_every=2000,
                      eval_songs=50, num_workers=4),
    }


class ChordCrops(torch.utils.data.Dataset):
    """Item ``i``: ``(audio float32 [n], targets int64 [T])``, deterministic in ``(seed, i)``."""

    def __init__(self, songs: list[SongRef], model_cfg: ChordConfig, spec: MixSpec,
                 length: int, seed: int = 0, augment: bool = True) -> None:
        self.songs, self.cfg, self.spec = songs, model_cfg, spec
        self.length, self.seed, self.augment = length, seed, augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        mix = draw_mix(self.songs, self.spec, rng, augment=self.augment)
        n_frames = mix.audio.shape[0] // self.cfg.hop + 1
        times = mix.start + np.arange(n_frames) / self.cfg.frame_rate
        labels = chord_frame_targets(mix.song.chords, times)
        end = mix.song.duration
        targets = [IGNORE_INDEX if lab is None else chord_to_index(lab, self.cfg.labels)
                   for lab in labels]
        targets = [t if times[j] < end else IGNORE_INDEX for j, t in enumerate(targets)]
        return torch.from_numpy(mix.audio), torch.tensor(targets, dtype=torch.long)


def chord_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], shift: int
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy over frames of a batch transposed down by ``shift`` semitones.

    ``model`` is a :class:`ChordRecognizer` (possibly wrapped for data parallelism).
    """
    audio, targets = batch
    logits = model(audio, shift=shift)  # [B, T, K]
    targets = transpose_index(targets, -shift, n_index=logits.shape[-1] - 1)
    if not (targets != IGNORE_INDEX).any():  # cross_entropy would be NaN
        return logits.sum() * 0.0, {"frame_acc": 0.0}
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                       ignore_index=IGNORE_INDEX)
    with torch.no_grad():
        valid = targets != IGNORE_INDEX
        hits = (logits.argmax(-1) == targets)[valid]
        acc = float(hits.float().mean()) if hits.numel() else 0.0
    return loss, {"frame_acc": acc}


def reference_segments(song: SongRef) -> Segments:
    """The score's chords as contiguous segments over ``[0, duration]`` (gaps -> ``X``)."""
    out: Segments = []
    t = 0.0
    for c in sorted(song.chords, key=lambda c: c.start):
        start, end = max(c.start, t), min(c.end, song.duration)
        if start > t + 1e-6:
            out.append((t, start, "X"))
        if end > start:
            out.append((start, end, c.label))
            t = end
    if song.duration > t + 1e-6:
        out.append((t, song.duration, "X"))
    return out


def score_segments(ref: Segments, est: Segments) -> dict[str, tuple[float, float]]:
    """``mir_eval.chord`` root/majmin/sevenths: ``{metric: (correct seconds, scored seconds)}``.

    Each metric scores the reference chords its vocabulary holds (sevenths leaves out, e.g.,
    ``dim`` and ``9`` chords; majmin only ``X``/``sus``/power chords)."""
    import mir_eval.chord
    import mir_eval.util

    ref_iv = np.array([[s, e] for s, e, _ in ref])
    est_iv = np.array([[s, e] for s, e, _ in est]) if est else np.array([[0.0, ref_iv[-1, 1]]])
    est_lab = [lab for _, _, lab in est] if est else ["N"]
    ref_lab = [lab for _, _, lab in ref]
    t_min, t_max = float(ref_iv[0, 0]), float(ref_iv[-1, 1])
    est_iv, est_lab = mir_eval.util.adjust_intervals(est_iv, est_lab, t_min, t_max, "N", "N")
    intervals, r, e = mir_eval.util.merge_labeled_intervals(ref_iv, ref_lab, est_iv, est_lab)
    durations = mir_eval.util.intervals_to_durations(intervals)
    out = {}
    for name, fn in (("root", mir_eval.chord.root), ("majmin", mir_eval.chord.majmin),
                     ("sevenths", mir_eval.chord.sevenths)):
        comp = fn(r, e)
        scored = comp >= 0
        out[name] = (float((durations * comp)[scored].sum()), float(durations[scored].sum()))
    return out


def evaluate_transcriber(transcribe: Callable[[np.ndarray, int], Segments],
                         songs: list[SongRef]) -> dict[str, Any]:
    """WCSR (duration-weighted over all songs) of a transcriber on full song mixes."""
    totals = {k: [0.0, 0.0] for k in ("root", "majmin", "sevenths")}
    scored = 0
    for song in songs:
        if not song.chords:  # nothing to score against
            continue
        scored += 1
        est = transcribe(song_mix(song), song.sample_rate)
        for k, (num, den) in score_segments(reference_segments(song), est).items():
            totals[k][0] += num
            totals[k][1] += den
    return {"songs": scored, "seconds": totals["majmin"][1],
            **{k: (num / den if den > 0 else float("nan")) for k, (num, den) in totals.items()}}


def train_chord(data: str | Path, out: str | Path, preset: str = "small",
                steps: int | None = None, resume: bool = False, seed: int = 0,
                vocabulary: str = "majmin",
                model_config: ChordConfig | None = None,
                train_config: ChordTrainConfig | None = None,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train a :class:`ChordRecognizer` on ``data`` (train split); evaluate on val songs.

    ``vocabulary`` (a :data:`~instructme.models.chord.VOCABULARIES` name) sets a new model's
    labels; a resumed run keeps its own."""

    tcfg = train_config or ChordTrainConfig.preset(preset)
    if steps is not None:
        tcfg = dataclasses.replace(tcfg, steps=steps)
    if resume:
        mcfg = resumed_config(out, "chord", ChordConfig)
    else:
        if vocabulary not in VOCABULARIES:
            raise ValueError(f"unknown chord vocabulary {vocabulary!r}; known: "
                             f"{', '.join(VOCABULARIES)}")
        mcfg = model_config or ChordConfig.preset(preset, labels=VOCABULARIES[vocabulary])
    train_songs = [s for s in load_songs(data, ("train",)) if s.chords]
    if not train_songs:
        raise ManifestError(f"{data}: no training song has chord labels")
    val_songs = []
    if has_split(data, "val"):  # a corrupt val split is an error, not a skipped evaluation
        val_songs = [s for s in load_songs(data, ("val",)) if s.chords][: tcfg.eval_songs]
    else:
        log(f"{data}: no val split, training without validation")
    if train_songs[0].sample_rate != mcfg.sample_rate:
        raise ValueError(f"dataset is {train_songs[0].sample_rate} Hz, model expects "
                         f"{mcfg.sample_rate} Hz")
    # At least two parts sound: one melodic line alone rarely defines its chord.
    spec = MixSpec(crop_seconds=tcfg.crop_seconds, full_mix_prob=tcfg.full_mix_prob,
                   min_slots=2)
    dataset = ChordCrops(train_songs, mcfg, spec, tcfg.steps * tcfg.batch_size, seed=seed)
    torch.manual_seed(seed)
    model = ChordRecognizer(mcfg)
    margin = mcfg.margin_semitones if tcfg.pitch_shift else 0
    log(f"chord recognizer: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(train_songs)} train songs, {len(val_songs)} val songs")

    def step_fn(m: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        shift = int(np.random.default_rng([seed, step, 7]).integers(-margin, margin + 1))
        return chord_loss(m, batch, shift)

    def evaluate(m: nn.Module) -> dict[str, Any]:
        return evaluate_transcriber(m.transcribe, val_songs)  # type: ignore[operator]

    loop = LoopConfig.of(tcfg, seed)
    task = SupervisedTask("chord", model, dataset, step_fn, loop, {"chord": mcfg},
                          evaluate=evaluate if val_songs else None,
                          extra={"data": str(data), "train": tcfg.to_dict(), "seed": seed},
                          curves=("loss", "frame_acc", "val_majmin", "val_sevenths"))
    return Trainer(task, out, resume=resume, log=log).fit()["eval"]
