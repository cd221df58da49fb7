"""The VAE decoder's low-band head (``low_n_fft``): a longer synthesis STFT for the bass bins,
silent until its gain moves, drawing only below ``low_max_hz``, and growable onto a trained
decoder without changing its output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.checkpoint import load_model, save_model
from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import can_grow, grow_vae

LOW = dict(low_n_fft=1024, low_max_hz=500.0)  # tiny: n_fft 256, stft_hop 64, 16 kHz


def _perturbed(config: VAEConfig, seed: int = 0) -> AudioVAE:
    torch.manual_seed(seed)
    vae = AudioVAE(config)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name != "low_gain":
                p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


def test_config_counts_bins_and_rejects_bad_heads() -> None:
    assert VAEConfig.preset("tiny").low_bins == 0
    assert VAEConfig.preset("tiny", **LOW).low_bins == 33  # 0..500 Hz at 15.6 Hz per bin
    assert VAEConfig.preset("medium-lf").low_bins == 65  # 0..500 Hz at 7.8 Hz per bin
    for bad in (dict(low_n_fft=256), dict(low_n_fft=1023), dict(low_n_fft=1024, low_max_hz=0),
                dict(low_n_fft=1024, low_max_hz=9000)):
        with pytest.raises(ValueError):
            VAEConfig.preset("tiny", **bad)


@pytest.mark.parametrize("n", [1, 777, 4096])
def test_shapes_any_length_and_save_load(n: int, tmp_path) -> None:
    vae = _perturbed(VAEConfig.preset("tiny", **LOW))
    x = torch.randn(2, n) * 0.1
    with torch.no_grad():
        recon, mean, _ = vae(x, sample=False)
    assert recon.shape == (2, 1, n) and mean.shape[-1] == vae.latent_length(n)
    assert torch.isfinite(recon).all()
    vae.low_gain.data.fill_(0.5)
    save_model(vae, tmp_path / "m")
    back = load_model(AudioVAE, tmp_path / "m")
    assert back.config.low_n_fft == 1024
    with torch.no_grad():
        torch.testing.assert_close(back(x, sample=False)[0], vae(x, sample=False)[0])


def test_head_is_silent_at_zero_gain_and_draws_only_the_low_band() -> None:
    vae = _perturbed(VAEConfig.preset("tiny", **LOW))
    plain = AudioVAE(VAEConfig.preset("tiny"))
    missing = plain.load_state_dict(vae.state_dict(), strict=False)
    assert missing.missing_keys == []
    x = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        base = plain(x, sample=False)[0]
        torch.testing.assert_close(vae(x, sample=False)[0], base)  # gain 0: no change
        vae.low_gain.data.fill_(1.0)
        added = (vae(x, sample=False)[0] - base)[0, 0].numpy()
    assert np.abs(added).max() > 1e-3
    power = np.abs(np.fft.rfft(added * np.hanning(added.size))) ** 2
    freqs = np.fft.rfftfreq(added.size, 1 / 16000)
    assert power[freqs > 1000].sum() < 0.01 * power.sum()  # window leakage only


def test_gain_learns_first_then_the_head() -> None:
    vae = _perturbed(VAEConfig.preset("tiny", **LOW)).train()
    x = torch.randn(2, 4000) * 0.1

    def grads() -> tuple[float, float]:
        vae.zero_grad()
        recon, _, _ = vae(x, sample=False)
        ((recon - x[:, None]) ** 2).mean().backward()
        return float(vae.low_gain.grad.abs().sum()), float(vae.low_head.weight.grad.abs().sum())

    g_gain, g_head = grads()
    assert g_gain > 0 and g_head == 0  # a zero gain passes no gradient to the head yet
    vae.low_gain.data.fill_(0.1)
    assert grads()[1] > 0


def test_grow_adds_a_silent_head_and_keeps_an_existing_one() -> None:
    src = _perturbed(VAEConfig.preset("tiny", scaling_factor=0.7))
    x = torch.randn(2, 3000) * 0.2
    grown = grow_vae(src, VAEConfig.preset("tiny", **LOW)).eval()
    assert float(grown.low_gain.abs().max()) == 0.0 and grown.config.scaling_factor == 0.7
    with torch.no_grad():
        torch.testing.assert_close(grown(x, sample=False)[0], src(x, sample=False)[0],
                                   rtol=0, atol=0)
    # a trained low-band head survives widening the decoder
    with_head = _perturbed(VAEConfig.preset("tiny", **LOW), seed=1)
    with_head.low_gain.data.fill_(0.3)
    wide = grow_vae(with_head, VAEConfig.preset("tiny", dec_frame_dim=32, **LOW)).eval()
    torch.testing.assert_close(wide.low_gain, with_head.low_gain)
    with torch.no_grad():
        torch.testing.assert_close(wide(x, sample=False)[0], with_head(x, sample=False)[0],
                                   rtol=1e-4, atol=1e-5)


def test_grow_refuses_to_change_or_drop_a_head() -> None:
    with_head = VAEConfig.preset("tiny", **LOW)
    assert "low-band head differs" in can_grow(with_head, VAEConfig.preset("tiny"))
    other = VAEConfig.preset("tiny", low_n_fft=2048)
    assert "low-band head differs" in can_grow(with_head, other)
    with pytest.raises(CheckpointError, match="low-band head"):
        grow_vae(AudioVAE(with_head), other)


def test_frozen_encoder_run_trains_only_the_decoder(tmp_path) -> None:
    from test_train_vae import make_dataset

    from instructme.cli import main
    from instructme.training.vae import train_vae

    data = make_dataset(tmp_path / "data")
    base = tmp_path / "base"
    train_vae(data, base, preset="tiny", steps=2, quiet=True)
    out = tmp_path / "lf"
    train_vae(data, out, preset="tiny", model_overrides=LOW, steps=3, lr=1e-2, quiet=True,
              init=str(base), freeze_encoder=True)
    before, after = load_model(AudioVAE, base), load_model(AudioVAE, out)
    assert after.config.low_n_fft == 1024
    assert after.config.scaling_factor == before.config.scaling_factor  # latent space kept
    b_sd, a_sd = before.state_dict(), after.state_dict()
    for k in b_sd:
        if k.startswith("enc_"):
            torch.testing.assert_close(a_sd[k], b_sd[k], rtol=0, atol=0)
    assert not torch.equal(a_sd["dec_in.weight"], b_sd["dec_in.weight"])
    assert float(after.low_gain.abs().max()) > 0  # the new head switched on
    # without an encoder to keep, the flag is a one-line error
    assert main(["train", "vae", "--data", str(data), "--out", str(tmp_path / "e"),
                 "--freeze-encoder", "--steps", "1", "--quiet"]) == 2
