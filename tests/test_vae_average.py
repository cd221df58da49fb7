"""Trainer snapshots and their weight average (``train vae --snapshot-every``,
``train vae-average``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_vae import make_dataset

from instructme.checkpoint import load_model, read_config, save_model
from instructme.cli import main
from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.training.vae import train_vae
from instructme.training.vae_average import average_vaes


def test_snapshots_are_kept_and_averaged(tmp_path: Path, capsys) -> None:
    data = make_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train_vae(data, run, preset="tiny", steps=4, snapshot_every=2, quiet=True)
    snaps = sorted((run / "snapshots").iterdir())
    assert [s.name for s in snaps] == ["step_0000002", "step_0000004"]
    a, b = (load_model(AudioVAE, s) for s in snaps)
    assert read_config(snaps[0])["_extra"]["step"] == 2
    assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                      b.state_dict().values()))
    out = tmp_path / "avg"
    assert main(["train", "vae-average", *map(str, snaps), "--out", str(out),
                 "--data", str(data)]) == 0
    assert "the mean of 2 snapshots" in capsys.readouterr().out
    avg = load_model(AudioVAE, out)
    for k, v in avg.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (a.state_dict()[k] + b.state_dict()[k]) / 2)
    extra = read_config(out)["_extra"]
    assert extra["steps"] == [2, 4]
    assert avg.config.scaling_factor == pytest.approx(1 / extra["latent_std"])
    # Without data: the snapshots' mean scaling factor.
    avg2 = average_vaes(snaps, tmp_path / "avg2")
    assert avg2.config.scaling_factor == pytest.approx(
        (a.config.scaling_factor + b.config.scaling_factor) / 2)


def test_average_refuses_mixed_architectures_and_bad_input(tmp_path: Path, capsys) -> None:
    small = save_model(AudioVAE(VAEConfig.preset("tiny")), tmp_path / "a")
    other = save_model(AudioVAE(VAEConfig.preset("tiny", latent_channels=4)), tmp_path / "b")
    with pytest.raises(CheckpointError, match="different architectures"):
        average_vaes([small, other], tmp_path / "o")
    with pytest.raises(CheckpointError, match="at least two"):
        average_vaes([small], tmp_path / "o")
    assert main(["train", "vae-average", str(small), str(tmp_path / "none"), "--out",
                 str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert main(["train", "vae-average", str(small), str(other), "--out", str(small)]) == 2
    assert "must not be one of the snapshots" in capsys.readouterr().err
