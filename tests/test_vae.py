"""Audio VAE: shapes, round trip, any length, save/load, discriminator and codec metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.checkpoint import load_model, save_model
from instructme.errors import AudioError, CheckpointError
from instructme.metrics.codec import (
    MultiScaleMelDistance,
    mel_band_centres,
    mel_distance_by_band,
    multiscale_mel_distance,
    opus_roundtrip,
    si_sdr,
)
from instructme.models.discriminator import Discriminator, DiscriminatorConfig
from instructme.models.vae import AudioVAE, VAEConfig


@pytest.fixture()
def tiny() -> AudioVAE:
    torch.manual_seed(0)
    return AudioVAE(VAEConfig.preset("tiny")).eval()


def test_shapes_and_round_trip(tiny: AudioVAE) -> None:
    cfg = tiny.config
    x = torch.randn(2, 1, 4 * cfg.hop_length) * 0.1
    mean, logvar = tiny.encode(x)
    assert mean.shape == logvar.shape == (2, cfg.latent_channels, 4)
    recon, m2, _ = tiny(x)
    assert recon.shape == x.shape
    assert torch.isfinite(recon).all()
    # [B, N] is accepted too, and the editor API keeps [B, N].
    z = tiny.encode_latents(x[:, 0])
    assert z.shape == (2, cfg.latent_channels, 4)
    y = tiny.decode_latents(z, length=x.shape[-1])
    assert y.shape == (2, x.shape[-1])


@pytest.mark.parametrize("n", [1, 100, 255, 256, 257, 1000, 16_001])
def test_any_length_in_same_length_out(tiny: AudioVAE, n: int) -> None:
    x = torch.randn(1, n) * 0.1
    recon, mean, _ = tiny(x)
    assert recon.shape == (1, 1, n)
    assert mean.shape[-1] == -(-n // tiny.config.hop_length)


def test_fully_convolutional_locality(tiny: AudioVAE) -> None:
    """Encoding a long signal in one pass equals encoding its halves, away from the cut."""
    hop = tiny.config.hop_length
    x = torch.randn(1, 64 * hop) * 0.1
    with torch.no_grad():
        whole = tiny.encode(x)[0]
        first = tiny.encode(x[:, : 32 * hop])[0]
    torch.testing.assert_close(whole[..., :20], first[..., :20], rtol=1e-4, atol=1e-4)


def test_scaling_factor_applies(tiny: AudioVAE) -> None:
    x = torch.randn(1, 2048) * 0.1
    with torch.no_grad():
        z1 = tiny.encode_latents(x)
        tiny.config.scaling_factor = 2.0
        z2 = tiny.encode_latents(x)
        y1 = tiny.decode_latents(z2)
        tiny.config.scaling_factor = 1.0
        y0 = tiny.decode_latents(z1)
    torch.testing.assert_close(z2, 2 * z1)
    torch.testing.assert_close(y1, y0)


def test_sampling_is_seeded(tiny: AudioVAE) -> None:
    x = torch.randn(1, 2048) * 0.1
    a = tiny.encode_latents(x, sample=True, generator=torch.Generator().manual_seed(1))
    b = tiny.encode_latents(x, sample=True, generator=torch.Generator().manual_seed(1))
    c = tiny.encode_latents(x, sample=False)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_save_load_equality(tiny: AudioVAE, tmp_path) -> None:
    tiny.config.scaling_factor = 0.7
    save_model(tiny, tmp_path / "vae")
    loaded = load_model(AudioVAE, tmp_path / "vae").eval()
    assert loaded.config == tiny.config
    x = torch.randn(1, 3000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sample=False)[0], tiny(x, sample=False)[0])
    with pytest.raises(CheckpointError):
        load_model(AudioVAE, tmp_path / "missing")


def test_bad_inputs(tiny: AudioVAE) -> None:
    with pytest.raises(AudioError):
        tiny.encode(torch.randn(1, 2, 1000))
    with pytest.raises(AudioError):
        tiny.encode(torch.zeros(1, 0))
    with pytest.raises(AudioError):
        tiny.decode(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError):
        VAEConfig(hop_length=500, stft_hop=128)


def test_presets_build_and_small_is_under_20_mb() -> None:
    small = AudioVAE(VAEConfig.preset("small"))
    assert small.num_parameters * 4 < 20e6
    assert VAEConfig.preset("small").latent_rate == pytest.approx(31.25)


def test_discriminator_outputs() -> None:
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig.preset("tiny"))
    logits, feats = d(torch.randn(2, 1, 4000))
    n_subs = len(d.config.stft_sizes) + len(d.config.periods)
    assert len(logits) == len(feats) == n_subs
    assert all(lo.shape[0] == 2 for lo in logits)
    with pytest.raises(ValueError):
        Discriminator(DiscriminatorConfig(stft_sizes=(), periods=()))


def test_codec_metrics_are_sane() -> None:
    sr = 16_000
    rng = np.random.default_rng(0)
    t = np.arange(sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(sr)).astype(np.float32)
    assert multiscale_mel_distance(x, x, sr) == pytest.approx(0.0, abs=1e-6)
    noisy = x + 0.05 * rng.standard_normal(sr).astype(np.float32)
    worse = x + 0.2 * rng.standard_normal(sr).astype(np.float32)
    assert 0 < multiscale_mel_distance(x, noisy, sr) < multiscale_mel_distance(x, worse, sr)
    assert si_sdr(x, noisy) > si_sdr(x, worse)
    assert si_sdr(x, 3 * x) > 60  # scale-invariant


def test_mel_distance_by_band_says_where_the_error_is() -> None:
    sr = 16_000
    t = np.arange(2 * sr) / sr
    low = 0.3 * np.sin(2 * np.pi * 100 * t)
    high = 0.2 * np.sin(2 * np.pi * 3000 * t)
    x = (low + high).astype(np.float32)
    bands = mel_distance_by_band(x, x, sr)
    assert list(bands) == ["0-200", "200-500", "500-1000", "1000-2000", "2000-4000", "4000-8000"]
    assert max(bands.values()) == pytest.approx(0.0, abs=1e-6)
    no_bass = mel_distance_by_band(x, high.astype(np.float32), sr)  # the 100 Hz tone lost
    assert max(no_bass, key=no_bass.get) == "0-200" and no_bass["2000-4000"] < 0.1
    # the bands' mean, weighted by their number of mel bands, is the metric itself
    rng = np.random.default_rng(0)
    noisy = x + 0.05 * rng.standard_normal(len(x)).astype(np.float32)
    by_band = mel_distance_by_band(x, noisy, sr)
    centres = mel_band_centres(sr)
    edges = [0, 200, 500, 1000, 2000, 4000, sr]
    counts = [int(((centres >= lo) & (centres < hi)).sum()) for lo, hi in zip(edges, edges[1:])]
    weighted = sum(c * v for c, v in zip(counts, by_band.values())) / sum(counts)
    assert weighted == pytest.approx(multiscale_mel_distance(x, noisy, sr), rel=1e-4)


def test_low_band_weight_weighs_only_the_bass() -> None:
    sr = 16_000
    t = torch.arange(sr) / sr
    low = 0.3 * torch.sin(2 * torch.pi * 100 * t)[None]
    high = 0.2 * torch.sin(2 * torch.pi * 3000 * t)[None]
    plain, heavy = MultiScaleMelDistance(sr), MultiScaleMelDistance(sr, low_weight=3.0)
    x = low + high
    assert float(heavy(high, x)) > 1.5 * float(plain(high, x))  # the bass lost: weighed more
    assert float(heavy(low, x)) == pytest.approx(float(plain(low, x)), rel=0.05)  # treble lost
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert float(MultiScaleMelDistance(sr, low_weight=1.0)(noisy, x)) == pytest.approx(
        multiscale_mel_distance(x[0].numpy(), noisy[0].numpy(), sr), rel=1e-5)


def test_opus_roundtrip_orders_bitrates() -> None:
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    sr = 16_000
    rng = np.random.default_rng(0)
    t = np.arange(2 * sr) / sr
    x = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
         + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    d6 = multiscale_mel_distance(x, opus_roundtrip(x, sr, 6), sr)
    d24 = multiscale_mel_distance(x, opus_roundtrip(x, sr, 24), sr)
    assert len(opus_roundtrip(x, sr, 12)) == len(x)
    assert d24 < d6
