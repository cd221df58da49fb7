"""The VAE decoder's phase increments (``phase_increments``): without them a held latent can
only sound on a 1/hop grid of frequencies; with them it can sound anywhere. Growable onto a
trained decoder without changing its output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from instructme.checkpoint import load_model, save_model
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import can_grow, grow_vae

PI = dict(phase_increments=True)  # tiny: n_fft 256, stft_hop 64, hop_length 256, 16 kHz


def _perturbed(config: VAEConfig, seed: int = 0) -> AudioVAE:
    torch.manual_seed(seed)
    vae = AudioVAE(config)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


def _peak_hz(y: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    return float(np.fft.rfftfreq(y.size, 1 / 16000)[int(np.argmax(power))])


def test_a_held_latent_sounds_only_on_the_frame_rate_grid_without_increments() -> None:
    vae = _perturbed(VAEConfig.preset("tiny"))
    z = torch.randn(1, 8, 1).repeat(1, 1, 64)  # the same latent for 64 frames (1 s)
    with torch.no_grad():
        y = vae.decode(z)[0, 0].numpy()
    hop = vae.config.hop_length
    inner = y[16 * hop: -16 * hop]  # beyond the receptive field of the zero-padded edges
    np.testing.assert_allclose(inner[hop:], inner[:-hop], atol=1e-5 * np.abs(inner).max())


@pytest.mark.parametrize("offset_hz", [0.0, 12.5, -20.0])
def test_a_constant_increment_moves_a_held_tone_off_the_grid(offset_hz: float) -> None:
    vae = AudioVAE(VAEConfig.preset("tiny", **PI)).eval()
    c, bins = vae.config, vae.config.n_fft // 2 + 1
    k = 8  # 500 Hz, a multiple of n_fft / stft_hop: in phase from frame to frame
    with torch.no_grad():
        vae.head.weight.zero_()
        bias = torch.zeros(3 * bins)
        bias[:bins] = -30.0
        bias[k] = 3.0  # one loud bin
        bias[2 * bins:] = 2 * math.pi * offset_hz * c.stft_hop / c.sample_rate
        vae.head.bias.copy_(bias)
        y = vae.decode(torch.zeros(1, 8, 64))[0, 0].numpy()
    assert _peak_hz(y[2000:-2000]) == pytest.approx(500.0 + offset_hz, abs=1.5)


@pytest.mark.parametrize("n", [1, 777, 4096])
def test_shapes_any_length_and_save_load(n: int, tmp_path) -> None:
    vae = _perturbed(VAEConfig.preset("tiny", **PI))
    x = torch.randn(2, n) * 0.1
    with torch.no_grad():
        recon, mean, _ = vae(x, sample=False)
    assert recon.shape == (2, 1, n) and torch.isfinite(recon).all()
    save_model(vae, tmp_path / "m")
    back = load_model(AudioVAE, tmp_path / "m")
    assert back.config.phase_increments
    with torch.no_grad():
        torch.testing.assert_close(back(x, sample=False)[0], vae(x, sample=False)[0])


def test_grow_adds_zero_increments_and_keeps_them_when_widening() -> None:
    src = _perturbed(VAEConfig.preset("tiny", scaling_factor=0.7))
    grown = grow_vae(src, VAEConfig.preset("tiny", **PI)).eval()
    assert grown.config.scaling_factor == 0.7
    x = torch.randn(2, 3000) * 0.2
    with torch.no_grad():
        torch.testing.assert_close(grown(x, sample=False)[0], src(x, sample=False)[0],
                                   rtol=0, atol=0)
    with_pi = _perturbed(VAEConfig.preset("tiny", **PI), seed=1)
    wide = grow_vae(with_pi, VAEConfig.preset("tiny", dec_frame_dim=32, **PI)).eval()
    with torch.no_grad():
        torch.testing.assert_close(wide(x, sample=False)[0], with_pi(x, sample=False)[0],
                                   rtol=1e-4, atol=1e-5)
    assert "phase increments" in can_grow(with_pi.config, VAEConfig.preset("tiny"))


def test_increments_get_gradients_from_the_start() -> None:
    src = _perturbed(VAEConfig.preset("tiny"))
    vae = grow_vae(src, VAEConfig.preset("tiny", **PI)).train()
    x = torch.randn(2, 4000) * 0.1
    recon, _, _ = vae(x, sample=False)
    ((recon - x[:, None]) ** 2).mean().backward()
    bins = vae.config.n_fft // 2 + 1
    assert float(vae.head.weight.grad[2 * bins:].abs().sum()) > 0
