"""EditSettings and the sampler registry: one set of checks, one table of sampler names, and
defaults that come from the pipeline folder only (CLI, web studio and Python API alike)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web_support import Client, wav_bytes

from instructme import cli
from instructme.editing.folder import DEFAULTS, folder_defaults, read_pipeline_json
from instructme.editing.settings import MAX_STEPS, EditSettings
from instructme.errors import CheckpointError, InstructMEError
from instructme.samplers import SAMPLERS, lookup, sampler_names

BAD = [
    (dict(steps=0), "steps must be an integer in 1..1000, got 0"),
    (dict(steps=MAX_STEPS + 1), "steps must be"),
    (dict(steps=2.5), "steps must be"),
    (dict(steps=True), "steps must be"),
    (dict(guidance=-0.5), "guidance must be in 0..50, got -0.5"),
    (dict(guidance=float("nan")), "guidance must be in 0..50"),
    (dict(guidance="lots"), "guidance must be a number, got 'lots'"),
    (dict(sampler="euler"), "sampler must be one of dpm, ddim, ddpm, got 'euler'"),
    (dict(seed=1.5), "seed must be a 64-bit integer, got 1.5"),
    (dict(seed=2**64), "seed must be a 64-bit integer"),
    (dict(preserve="yes"), "preserve must be true or false, got 'yes'"),
]


@pytest.mark.parametrize(("values", "message"), BAD)
def test_bad_settings_are_one_line_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InstructMEError) as e:
        EditSettings(**values).validate()
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    with pytest.raises(InstructMEError) as e:  # callers name the field their own way
        EditSettings(**values).validate("--{}")
    assert str(e.value).startswith("--" + message)


def test_validate_normalises_and_keeps_unset_fields() -> None:
    s = EditSettings(steps=np.int64(7), guidance=2, sampler="dpmsolver++", seed=np.int32(3),
                     preserve=np.bool_(False)).validate()
    assert s == EditSettings(7, 2.0, "dpm", 3, False)
    assert (type(s.steps), type(s.guidance), type(s.seed), type(s.preserve)) == (
        int, float, int, bool)
    assert EditSettings().validate() == EditSettings(None, None, None, 0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.steps = 3  # type: ignore[misc]


def test_resolve_takes_unset_fields_from_the_defaults() -> None:
    defaults = EditSettings(steps=20, guidance=1.5, sampler="ddim", preserve=False)
    got = EditSettings(steps=5, seed=9).resolve(defaults)
    assert got == EditSettings(steps=5, guidance=1.5, sampler="ddim", seed=9, preserve=False)
    assert EditSettings().override(guidance=None, preserve=True).preserve is True
    with pytest.raises(InstructMEError, match="unknown edit settings: stpes"):
        EditSettings().override(stpes=3)
    with pytest.raises(InstructMEError, match="no default for steps"):
        EditSettings().resolve(EditSettings(guidance=1.0, sampler="dpm", preserve=True))


def test_sampler_registry() -> None:
    from instructme.diffusion import Diffusion

    assert sampler_names() == ["dpm", "ddim", "ddpm"] == list(SAMPLERS)
    assert lookup("dpmsolver++") is SAMPLERS["dpm"] and lookup("euler") is None
    assert {s.name: s.scheduler for s in SAMPLERS.values()} == {
        "dpm": "dpmsolver++", "ddim": "ddim", "ddpm": "ddpm"}
    assert [s.name for s in SAMPLERS.values() if s.stochastic] == ["ddpm"]
    kinds = {"dpm": "DPMSolverMultistepScheduler", "ddim": "DDIMScheduler",
             "ddpm": "DDPMScheduler"}
    for name, kind in kinds.items():
        sched = Diffusion().make_sampler(name, 4)
        assert type(sched).__name__ == kind and len(sched.timesteps) == 4


def _choices(parser: argparse.ArgumentParser, *path: str) -> dict[str, Any]:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {a.dest: a.choices for a in parser._actions if a.dest == "sampler"}


@pytest.mark.parametrize("path", [("edit",), ("pipeline",), ("eval", "generate")])
def test_cli_sampler_choices_are_the_registry(path: tuple[str, ...]) -> None:
    assert _choices(cli.build_parser(), *path) == {"sampler": sampler_names()}


def test_cli_rejects_bad_settings_naming_the_option(tmp_path: Path, capsys) -> None:
    for argv, message in [(["--steps", "0"], "--steps must be an integer in 1..1000, got 0"),
                          (["--guidance", "60"], "--guidance must be in 0..50, got 60.0")]:
        code = cli.main(["edit", str(tmp_path / "in.wav"), "add a piano", "-o",
                         str(tmp_path / "out.wav"), *argv])
        err = capsys.readouterr().err
        assert code == 2 and err == f"error: {message}\n", err


def test_defaults_come_from_pipeline_json(tmp_path: Path) -> None:
    from instructme.editing.pipeline import EditPipeline, build_tiny_pipeline

    shipped = Path(__file__).resolve().parents[1] / "models" / "instructme-small"
    meta = read_pipeline_json(shipped)
    assert folder_defaults(meta, shipped) == DEFAULTS.override(**meta["defaults"])
    assert folder_defaults(meta, shipped).guidance == meta["defaults"]["guidance"]

    folder = build_tiny_pipeline(tmp_path / "tiny")
    meta = json.loads((folder / "pipeline.json").read_text())
    assert meta["defaults"] == DEFAULTS.folder_defaults()
    meta["defaults"] = {"steps": 4, "guidance": 1.25, "sampler": "ddim"}  # preserve: DEFAULTS
    (folder / "pipeline.json").write_text(json.dumps(meta))
    pipe = EditPipeline.from_pretrained(folder, device="cpu")
    want = EditSettings(steps=4, guidance=1.25, sampler="ddim", seed=0,
                        preserve=DEFAULTS.preserve)
    assert pipe.defaults == want and pipe.resolve_settings() == want
    assert pipe.resolve_settings(EditSettings(seed=2), steps=3) == dataclasses.replace(
        want, steps=3, seed=2)
    meta["defaults"] = {"steps": 0}
    (folder / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"pipeline.json: default steps must be") as e:
        EditPipeline.from_pretrained(folder, device="cpu")
    assert "\n" not in str(e.value)


class FakePipeline:
    """Records the settings the studio sends; never edits."""

    defaults = EditSettings(steps=4, guidance=1.25, sampler="ddim", preserve=False)

    def __call__(self, audio: np.ndarray, sample_rate: int, instruction: str, *,
                 settings: EditSettings, progress: Any) -> Any:
        raise InstructMEError(f"fake pipeline: {settings}")


def test_studio_defaults_and_one_line_setting_errors(tmp_path: Path) -> None:
    from instructme.web.app import StudioSettings, create_app
    from instructme.web.server import start_in_thread

    assert not {f.name for f in dataclasses.fields(StudioSettings)
                if f.name.startswith("default_")}
    app = create_app(FakePipeline(), StudioSettings(max_steps=20, store_root=tmp_path / "s"))
    server = start_in_thread(app)
    try:
        client = Client(server.url)
        status, info = client.json("GET", "/api/info")
        assert info["defaults"] == {"steps": 4, "guidance": 1.25, "sampler": "ddim",
                                    "preserve": False, "seed": 0}
        status, item = client.upload(wav_bytes(1.0), "clip.wav")
        assert status == 200, item
        edit = {"audio": item["id"], "instruction": "add a piano"}
        for extra, message in [({"steps": 0}, "steps: must be an integer in 1..1000"),
                               ({"guidance": 51}, "guidance: must be in 0..50"),
                               ({"sampler": "euler"}, "sampler: must be one of dpm, ddim"),
                               ({"steps": 21}, "steps: at most 20 on this server")]:
            status, err = client.json("POST", "/api/edit", {**edit, **extra})
            assert status == 400 and err["error"].startswith(message), err
            assert "\n" not in err["error"]
        status, job = client.json("POST", "/api/edit", {**edit, "seed": 7})
        assert status == 200, job
        assert (job["steps"], job["guidance"], job["sampler"], job["seed"],
                job["preserve"]) == (4, 1.25, "ddim", 7, False)
    finally:
        server.stop()
