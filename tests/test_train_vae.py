"""VAE training: crops, losses that really act on gradients, checkpoints, resume, CLI, eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructme.checkpoint import load_model
from instructme.cli import main
from instructme.errors import CheckpointError, ManifestError
from instructme.metrics.vae_eval import evaluate_vae
from instructme.models.discriminator import Discriminator, DiscriminatorConfig
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.training.vae import VAETrainConfig, lr_factor, train_vae
from instructme.training.vae_data import CropSampler, fixed_clips, load_split, read_sum
from instructme.training.vae_losses import ReconstructionLoss, generator_step_losses

SR = 16_000


def make_dataset(root: Path, seconds: float = 2.0) -> Path:
    """Three songs (train/val/test), two stems + one variant each, and their manifests."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    for i, split in enumerate(("train", "val", "test")):
        song = f"song{i}"
        d = root / "songs" / song
        d.mkdir(parents=True)
        stems = {
            "piano": (0.2 * np.sin(2 * np.pi * (220 + 50 * i) * t), None),
            "drums": (0.1 * rng.standard_normal(n) * (np.sin(2 * np.pi * 2 * t) > 0.5), None),
            "piano_as_organ": (0.2 * np.sign(np.sin(2 * np.pi * 220 * t)), "piano"),
        }
        meta = {"song_id": song, "stems": {}}
        for name, (x, variant) in stems.items():
            sf.write(str(d / f"{name}.flac"), x.astype(np.float32), SR)
            meta["stems"][name] = {"path": f"songs/{song}/{name}.flac", "variant_of": variant}
        (d / "song.json").write_text(json.dumps(meta))
        (root / "manifests").mkdir(exist_ok=True)
        rec = {"id": f"t{i}", "split": split, "song": song, "task": "remove"}
        (root / "manifests" / f"{split}.jsonl").write_text(json.dumps(rec) + "\n")
    (root / "build.json").write_text(json.dumps({"sample_rate": SR}))
    return root


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


def test_splits_mixes_and_crops(dataset: Path) -> None:
    train = load_split(dataset, "train", SR)
    assert [s.song_id for s in train] == ["song0"]
    song = train[0]
    assert len(song.mix) == 2 and len(song.stems) == 3  # the variant is not in the mix
    mix = read_sum(song.mix, 100, 1000)
    parts = [sf.read(str(p), start=100, stop=1100, dtype="float32")[0] for p in song.mix]
    np.testing.assert_allclose(mix, parts[0] + parts[1], atol=1e-6)
    a = CropSampler(train, 4000, seed=3)
    state = a.state()
    first = a.batch(3)
    assert first.shape == (3, 4000) and first.dtype == np.float32
    assert np.abs(first).max() <= 0.99 + 1e-6
    a.set_state(state)
    np.testing.assert_array_equal(a.batch(3), first)  # resumable stream
    clips = fixed_clips(load_split(dataset, "test", SR), 5, 1.0, SR, stems_too=True)
    assert [c[0] for c in clips] == ["song2-mix", "song2-piano"]
    with pytest.raises(ManifestError):
        load_split(dataset / "nope", "train", SR)
    with pytest.raises(ManifestError):
        load_split(dataset, "train", 22_050)


def _grads(vae: AudioVAE, disc: Discriminator, x: torch.Tensor, cfg: VAETrainConfig,
           adversarial: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    vae.zero_grad()
    torch.manual_seed(0)  # same posterior sample every call
    loss = ReconstructionLoss(SR)
    total, terms, _ = generator_step_losses(vae, disc if adversarial else None, loss, x, cfg)
    total.backward()
    return torch.cat([p.grad.flatten() for p in vae.parameters()]), terms


def test_kl_and_adversarial_terms_change_gradients() -> None:
    torch.manual_seed(0)
    vae = AudioVAE(VAEConfig.preset("tiny"))
    disc = Discriminator(DiscriminatorConfig.preset("tiny"))
    x = (torch.randn(2, 1, 2048) * 0.1)
    base = VAETrainConfig.preset("tiny", w_kl=0.0, w_adv=0.0, w_fm=0.0)
    g0, terms = _grads(vae, disc, x, base, adversarial=True)
    for k in ("mel", "stft", "kl", "adv", "fm"):
        assert float(terms[k].detach()) > 0, f"loss term {k} is zero"
    g_kl, _ = _grads(vae, disc, x, VAETrainConfig.preset("tiny", w_kl=1.0, w_adv=0.0, w_fm=0.0),
                     adversarial=True)
    g_adv, _ = _grads(vae, disc, x, VAETrainConfig.preset("tiny", w_kl=0.0, w_adv=1.0, w_fm=0.0),
                      adversarial=True)
    g_fm, _ = _grads(vae, disc, x, VAETrainConfig.preset("tiny", w_kl=0.0, w_adv=0.0, w_fm=1.0),
                     adversarial=True)
    for name, g in (("kl", g_kl), ("adv", g_adv), ("fm", g_fm)):
        assert (g - g0).abs().max() > 1e-7, f"{name} does not reach the generator's gradients"
    # --low-band-weight reaches the mel loss: heavier bass bands, a larger loss on bass error.
    t = torch.arange(4096) / SR
    bass = (0.3 * torch.sin(2 * torch.pi * 110 * t))[None, None]
    plain, heavy = ReconstructionLoss(SR), ReconstructionLoss(SR, low_band_weight=3.0)
    silent = torch.zeros_like(bass)
    assert float(heavy(silent, bass)[0]) > 1.5 * float(plain(silent, bass)[0])
    # Before disc_start the discriminator is not used at all.
    _, terms_pre = _grads(vae, disc, x, base, adversarial=False)
    assert "adv" not in terms_pre


def test_train_writes_model_logs_samples_and_resumes(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_vae(dataset, out, preset="tiny", steps=2, quiet=True)
    state = json.loads((out / "state" / "trainer.json").read_text())
    assert state["step"] == 2
    with pytest.raises(CheckpointError):  # never silently overwrites a run
        train_vae(dataset, out, preset="tiny", steps=2, quiet=True)
    train_vae(dataset, out, preset="tiny", steps=4, resume=True, quiet=True)
    assert json.loads((out / "state" / "trainer.json").read_text())["step"] == 4
    logs = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in logs if "total" in r]
    assert train_steps == [1, 2, 3, 4]  # the step count continued
    adv = [r for r in logs if "adv" in r]
    assert [r["step"] for r in adv] == [3, 4]  # disc_start=2 in the tiny preset
    assert all(r["adv"] > 0 and r["disc"] > 0 for r in adv)
    assert any("val_mel" in r for r in logs)
    assert (out / "loss.png").stat().st_size > 0
    samples = out / "samples" / "step_0000004"
    assert (samples / "spectrograms.png").is_file() and list(samples.glob("*.wav"))
    vae = load_model(AudioVAE, out)
    assert vae.config.scaling_factor != 1.0
    assert json.loads((out / "config.json").read_text())["_extra"]["step"] == 4


def test_cli_train_and_eval(dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli-run"
    assert main(["train", "vae", "--data", str(dataset), "--out", str(out), "--preset", "tiny",
                 "--steps", "1", "--quiet"]) == 0
    report = tmp_path / "eval.json"
    assert main(["eval", "vae", "--model", str(out), "--data", str(dataset), "--clips", "1",
                 "--seconds", "1", "--real", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "| vae |" in printed and "| opus12 |" in printed
    assert "mel distance by frequency band" in printed and "| 0-200 |" in printed
    assert "the VAE's mel distance is lower than opus6's on" in printed
    r = json.loads(report.read_text())
    assert set(r["sets"]) == {"test mixes", "test stems"}
    for codec in ("vae", "opus6", "opus12", "opus24"):
        assert np.isfinite(r["sets"]["test mixes"][codec]["mel"])
        assert len(r["sets"]["test mixes"][codec]["mel_by_band"]) == 6
        per_clip = r["sets"]["test mixes"][codec]["mel_per_clip"]
        assert len(per_clip) == 1 and r["sets"]["test mixes"][codec]["mel_median"] == per_clip[0]
    assert r["latent"]["values_per_s"] == pytest.approx(8 * SR / 256)
    assert "held tones in tune" in printed and "| A1 |" in printed
    for codec in ("vae", "opus12"):
        assert 0.0 <= r["held_tones"][codec]["in_tune"] <= 1.0
        assert len(r["held_tones"][codec]["per_note"]) == 9
    assert r["held_tones"]["opus24"]["in_tune"] > 0.8  # a faithful codec keeps held notes
    # by default the packaged real recordings join in: music21's instrument, stempeg's band
    r = evaluate_vae(out, None, clips=1, seconds=1.0, quiet=True)
    assert len(r["sets"]["real recordings"]["clips"]) == 2
    assert [c.rsplit("-", 1)[1] for c in r["sets"]["real stems"]["clips"]] == [
        "drums", "bass", "other", "vocals"]
    assert r["sets"]["real stems"]["seconds"] == pytest.approx(6.08, abs=0.05)


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["train", "vae", "--data", str(tmp_path / "none"), "--out",
                 str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["eval", "vae", "--model", str(tmp_path / "none")]) == 2
    assert "error: " in capsys.readouterr().err
    tmp_path.joinpath("data").mkdir()
    for flag, value, msg in (("--low-band-weight", "0", "--low-band-weight must be positive"),
                             ("--snapshot-every", "0", "--snapshot-every must be at least 1")):
        assert main(["train", "vae", "--data", str(tmp_path / "data"), "--out",
                     str(tmp_path / "o"), flag, value]) == 2
        assert capsys.readouterr().err.strip() == f"error: {msg}"


def test_real_recordings_are_cut_into_clips(tmp_path: Path) -> None:
    from instructme.metrics.vae_eval import real_clips

    t = np.arange(int(2.5 * 44_100)) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.3
    stereo[int(1.0 * 44_100):int(2.0 * 44_100)] = 0.0  # a silent second is skipped
    sf.write(str(tmp_path / "rec.wav"), stereo, 44_100)
    clips = real_clips([tmp_path / "rec.wav"], 1.0, SR, limit=5)
    assert [name for name, _ in clips] == ["rec-0"]
    assert clips[0][1].shape == (SR,)
    # Several recordings are sampled round-robin, not all from the first one.
    long = np.sin(2 * np.pi * 220 * np.arange(3 * SR) / SR) * 0.3
    sf.write(str(tmp_path / "a.wav"), long, SR)
    sf.write(str(tmp_path / "b.wav"), long, SR)
    clips = real_clips([tmp_path / "a.wav", tmp_path / "b.wav"], 1.0, SR, limit=3)
    assert [name for name, _ in clips] == ["a-0", "b-0", "a-1"]


def test_replace_dir_swaps_folders(tmp_path: Path) -> None:
    from instructme.fileio import replace_dir

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "a").write_text("old")
    (tmp_path / "state.tmp").mkdir()
    (tmp_path / "state.tmp" / "a").write_text("new")
    replace_dir(tmp_path / "state.tmp", tmp_path / "state")
    assert (tmp_path / "state" / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_lr_schedule_warms_up_holds_and_decays() -> None:
    cfg = VAETrainConfig(steps=1000, warmup_steps=100, decay_steps=400, lr_final=0.1)
    f = [lr_factor(cfg, s) for s in range(1000)]
    assert f[0] == pytest.approx(0.01) and f[99] == 1.0 and f[600] == 1.0
    assert f[800] == pytest.approx(0.1 + 0.9 * 0.5) and f[999] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(f[600:], f[601:]))  # monotone decay
    assert lr_factor(VAETrainConfig(steps=1000, warmup_steps=1), 999) == 1.0  # no decay


def test_resume_may_extend_the_run_with_a_decay(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_vae(dataset, out, preset="tiny", steps=2, quiet=True)
    train_vae(dataset, out, preset="tiny", steps=6, decay_steps=4, resume=True, quiet=True)
    logs = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in logs if "total" in r]
    base = VAETrainConfig.preset("tiny").lr
    assert lrs[:2] == [base, base] and lrs[-1] < 0.2 * base  # decayed after the resume
    saved = json.loads((out / "state" / "train_config.json").read_text())
    assert (saved["steps"], saved["decay_steps"]) == (6, 4)
