"""Editor training: latent cache, learning on a tiny synthetic task, resume, 2-process DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructme.checkpoint import load_model
from instructme.errors import CheckpointError, ManifestError
from instructme.models.text import TextEncoderConfig, build_text_encoder
from instructme.models.unet import EditorUNet
from instructme.training.editor import train_editor
from instructme.training.editor_cache import (
    LatentCache,
    build_editor_cache,
    expand_records,
    subset,
)

SR, HOP, C, CHORD_HOP, K = 16_000, 256, 8, 1600, 25
STEMS = {"piano": 440.0, "bass": 110.0, "strings": 660.0}


def make_dataset(root: Path, n_songs: int = 6) -> Path:
    """Songs of three sine 'instruments'; add/remove/extract triplets and a 2-round chain."""
    rng = np.random.default_rng(0)
    (root / "manifests").mkdir(parents=True)
    (root / "build.json").write_text(json.dumps({"preset": "test", "seed": 0,
                                                 "sample_rate": SR, "config": {}}))
    t = np.arange(int(2.0 * SR)) / SR
    splits: dict[str, list[dict]] = {"train": [], "val": []}
    for s in range(n_songs):
        sid = f"song{s}"
        d = root / "songs" / sid
        d.mkdir(parents=True)
        paths = {}
        for name, f0 in STEMS.items():
            f = f0 * 2 ** (rng.integers(-3, 4) / 12)
            env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t) ** 2
            sf.write(d / f"{name}.flac", (0.3 * env * np.sin(2 * np.pi * f * t)).astype(np.float32),
                     SR)
            paths[name] = f"songs/{sid}/{name}.flac"
        (d / "song.json").write_text(json.dumps({"song_id": sid, "chords": []}))
        split = "val" if s == n_songs - 1 else "train"
        every = sorted(paths.values())
        for w, start in enumerate((0.0, 0.5)):
            for task, inst in (("add", "piano"), ("remove", "strings"), ("extract", "bass")):
                if task == "add":
                    src, tgt = [p for p in every if inst not in p], every
                elif task == "remove":
                    src, tgt = every, [p for p in every if inst not in p]
                else:
                    src, tgt = every, [paths[inst]]
                splits[split].append({"id": f"{sid}-{task}-{w}", "split": split, "task": task,
                                      "instruction": f"{task} the {inst}", "args": {},
                                      "song": sid, "start": start, "duration": 1.0,
                                      "source": src, "target": tgt, "edited": [paths[inst]]})
        r1 = [paths["bass"], paths["strings"]]
        splits[split].append({"id": f"{sid}-multi", "split": split, "task": "multiround",
                              "instruction": "remove the piano then remove the strings",
                              "args": {}, "song": sid, "start": 0.25, "duration": 1.0,
                              "source": every, "target": [paths["bass"]], "edited": [],
                              "rounds": [{"task": "remove", "instruction": "remove the piano",
                                          "args": {}, "target": r1},
                                         {"task": "remove", "instruction": "remove the strings",
                                          "args": {}, "target": [paths["bass"]]}]})
    for split, recs in splits.items():
        (root / "manifests" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in recs))
    return root


class FakeVAE:
    """A fixed spectral 'VAE' encoder: log energy of C frequency bands per hop-length frame
    (bands of 125 Hz, so each sine instrument lives in its own channels), standardised."""

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(x, (0, (-x.shape[-1]) % HOP))
        spec = torch.stft(x, HOP, HOP, window=torch.hann_window(HOP), center=False,
                          return_complex=True).abs().square()  # [B, 129, T]
        bands = spec[:, : 2 * C].reshape(x.shape[0], C, 2, -1).sum(2)
        return (torch.log10(bands + 1e-2) - 0.5) / 1.5


def fake_chords(x: torch.Tensor) -> torch.Tensor:
    w = torch.randn(K, 1, CHORD_HOP, generator=torch.Generator().manual_seed(1))
    x = torch.nn.functional.pad(x, (CHORD_HOP // 2, CHORD_HOP // 2))
    return torch.nn.functional.conv1d(x[:, None], w, stride=CHORD_HOP).transpose(1, 2).softmax(-1)


META = {"sample_rate": SR, "latent_channels": C, "latent_rate": SR / HOP, "chord_rate": 10.0,
        "chord_classes": K, "vae": {"name": "fake"}, "text": {"kind": "hash"}, "text_dim": 64}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("editor")
    data = make_dataset(root / "data")
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    return build_editor_cache(data, root / "cache", FakeVAE().encode_latents, enc, fake_chords,
                              meta=META, batch_size=5)


def test_multiround_rounds_become_items():
    rec = {"id": "m", "task": "multiround", "instruction": "a then b", "song": "s",
           "start": 0, "duration": 1, "source": ["x", "y", "z"], "target": ["z"],
           "rounds": [{"task": "remove", "instruction": "a", "target": ["y", "z"]},
                      {"task": "remove", "instruction": "b", "target": ["z"]}]}
    items = expand_records([rec])
    assert [(i["source"], i["target"], i["instruction"]) for i in items] == [
        (["x", "y", "z"], ["y", "z"], "a"), (["y", "z"], ["z"], "b")]


def test_cache_contents_match_direct_encoding(cache):
    from instructme.dataset.folder import load_window

    tr = LatentCache(cache, "train")
    assert len(tr) == 5 * (6 + 2) and tr.num_frames == 63
    assert tr.chords is not None and tr.chords.shape == (len(tr), 11, K)
    i = next(k for k, it in enumerate(tr.items) if it["id"] == "song2-remove-1")
    rec = next(json.loads(x) for x in (cache.parent / "data/manifests/train.jsonl").open()
               if json.loads(x)["id"] == "song2-remove-1")
    src = load_window(cache.parent / "data", rec["source"], rec["start"], 1.0)
    tgt = load_window(cache.parent / "data", rec["target"], rec["start"], 1.0)
    z = FakeVAE().encode_latents(torch.from_numpy(np.stack([src, tgt])))
    np.testing.assert_allclose(tr.z_src[i], z[0].numpy(), atol=2e-3, rtol=1e-2)
    np.testing.assert_allclose(tr.z_tgt[i], z[1].numpy(), atol=2e-3, rtol=1e-2)
    b = tr.batch([i, 0], crop_frames=32, rng=np.random.default_rng(0))
    assert b["z_src"].shape == (2, C, 32) and b["chords"].shape == (2, 7, K)
    assert b["text"].shape[0] == 2 and b["text_mask"][0].sum() == 3  # "remove the strings"
    val = LatentCache(cache, "val")
    assert len(val) == 8 and {it["song"] for it in val.items} == {"song5"}


def test_cache_is_reused_and_refuses_other_models(cache):
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    data = cache.parent / "data"
    stamp = (cache / "train" / "z_src.npy").stat().st_mtime_ns
    build_editor_cache(data, cache, FakeVAE().encode_latents, enc, fake_chords, meta=META)
    assert (cache / "train" / "z_src.npy").stat().st_mtime_ns == stamp
    with pytest.raises(ManifestError, match="different settings"):
        build_editor_cache(data, cache, FakeVAE().encode_latents, enc, fake_chords,
                           meta={**META, "vae": {"name": "other"}})


def test_cache_subset_is_seeded_and_recorded(tmp_path, cache):
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    data = cache.parent / "data"
    c = build_editor_cache(data, tmp_path / "c", FakeVAE().encode_latents, enc, fake_chords,
                           meta=META, max_items={"train": 7, "val": 3})
    tr, full = LatentCache(c, "train"), LatentCache(cache, "train")
    assert len(tr) == 7 and len(LatentCache(c, "val")) == 3
    order = [it["id"] for it in full.items]
    ids = [it["id"] for it in tr.items]
    assert ids == sorted(ids, key=order.index)  # manifest order kept
    i = order.index(ids[3])
    np.testing.assert_array_equal(tr.z_tgt[3], full.z_tgt[i])
    assert ids == [it["id"] for it in subset(expand_records(
        [json.loads(x) for x in (data / "manifests/train.jsonl").open()]), 7)]
    with pytest.raises(ManifestError, match="different settings"):
        build_editor_cache(data, c, FakeVAE().encode_latents, enc, fake_chords, meta=META,
                           max_items={"train": 8})


def test_empty_validation_manifest(tmp_path, cache):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(cache.parent / "data", data)
    (data / "manifests" / "val.jsonl").write_text("")
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    c = build_editor_cache(data, tmp_path / "c", FakeVAE().encode_latents, enc, fake_chords,
                           meta=META)
    assert json.loads((c / "cache.json").read_text())["splits"] == {"train": 40, "val": 0}
    with pytest.raises(ManifestError, match="no 'val' items"):
        LatentCache(c, "val")
    res = _short_run(c, tmp_path / "run", 2)  # trains without validation
    assert res["step"] == 2


def test_cache_build_resumes(tmp_path, cache):
    data = cache.parent / "data"
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    calls = []

    def flaky(x):
        calls.append(x.shape[0])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return FakeVAE().encode_latents(x)

    with pytest.raises(KeyboardInterrupt):
        build_editor_cache(data, tmp_path / "c", flaky, enc, fake_chords, meta=META,
                           splits=("train",), batch_size=8)
    assert json.loads((tmp_path / "c/train/progress.json").read_text())["done"] == 8
    calls.clear()
    build_editor_cache(data, tmp_path / "c", lambda x: calls.append(1) or
                       FakeVAE().encode_latents(x), enc, fake_chords, meta=META,
                       splits=("train",), batch_size=8)
    assert len(calls) == 1 + 2 * 4  # probe + remaining 32 items in batches of 8, src and tgt
    np.testing.assert_array_equal(np.load(tmp_path / "c/train/z_tgt.npy"),
                                  np.load(cache / "train/z_tgt.npy"))


def _instruction_losses(model: EditorUNet, cache: LatentCache, t: int) -> dict[str, float]:
    """Diffusion loss at timestep ``t`` (fixed noise) with each item's own instruction, with
    the next item's (another task), and with none."""
    from instructme.diffusion import Diffusion

    diff = Diffusion.from_config(model.config)
    b = cache.batch(list(range(len(cache))))
    n = len(cache)
    other = torch.tensor([(i + 1) % n for i in range(n)])
    out = {}
    for name, text, mask in (("own", b["text"], b["text_mask"]),
                             ("other", b["text"][other], b["text_mask"][other]),
                             ("none", None, None)):
        def fn(z, tt, text=text, mask=mask):
            return model(z, tt, b["z_src"], text, mask, b["chords"])

        with torch.no_grad():
            out[name] = float(diff.training_loss(fn, b["z_tgt"], torch.Generator().manual_seed(0),
                                                 t=torch.full((n,), t)))
    return out


def test_training_learns_and_uses_the_instruction(tmp_path, cache):
    out = tmp_path / "run"
    res = train_editor(cache, out, preset="tiny", steps=300, batch_size=8, crop_seconds=0.256,
                       log_every=50, save_every=300, val_every=150, quiet=True)
    logs = [json.loads(x) for x in (out / "logs.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in logs if "loss" in r]
    vals = [r["val_loss"] for r in logs if "val_loss" in r]
    assert len(train_losses) == 6 and len(vals) == 3  # steps 0, 150, 300
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert train_losses[-1] < 0.75 * train_losses[0], train_losses
    assert vals[-1] < 0.6 * vals[0], vals
    model = load_model(EditorUNet, out).eval()  # EMA weights
    assert model.config.latent_channels == C and model.config.chord_rate == 10.0
    assert res["step"] == 300 and (out / "state" / "trainer.json").is_file()
    val = LatentCache(cache, "val")  # an unseen song
    losses = _instruction_losses(model, val, t=800)
    assert losses["own"] < 0.8 * losses["other"], losses
    assert losses["own"] < losses["none"], losses
    # Sampling (DPM-Solver++, guidance 2) moves remove/extract edits most of the way.
    from instructme.diffusion import Diffusion
    from instructme.editing.guidance import EditorDenoiser

    b = val.batch(list(range(len(val))))
    den = EditorDenoiser(model, b["z_src"], b["text"], b["text_mask"], b["chords"], 2.0)
    x = Diffusion.from_config(model.config).sample(den, b["z_src"].shape, steps=20,
                                                   generator=torch.Generator().manual_seed(0))
    sel = [i for i, it in enumerate(val.items) if it["task"] in ("remove", "extract")]
    before = (b["z_src"] - b["z_tgt"])[sel].square().mean()
    after = (x - b["z_tgt"])[sel].square().mean()
    assert after < 0.6 * before, (float(after), float(before))


def _short_run(cache, out, steps, batch_size=4, **kw):
    return train_editor(cache, out, preset="tiny", steps=steps, batch_size=batch_size,
                        log_every=2, save_every=2, val_every=1000, quiet=True, **kw)


def test_resume_continues_exactly(tmp_path, cache):
    full = _short_run(cache, tmp_path / "a", 6)
    _short_run(cache, tmp_path / "b", 4)
    with pytest.raises(CheckpointError, match="resume"):
        _short_run(cache, tmp_path / "b", 6)
    resumed = _short_run(cache, tmp_path / "b", 6, resume=True)
    assert resumed["step"] == 6
    assert resumed["weights_sha256"] == full["weights_sha256"]
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()
    logs = [json.loads(x)["step"] for x in (tmp_path / "b/logs.jsonl").read_text().splitlines()]
    assert logs == [0, 2, 4, 6]  # untrained val baseline, then train logs (none repeated)


def test_gradient_accumulation_and_variants(tmp_path, cache):
    res = _short_run(cache, tmp_path / "acc", 2, grad_accum=2)
    assert res["step"] == 2
    for variant in ("no-chord", "audit"):
        _short_run(cache, tmp_path / variant, 2, variant=variant)
        assert not load_model(EditorUNet, tmp_path / variant).config.chord_conditioning


def test_no_chords_in_cache_needs_no_chord_variant(tmp_path, cache):
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=64))
    c2 = build_editor_cache(cache.parent / "data", tmp_path / "c", FakeVAE().encode_latents, enc,
                            None, meta={k: v for k, v in META.items()
                                        if not k.startswith("chord")}, splits=("train",))
    with pytest.raises(ManifestError, match="no-chord"):
        _short_run(c2, tmp_path / "r", 2)
    _short_run(c2, tmp_path / "r2", 2, variant="no-chord")


def _ddp_worker(rank: int, world: int, port: int, cache: str, out: str, result: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    res = train_editor(cache, out, preset="tiny", steps=4, batch_size=2, log_every=2,
                       save_every=4, val_every=1000, quiet=True, cpu=True)
    Path(result, f"rank{rank}.json").write_text(json.dumps(res))


def _distance(a: Path, b: Path) -> float:
    """L2 distance between two runs' exported (EMA) weights, all tensors together."""
    wa, wb = (load_model(EditorUNet, f).state_dict() for f in (a, b))
    assert wa.keys() == wb.keys()
    return float(sum((wa[k] - wb[k]).double().square().sum() for k in wa) ** 0.5)


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "logs.jsonl").read_text().splitlines())
            if "loss" in r]


def test_two_processes_train_as_one_with_the_global_batch(tmp_path, cache):
    import torch.multiprocessing as mp

    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(cache), str(tmp_path / "run"),
                                          str(tmp_path)), nprocs=2, start_method="spawn")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["step"] == r1["step"] == 4
    assert r0["weights_sha256"] == r1["weights_sha256"]
    # Two processes of batch 2 = one process of batch 4 (the same global batch), and not
    # one process of batch 2 (the ranks trained on different halves of it).
    # Float reductions in another order move the weights a little (Adam divides tiny
    # gradients by their own size), so "the same" is: 100 times closer than another batch.
    run, one, half = tmp_path / "run", tmp_path / "one", tmp_path / "half"
    _short_run(cache, one, 4, batch_size=4)
    _short_run(cache, half, 4, batch_size=2)
    np.testing.assert_allclose(_losses(run), _losses(one), rtol=1e-5)
    assert _distance(run, one) < 0.01 * _distance(half, one)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, cache):
    """The documented multi-process path: ``accelerate launch`` of the CLI, two CPU
    processes (gloo) of batch 2, trains as one process of batch 4."""
    accelerate = Path(sys.executable).with_name("accelerate")
    run, one, half = tmp_path / "run", tmp_path / "one", tmp_path / "half"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "instructme.cli", "train", "editor",
           "--data", str(cache.parent / "data"), "--cache", str(cache), "--out", str(run),
           "--preset", "tiny", "--steps", "4", "--batch-size", "2", "--cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {run} at step 4" in done.stdout
    _short_run(cache, one, 4, batch_size=4)
    _short_run(cache, half, 4, batch_size=2)
    assert _distance(run, one) < 0.01 * _distance(half, one)


def test_cli_train_editor_with_real_tiny_models(tmp_path, cache, capsys):
    from instructme.checkpoint import save_model
    from instructme.cli import main
    from instructme.models.chord import ChordConfig, ChordRecognizer
    from instructme.models.vae import AudioVAE, VAEConfig

    torch.manual_seed(0)
    save_model(AudioVAE(VAEConfig.preset("tiny")), tmp_path / "vae")
    save_model(ChordRecognizer(ChordConfig.preset("tiny")), tmp_path / "chord")
    data = cache.parent / "data"
    args = ["train", "editor", "--data", str(data), "--vae", str(tmp_path / "vae"), "--chord",
            str(tmp_path / "chord"), "--out", str(tmp_path / "ed"), "--preset", "tiny",
            "--steps", "2", "--batch-size", "2", "--quiet"]
    assert main(args) == 0
    model = load_model(EditorUNet, tmp_path / "ed")
    assert model.config.latent_rate == 62.5 and model.config.text_encoder == "hash"
    caches = list((data / "editor_cache").iterdir())
    assert len(caches) == 1 and LatentCache(caches[0]).meta["chord"]["sha256"]
    assert main(args[:-5] + ["--steps", "3", "--resume", "--quiet"]) == 0
    assert json.loads((tmp_path / "ed/state/trainer.json").read_text())["step"] == 3
    capsys.readouterr()
    assert main(args) == 2  # a run is already there and --resume was not given
    assert main(["train", "editor", "--data", str(tmp_path / "nope"), "--out", "x"]) == 2
    assert main(["train", "editor", "--data", str(data), "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "not found" in err and "--vae is required" in err
