"""Config presets, atomic writes and model folders (save/load/mismatch errors)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import pytest
import torch

from instructme.checkpoint import load_model, save_model
from instructme.config import Config, DataConfig
from instructme.errors import CheckpointError
from instructme.fileio import atomic_write_json, atomic_write_jsonl


@dataclasses.dataclass
class ToyConfig(Config):
    width: int = 4
    dims: tuple[int, ...] = (1, 2)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"width": 2}}


class Toy(torch.nn.Module):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.lin = torch.nn.Linear(config.width, 3)


class Other(Toy):
    pass


def test_config_presets_and_round_trip():
    cfg = ToyConfig.preset("tiny", dims=(3,))
    assert cfg.width == 2 and cfg.dims == (3,)
    assert ToyConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="known: tiny"):
        ToyConfig.preset("huge")
    for name in ("tiny", "small", "full"):
        assert DataConfig.preset(name).sample_rate == 16_000


def test_save_load_equality_and_errors(tmp_path):
    torch.manual_seed(0)
    m = Toy(ToyConfig.preset("tiny"))
    save_model(m, tmp_path / "m")
    m2 = load_model(Toy, tmp_path / "m")
    assert m2.config == m.config
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="holds a Toy, expected a Other"):
        load_model(Other, tmp_path / "m")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(Toy, tmp_path / "nope")
    # Weights that do not fit the config are refused, not silently half-loaded.
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["width"] = 5
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(Toy, tmp_path / "m")


def test_atomic_writes_leave_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    n = atomic_write_jsonl(tmp_path / "b.jsonl", ({"i": i} for i in range(3)))
    assert n == 3 and len((tmp_path / "b.jsonl").read_text().splitlines()) == 3

    def boom():
        yield {"i": 0}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(tmp_path / "b.jsonl", boom())
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 3  # old content kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.jsonl"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    atomic_write_json(tmp_path / "c.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o666 & ~umask
