"""The VAE decoder's low-band head (``low_n_fft``): a longer synthesis STFT for the bass that
crosses over with the main head, grown onto a trained decoder from the main head's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.checkpoint import load_model, save_model
from instructme.metrics.codec import MultiScaleMelDistance
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import can_grow, grow_vae, low_head_from_main

LOW = dict(low_n_fft=1024)  # tiny: n_fft 256, stft_hop 64, 16 kHz; crossover 250-500 Hz


def _perturbed(config: VAEConfig, seed: int = 0) -> AudioVAE:
    torch.manual_seed(seed)
    vae = AudioVAE(config)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


def _band_power(y: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / 16000)
    return float(power[(freqs >= lo) & (freqs < hi)].sum())


def test_config_counts_bins_and_rejects_bad_heads() -> None:
    assert VAEConfig.preset("tiny").low_bins == 0
    assert VAEConfig.preset("tiny", **LOW).low_bins == 33  # 0..500 Hz at 15.6 Hz per bin
    assert VAEConfig.preset("medium-lf").low_bins == 65  # 0..500 Hz at 7.8 Hz per bin
    for bad in (dict(low_n_fft=256), dict(low_n_fft=1023),
                dict(low_n_fft=1024, low_from_hz=500.0, low_to_hz=400.0),
                dict(low_n_fft=1024, low_to_hz=9000.0)):
        with pytest.raises(ValueError):
            VAEConfig.preset("tiny", **bad)


def test_crossover_weights_are_complementary() -> None:
    c = VAEConfig.preset("tiny", **LOW)
    main = c.crossover(c.n_fft, c.n_fft // 2 + 1)[:, 0]
    long = 1.0 - c.crossover(c.low_n_fft, c.low_bins)[:, 0]
    f_main = torch.arange(main.numel()) * 16000 / c.n_fft
    assert main[f_main <= 250].abs().max() == 0 and (main[f_main >= 500] == 1).all()
    # on the frequencies both grids share, the two weights sum to one
    torch.testing.assert_close(main[: c.low_bins // 4 + 1] + long[::4], torch.ones(9))
    assert long[-1] == 0  # the long head fades out at low_to_hz


@pytest.mark.parametrize("n", [1, 777, 4096])
def test_shapes_any_length_and_save_load(n: int, tmp_path) -> None:
    vae = _perturbed(VAEConfig.preset("tiny", **LOW))
    x = torch.randn(2, n) * 0.1
    with torch.no_grad():
        recon, mean, _ = vae(x, sample=False)
    assert recon.shape == (2, 1, n) and mean.shape[-1] == vae.latent_length(n)
    assert torch.isfinite(recon).all()
    save_model(vae, tmp_path / "m")
    back = load_model(AudioVAE, tmp_path / "m")
    assert back.config.low_n_fft == 1024
    with torch.no_grad():
        torch.testing.assert_close(back(x, sample=False)[0], vae(x, sample=False)[0])


def test_the_bass_comes_from_the_low_band_head_only() -> None:
    vae = _perturbed(VAEConfig.preset("tiny", **LOW))
    x = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        full = vae(x, sample=False)[0][0, 0].numpy()
        vae.low_head.bias[: vae.config.low_bins] = -30.0  # silence the long head
        vae.low_head.weight.zero_()
        main_only = vae(x, sample=False)[0][0, 0].numpy()
    assert _band_power(main_only, 30, 200) < 1e-3 * _band_power(full, 30, 200)
    assert _band_power(main_only, 700, 8000) == pytest.approx(_band_power(full, 700, 8000),
                                                              rel=1e-4)
    # ... and the main head's bins below the crossover get no gradient at all
    vae.train()
    vae.zero_grad()
    vae(x, sample=False)[0].square().mean().backward()
    g = vae.head.weight.grad
    assert g[:4].abs().max() == 0 and g[20:129].abs().max() > 0  # bins 0-3: 0-188 Hz


def test_grown_head_starts_close_to_the_main_heads_bass() -> None:
    src = _perturbed(VAEConfig.preset("tiny", scaling_factor=0.7))
    grown = grow_vae(src, VAEConfig.preset("tiny", **LOW)).eval()
    assert grown.config.scaling_factor == 0.7
    random_head = grow_vae(src, VAEConfig.preset("tiny", **LOW)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(random_head.low_head.weight, std=0.02)
        random_head.low_head.bias.zero_()
    x = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        a, b, c = (m(x, sample=False)[0][:, 0] for m in (src, grown, random_head))
    mel = MultiScaleMelDistance(16000)
    assert float(mel(b, a)) < 0.3 * float(mel(c, a))
    assert _band_power(b[0].numpy(), 700, 8000) == pytest.approx(
        _band_power(a[0].numpy(), 700, 8000), rel=1e-3)  # the treble is untouched


def test_grow_keeps_a_head_when_widening_and_refuses_to_change_it() -> None:
    with_head = _perturbed(VAEConfig.preset("tiny", **LOW), seed=1)
    wide = grow_vae(with_head, VAEConfig.preset("tiny", dec_frame_dim=32, **LOW)).eval()
    x = torch.randn(2, 3000) * 0.2
    with torch.no_grad():
        torch.testing.assert_close(wide(x, sample=False)[0], with_head(x, sample=False)[0],
                                   rtol=1e-4, atol=1e-5)
    cfg = with_head.config
    assert "low-band head differs" in can_grow(cfg, VAEConfig.preset("tiny"))
    assert "low-band head differs" in can_grow(cfg, VAEConfig.preset("tiny", low_n_fft=2048))
    assert "low-band head differs" in can_grow(
        cfg, VAEConfig.preset("tiny", low_n_fft=1024, low_from_hz=100.0))


def test_frozen_encoder_run_grows_and_trains_the_head(tmp_path) -> None:
    from test_train_vae import make_dataset

    from instructme.training.vae import train_vae

    data = make_dataset(tmp_path / "data")
    base = tmp_path / "base"
    train_vae(data, base, preset="tiny", steps=2, quiet=True)
    out = tmp_path / "lf"
    train_vae(data, out, preset="tiny", model_overrides=LOW, steps=2, lr=1e-2, quiet=True,
              init=str(base), freeze_encoder=True)
    before, after = load_model(AudioVAE, base), load_model(AudioVAE, out)
    assert after.config.low_n_fft == 1024
    assert after.config.scaling_factor == before.config.scaling_factor
    start, _ = low_head_from_main(
        before.head.weight, before.head.bias, after.config)
    assert not torch.allclose(after.low_head.weight, start)  # the head trained
    for k, v in before.state_dict().items():
        if k.startswith("enc_"):
            torch.testing.assert_close(after.state_dict()[k], v, rtol=0, atol=0)
