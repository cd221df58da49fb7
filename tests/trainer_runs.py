"""Short, seeded training runs of every model, reduced to numbers that pin the trainer's
behaviour: the loss terms of every step, the final evaluation and a checksum of the exported
weights. ``tests/data/trainer_runs.json`` holds these numbers as recorded before the shared
trainer (:mod:`instructme.training.trainer`) replaced the per-model loops; ``test_trainer``
checks that the shared trainer reproduces them.

Regenerate (only when a change is meant to alter training)::

    .venv/bin/python tests/trainer_runs.py tests/data/trainer_runs.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).parent))

#: Log keys that are timings, not results.
TIMING_KEYS = {"time", "sec_per_step", "steps_per_s", "samples_per_s", "seconds"}


def read_logs(out: Path) -> list[dict[str, Any]]:
    """The run's log records (``logs.jsonl``) without timings."""
    path = out / "logs.jsonl"
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
            for line in path.read_text().splitlines() if line.strip()]


def weights_checksum(out: Path) -> list[float]:
    """``[sum, sum of squares]`` of the exported model's parameters, in float64."""
    tensors = load_file(str(out / "model.safetensors"))
    s = sum(float(np.asarray(t, np.float64).sum()) for t in tensors.values())
    s2 = sum(float(np.square(np.asarray(t, np.float64)).sum()) for t in tensors.values())
    return [s, s2]


def losses(logs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-step training scalars (records with a ``loss``/``total`` and no evaluation)."""
    return [{k: v for k, v in r.items() if isinstance(v, float) and k != "lr"} | {"step": r["step"]}
            for r in logs if ("loss" in r or "total" in r)]


def run_vae(root: Path) -> dict[str, Any]:
    from test_train_vae import make_dataset

    from instructme.training.vae import train_vae

    data = make_dataset(root / "vae-data")
    out = root / "vae"
    train_vae(data, out, preset="tiny", steps=4, quiet=True)
    return {"losses": losses(read_logs(out)), "weights": weights_checksum(out)}


def run_vae_sines(root: Path) -> dict[str, Any]:
    import torch
    from test_train_vae import make_dataset

    from instructme.checkpoint import save_model
    from instructme.models.vae import AudioVAE, VAEConfig
    from instructme.training.vae_sines import train_vae_sines

    data = make_dataset(root / "vae-data")
    torch.manual_seed(0)
    save_model(AudioVAE(VAEConfig.preset("tiny")), root / "plain")
    out = root / "sines"
    train_vae_sines(root / "plain", data, out, sine_slots=20, steps=5, batch_size=2,
                    log_every=1, quiet=True)
    return {"losses": [{k: r[k] for k in ("step", "sine", "keep")} for r in read_logs(out)],
            "weights": weights_checksum(out)}


def run_editor(root: Path) -> dict[str, Any]:
    from test_train_editor import META, FakeVAE, fake_chords, make_dataset

    from instructme.models.text import TextEncoderConfig, build_text_encoder
    from instructme.training.editor import train_editor
    from instructme.training.editor_cache import build_editor_cache

    data = make_dataset(root / "editor-data")
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    cache = build_editor_cache(data, root / "cache", FakeVAE().encode_latents, enc, fake_chords,
                               meta=META, batch_size=5)
    out = root / "editor"
    train_editor(cache, out, preset="tiny", steps=6, batch_size=2, grad_accum=2,
                 crop_seconds=0.256, log_every=1, save_every=3, val_every=3, quiet=True)
    return {"losses": losses(read_logs(out)),
            "val": [r["val_loss"] for r in read_logs(out) if "val_loss" in r],
            "weights": weights_checksum(out)}


def run_chord(root: Path) -> dict[str, Any]:
    from synth_songs import make_dataset

    from instructme.training.chord import ChordTrainConfig, train_chord

    data = make_dataset(root / "chord-data")
    out = root / "chord"
    tcfg = dataclasses.replace(ChordTrainConfig.preset("tiny"), ema_decay=0.9, log_every=1,
                               eval_every=4)
    metrics = train_chord(data, out, steps=6, train_config=tcfg, log=lambda s: None)
    return {"losses": losses(read_logs(out)), "weights": weights_checksum(out),
            "eval": {k: v for k, v in metrics.items() if isinstance(v, float)}}


def run_classifier(root: Path) -> dict[str, Any]:
    from synth_songs import make_dataset

    from instructme.training.classifier import ClassifierTrainConfig, train_classifier

    data = make_dataset(root / "cls-data")
    out = root / "classifier"
    tcfg = dataclasses.replace(ClassifierTrainConfig.preset("tiny"), ema_decay=0.9,
                               log_every=1, eval_every=4, eval_items=16)
    metrics = train_classifier(data, out, steps=6, train_config=tcfg, log=lambda s: None)
    return {"losses": losses(read_logs(out)), "weights": weights_checksum(out),
            "eval": {k: v for k, v in metrics.items() if isinstance(v, float)}}


def run_separator(root: Path) -> dict[str, Any]:
    from synth_songs import make_dataset

    from instructme.training.separator import SeparatorTrainConfig, train_separator

    data = make_dataset(root / "sep-data")
    out = root / "separator"
    tcfg = SeparatorTrainConfig.preset("tiny", ema_decay=0.9, log_every=1, eval_every=3)
    metrics = train_separator(data, out, steps=6, train_config=tcfg, preset="tiny",
                              log=lambda s: None)
    return {"losses": losses(read_logs(out)), "weights": weights_checksum(out),
            "eval": {k: v for k, v in metrics.items() if isinstance(v, float)}}


RUNS = {"vae": run_vae, "vae_sines": run_vae_sines, "editor": run_editor, "chord": run_chord,
        "classifier": run_classifier, "separator": run_separator}


def run_all(root: Path) -> dict[str, Any]:
    return {name: fn(root / name) for name, fn in RUNS.items()}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all(Path(tmp))
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
