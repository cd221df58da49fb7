"""The VAE's sinusoidal low band: peak analysis, oscillator synthesis, model wiring, loss."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from instructme.checkpoint import load_model, read_config, save_model
from instructme.errors import CheckpointError
from instructme.metrics.tones import harmonic_tone, in_tune_fraction
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import can_grow, grow_vae
from instructme.models.vae_sines import analyze_peaks, lowpass_gain, synthesize
from instructme.training.vae import VAETrainConfig, load_init_weights
from instructme.training.vae_losses import generator_step_losses, sine_loss

SR = 16_000


def test_analysis_finds_an_off_grid_sine_with_its_amplitude() -> None:
    t = torch.arange(3 * SR) / SR
    x = (0.3 * torch.sin(2 * torch.pi * 110.0 * t))[None]  # 110 Hz: bin 14.08 of 2048
    mask, log_amp, offset = analyze_peaks(x, 45, 2048, 512)
    assert mask.shape == (1, 45, 94)
    frame = mask[0, :, 40]
    assert frame.sum() == 1 and int(frame.argmax()) == 13  # slot 13 = bin 14
    f = (14 + float(offset[0, 13, 40])) * SR / 2048
    assert f == pytest.approx(110.0, abs=0.3)
    assert float(log_amp[0, 13, 40].exp()) == pytest.approx(0.3, rel=0.03)
    assert float(offset[0][mask[0] == 0].abs().max()) == 0.0  # no offset without a peak
    silent = analyze_peaks(torch.zeros(1, SR), 45, 2048, 512)[0]
    assert silent.sum() == 0


@pytest.mark.parametrize("f0", [55.0, 110.0, 173.0])
def test_analysis_then_synthesis_holds_bass_notes_in_tune(f0: float) -> None:
    x = torch.from_numpy(harmonic_tone(f0, 3.0, SR, partials=3))[None]
    mask, log_amp, offset = analyze_peaks(x, 45, 2048, 512)
    y = synthesize(mask * log_amp.exp(), offset, 2048, 512, SR, x.shape[-1])
    assert y.shape == x.shape
    assert in_tune_fraction(y[0].numpy(), f0, SR) > 0.99
    assert float(y.std() / x.std()) == pytest.approx(1.0, abs=0.1)


def test_synthesis_is_the_same_in_chunks_and_any_length() -> None:
    g = torch.Generator().manual_seed(0)
    amp = torch.rand(2, 5, 40, generator=g)
    offset = torch.rand(2, 5, 40, generator=g) - 0.5
    whole = synthesize(amp, offset, 2048, 512, SR, 40 * 512, chunk_frames=1000)
    chunked = synthesize(amp, offset, 2048, 512, SR, 40 * 512, chunk_frames=3)
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert synthesize(amp, offset, 2048, 512, SR, 777).shape == (2, 777)
    assert synthesize(amp, offset, 2048, 512, SR, 41 * 512).shape == (2, 41 * 512)


def test_crossover_weights_sum_to_one() -> None:
    f = torch.linspace(0, 1000, 101)
    low = lowpass_gain(f, 200.0, 350.0)
    assert low[f < 200].eq(1).all() and low[f > 350].eq(0).all()
    assert torch.all(low[1:] <= low[:-1])


def _tiny(**kw) -> VAEConfig:
    return VAEConfig.preset("tiny", sine_slots=20, **kw)


def test_vae_with_sines_any_length_save_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = AudioVAE(_tiny()).eval()
    x = torch.randn(2, 3001) * 0.1
    with torch.no_grad():
        y, mean, logvar, pred = vae(x, sample=False, with_sines=True)
    assert y.shape == (2, 1, 3001)
    assert pred.logit.shape == pred.offset.shape == (2, 20, mean.shape[-1])
    assert float(pred.offset.abs().max()) <= 0.5
    save_model(vae, tmp_path / "m")
    back = load_model(AudioVAE, tmp_path / "m").eval()
    assert back.config == vae.config and back.config.sine_crossover == (200.0, 350.0)
    with torch.no_grad():
        assert torch.equal(back(x, sample=False)[0], y)


def test_a_sine_band_added_to_a_trained_vae_keeps_its_latents() -> None:
    torch.manual_seed(0)
    plain = AudioVAE(VAEConfig.preset("tiny")).eval()
    with_sines = AudioVAE(_tiny()).eval()
    load_init_weights(with_sines, plain)
    grown = grow_vae(plain, dataclasses.replace(_tiny(), dec_frame_dim=32)).eval()
    x = torch.randn(1, 4096) * 0.1
    with torch.no_grad():
        z = plain.encode(x)[0]
        assert torch.equal(with_sines.encode(x)[0], z)  # the bass view starts at zero
        assert torch.equal(grown.encode(x)[0], z)
    assert can_grow(_tiny(), VAEConfig.preset("tiny")) is not None  # a sine band is kept
    assert can_grow(_tiny(), _tiny(sine_crossover=(150.0, 300.0))) is not None
    with pytest.raises(CheckpointError):  # a model that does not fit is refused
        load_init_weights(AudioVAE(VAEConfig.preset("tiny")), with_sines)


def test_sine_loss_is_live_and_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    vae = AudioVAE(_tiny())
    t = torch.arange(8192) / SR
    x = (0.3 * torch.sin(2 * torch.pi * 110.0 * t))[None, None].repeat(2, 1, 1)
    from instructme.training.vae_losses import ReconstructionLoss
    recon = ReconstructionLoss(SR)
    grads = []
    for w in (0.0, 1.0):
        vae.zero_grad()
        total, terms, _ = generator_step_losses(vae, None, recon, x,
                                                VAETrainConfig.preset("tiny", w_sine=w))
        assert float(terms["sine"].detach()) > 0
        total.backward()
        grads.append(torch.cat([p.grad.flatten() for n, p in vae.named_parameters()
                                if n.startswith("enc_")]))
    assert (grads[0] - grads[1]).abs().max() > 1e-7
    # A head that predicts the true peaks scores far better than a fresh one.
    with torch.no_grad():
        _, _, _, pred = vae(x, sample=False, with_sines=True)
        mask, log_amp, offset = analyze_peaks(x[:, 0], 20, 2048, 256)
        fresh = float(sine_loss(pred, x[:, 0], vae.config))
        pred.logit = (mask * 2 - 1) * 20
        pred.log_amp, pred.offset = log_amp, offset
        assert float(sine_loss(pred, x[:, 0], vae.config)) < 0.05 * fresh


def test_train_vae_sines_adds_a_band_that_learns_and_keeps_latents_close(tmp_path: Path
                                                                         ) -> None:
    from test_train_vae import make_dataset

    from instructme.cli import main

    data = make_dataset(tmp_path / "data")
    torch.manual_seed(0)
    plain = AudioVAE(VAEConfig.preset("tiny"))
    save_model(plain, tmp_path / "plain")
    out = tmp_path / "sines"
    assert main(["train", "vae-sines", "--init", str(tmp_path / "plain"), "--data", str(data),
                 "--out", str(out), "--sine-slots", "20", "--steps", "30", "--batch-size", "2",
                 "--quiet"]) == 0
    vae = load_model(AudioVAE, out)
    assert vae.config.sine_slots == 20
    assert float(vae.enc_bass.weight.detach().abs().max()) > 0  # the encoder reads the bass now
    assert torch.equal(vae.head.weight, plain.head.weight)  # frame-rate decoder untouched
    x = torch.from_numpy(np.sin(2 * np.pi * 110 * np.arange(8192) / SR)
                         .astype(np.float32))[None] * 0.3
    with torch.no_grad():
        shift = (vae.encode(x)[0] - plain.encode(x)[0]).pow(2).mean()
        assert float(shift) < float(plain.encode(x)[0].pow(2).mean())
    stage = read_config(out)["_extra"]["sine_stage"]
    assert stage["step"] == 30 and np.isfinite(stage["sine"])
    assert main(["train", "vae-sines", "--init", str(tmp_path / "plain"), "--data", str(data),
                 "--out", str(out), "--steps", "1", "--quiet"]) == 2  # never overwrites
    for bad in (["--lr", "0"], ["--keep-weight", "-1"], ["--steps", "0"]):
        assert main(["train", "vae-sines", "--init", str(tmp_path / "plain"), "--data",
                     str(data), "--out", str(tmp_path / "x"), *bad]) == 2
    assert not (tmp_path / "x").exists()
