"""Part targets: the latent cache's part and followed-part latents, the part editor's
source channels, and its training on the add / replace / remix items only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_editor import META, FakeVAE, fake_chords, make_dataset

from instructme.checkpoint import load_model
from instructme.dataset.folder import load_window
from instructme.errors import ManifestError
from instructme.models.text import TextEncoderConfig, build_text_encoder
from instructme.models.unet import EditorConfig, EditorUNet
from instructme.training.editor import train_editor
from instructme.training.editor_cache import (
    LatentCache,
    build_editor_cache,
    expand_records,
    part_stems,
)


def _add_replacements(data: Path) -> None:
    """Append to each manifest a replace of the piano by the strings per song."""
    for manifest in (data / "manifests").glob("*.jsonl"):
        recs = [json.loads(x) for x in manifest.read_text().splitlines() if x]
        for sid in sorted({r["song"] for r in recs}):
            p = {n: f"songs/{sid}/{n}.flac" for n in ("piano", "bass", "strings")}
            recs.append({"id": f"{sid}-replace", "split": recs[0]["split"], "task": "replace",
                         "instruction": "replace the piano with strings",
                         "args": {"instrument": "piano", "new_instrument": "strings"},
                         "song": sid, "start": 0.5, "duration": 1.0,
                         "source": [p["bass"], p["piano"]], "target": [p["bass"], p["strings"]],
                         "edited": [p["piano"], p["strings"]]})
        manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _half(mix: torch.Tensor, instruments: list[str]) -> torch.Tensor:
    """A stand-in separator: half of the mix, whatever is asked for."""
    assert instruments and all(n == "piano" for n in instruments)
    return 0.5 * mix


@pytest.fixture(scope="module")
def parts_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    data = make_dataset(root / "data", n_songs=4)
    _add_replacements(data)
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    return build_editor_cache(data, root / "cache", FakeVAE().encode_latents, enc, fake_chords,
                              meta=META, batch_size=4, parts=True, separate=_half)


def test_part_stems_per_task():
    a, b, c = "a.flac", "b.flac", "c.flac"
    assert part_stems({"task": "add", "source": [a, b], "target": [a, b, c]}) == ([c], [])
    assert part_stems({"task": "replace", "source": [a, b], "target": [a, c]}) == ([c], [b])
    assert part_stems({"task": "remix", "source": [a, b], "target": [c]}) == ([c], [])
    assert part_stems({"task": "remove", "source": [a, b], "target": [a]}) == ([a], [])
    rec = {"id": "r", "task": "replace", "instruction": "x", "song": "s", "start": 0,
           "duration": 1, "source": [a], "target": [c], "args": {"instrument": "piano"}}
    assert expand_records([rec])[0]["args"] == {"instrument": "piano"}


def test_cache_holds_each_items_part_and_what_it_follows(parts_cache):
    data = parts_cache.parent / "data"
    tr = LatentCache(parts_cache, "train")
    assert tr.meta["parts"] and tr.meta["has_separated"]
    records = {r["id"]: r for r in expand_records(
        [json.loads(x) for x in (data / "manifests/train.jsonl").read_text().splitlines()])}

    def enc(paths: list[str], it: dict, gain: float = 1.0) -> np.ndarray:
        x = gain * load_window(data, paths, it["start"], it["duration"], 16_000)
        return FakeVAE().encode_latents(torch.from_numpy(x)[None])[0].numpy()

    seen = set()
    for i, item in enumerate(tr.items):
        it = records[item["id"]]
        seen.add(it["task"])
        part, follows = part_stems(it)
        np.testing.assert_allclose(tr.parts["z_part"][i], enc(part, it), atol=2e-2)
        np.testing.assert_allclose(tr.parts["z_cond"][i], enc(follows, it), atol=2e-2)
        sep = enc(it["source"], it, 0.5) if it["task"] == "replace" else enc([], it)
        np.testing.assert_allclose(tr.parts["z_cond_sep"][i], sep, atol=2e-2)
    assert {"add", "replace", "remove", "extract"} <= seen
    batch = tr.batch([0, 1], 32, np.random.default_rng(0))
    assert batch["z_part"].shape == batch["z_cond"].shape == batch["z_src"].shape == (2, 8, 32)


def test_part_editor_takes_the_followed_part_as_source_channels():
    cfg = EditorConfig.preset("tiny", target="part")
    assert cfg.source_channels == 2 * cfg.latent_channels
    net = EditorUNet(cfg)
    z = torch.randn(2, cfg.latent_channels, 20)
    src = torch.randn(2, cfg.source_channels, 20)
    assert net(z, torch.tensor([3, 5]), src, None, None).shape == z.shape
    with pytest.raises(ValueError, match="z_src"):
        net(z, torch.tensor([3, 5]), src[:, : cfg.latent_channels], None, None)
    with pytest.raises(ValueError, match="target"):
        EditorConfig.preset("tiny", target="stems")


def test_part_editor_trains_on_add_replace_and_remix_only(tmp_path, parts_cache):
    from instructme.training.editor import EditorTask, EditorTrainConfig, _trained_items

    res = train_editor(parts_cache, tmp_path / "part", preset="tiny", steps=4, batch_size=4,
                       log_every=2, save_every=2, val_every=2, quiet=True,
                       editor_overrides={"target": "part"})
    assert res["step"] == 4 and np.isfinite(res["loss"])
    model = load_model(EditorUNet, tmp_path / "part")
    assert model.config.target == "part"
    tr = LatentCache(parts_cache, "train")
    pool = _trained_items(tr, model.config)
    assert {tr.items[i]["task"] for i in pool} == {"add", "replace"}  # no remix in this data
    assert len(_trained_items(tr, EditorConfig.preset("tiny"))) == len(tr)
    task = EditorTask(parts_cache, EditorTrainConfig.preset("tiny"), model.config)
    assert task.val_pool is not None and len(task.val_pool) > 0


def test_part_target_needs_a_cache_with_parts(tmp_path):
    data = make_dataset(tmp_path / "data", n_songs=2)
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    cache = build_editor_cache(data, tmp_path / "cache", FakeVAE().encode_latents, enc,
                               fake_chords, meta=META, batch_size=4)
    assert "parts" not in json.loads((cache / "cache.json").read_text())
    with pytest.raises(ManifestError, match="part latents"):
        train_editor(cache, tmp_path / "run", preset="tiny", steps=1, quiet=True,
                     editor_overrides={"target": "part"})


def test_cli_trains_a_part_editor_with_a_separators_estimate(tmp_path, capsys):
    from instructme.checkpoint import save_model
    from instructme.cli import main
    from instructme.models.chord import ChordConfig, ChordRecognizer
    from instructme.models.separator import Separator, SeparatorConfig
    from instructme.models.vae import AudioVAE, VAEConfig

    data = make_dataset(tmp_path / "data", n_songs=2)
    _add_replacements(data)
    torch.manual_seed(0)
    for name, model in (("vae", AudioVAE(VAEConfig.preset("tiny"))),
                        ("chord", ChordRecognizer(ChordConfig.preset("tiny"))),
                        ("sep", Separator(SeparatorConfig.preset("tiny")))):
        save_model(model, tmp_path / name)
    args = ["train", "editor", "--data", str(data), "--vae", str(tmp_path / "vae"), "--chord",
            str(tmp_path / "chord"), "--out", str(tmp_path / "ed"), "--preset", "tiny",
            "--steps", "2", "--batch-size", "2", "--quiet"]
    assert main([*args, "--separator", str(tmp_path / "sep")]) == 2  # needs --target part
    assert "--target part" in capsys.readouterr().err
    assert main([*args, "--target", "part", "--separator", str(tmp_path / "sep")]) == 0
    assert load_model(EditorUNet, tmp_path / "ed").config.target == "part"
    (cache,) = (data / "editor_cache").iterdir()
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["parts"] and meta["has_separated"] and meta["separator"]["sha256"]
    tr = LatentCache(cache, "train")
    sep, tasks = tr.parts["z_cond_sep"], [it["task"] for it in tr.items]
    silent = sep[tasks.index("add")]  # nothing to follow: the latent of silence
    assert all(np.array_equal(sep[i], silent) for i, t in enumerate(tasks) if t != "replace")
    assert all(not np.allclose(sep[i], silent) for i, t in enumerate(tasks) if t == "replace")
