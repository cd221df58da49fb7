"""Growing a trained VAE into a wider, deeper decoder: same output at start, copies free to
diverge, encoder untouched, clear refusals, and ``train vae --init DIR --preset P``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_vae import make_dataset

from instructme.checkpoint import load_model
from instructme.cli import main
from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE, VAEConfig
from instructme.models.vae_grow import can_grow, grow_vae
from instructme.training.vae import train_vae

WIDE = dict(dec_frame_dim=32, dec_frame_blocks=3)  # tiny: frame_dim 16, 1 block per side


@pytest.fixture()
def trained() -> AudioVAE:
    """A tiny VAE whose weights are not at their initial values (layer scales too)."""
    torch.manual_seed(0)
    vae = AudioVAE(VAEConfig.preset("tiny", scaling_factor=0.7))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


def test_grown_vae_computes_the_same_audio(trained: AudioVAE) -> None:
    grown = grow_vae(trained, VAEConfig.preset("tiny", **WIDE)).eval()
    assert grown.config.decoder_frame_dim == 32 and len(grown.dec_frame) == 3
    assert grown.config.scaling_factor == 0.7
    assert grown.num_parameters > trained.num_parameters
    x = torch.randn(2, 3000) * 0.2
    with torch.no_grad():
        a, mean_a, _ = trained(x, sample=False)
        b, mean_b, _ = grown(x, sample=False)
    torch.testing.assert_close(mean_b, mean_a, rtol=0, atol=0)  # encoder copied
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert a.abs().max() > 1e-3  # not a trivially silent comparison
    # new blocks start as the identity
    assert float(grown.dec_frame[1].gamma.detach().abs().max()) == 0.0


def test_copies_are_not_identical_and_diverge(trained: AudioVAE) -> None:
    grown = grow_vae(trained, VAEConfig.preset("tiny", **WIDE), noise=0.01)
    w = grown.head.weight
    assert not torch.allclose(w[:, :16], w[:, 16:])
    torch.testing.assert_close(w[:, :16] + w[:, 16:], trained.head.weight)
    # one gradient step: the two copies of a channel get different updates
    x = torch.randn(2, 2000) * 0.2
    recon, _, _ = grown(x, sample=False)
    ((recon - x[:, None]) ** 2).mean().backward()
    g = grown.dec_frame[0].pw2.weight.grad
    assert not torch.allclose(g[:16], g[16:])
    # no noise: the copies are exact halves (the symmetric Net2Net split)
    flat = grow_vae(trained, VAEConfig.preset("tiny", **WIDE), noise=0.0)
    torch.testing.assert_close(flat.head.weight[:, :16], flat.head.weight[:, 16:])


def test_refuses_what_cannot_grow(trained: AudioVAE) -> None:
    assert can_grow(trained.config, VAEConfig.preset("tiny", **WIDE)) is None
    for bad, why in ((dict(latent_channels=4), "latent_channels"),
                     (dict(dec_frame_dim=24), "multiple"),
                     (dict(frame_dim=32), "frame_dim")):
        assert why in (can_grow(trained.config, VAEConfig.preset("tiny", **bad)) or "")
        with pytest.raises(CheckpointError, match=why):
            grow_vae(trained, VAEConfig.preset("tiny", **bad))
    wide = grow_vae(trained, VAEConfig.preset("tiny", **WIDE))
    assert "fewer frame blocks" in (can_grow(wide.config, VAEConfig.preset(
        "tiny", dec_frame_dim=32, dec_frame_blocks=1)) or "")


def test_train_vae_grows_its_init(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    base = tmp_path / "base"
    train_vae(data, base, preset="tiny", steps=2, quiet=True)
    grown = tmp_path / "grown"
    train_vae(data, grown, preset="tiny", model_overrides=WIDE, steps=1, lr=1e-12,
              quiet=True, init=str(base))
    vae = load_model(AudioVAE, grown)
    assert (vae.config.dec_frame_dim, vae.config.dec_frame_blocks) == (32, 3)
    saved = json.loads((grown / "state" / "vae_config.json").read_text())
    assert saved["dec_frame_dim"] == 32
    x = torch.randn(1, 2000) * 0.2
    with torch.no_grad():  # at lr ~0 the grown run still computes what its init did
        torch.testing.assert_close(vae(x, sample=False)[0],
                                   load_model(AudioVAE, base)(x, sample=False)[0],
                                   rtol=1e-3, atol=1e-4)
    # the run resumes with its grown architecture
    train_vae(data, grown, steps=2, resume=True, quiet=True)
    assert load_model(AudioVAE, grown).config.dec_frame_dim == 32
    # a preset the init cannot grow into is a one-line error (exit 2)
    assert main(["train", "vae", "--data", str(data), "--out", str(tmp_path / "e"),
                 "--preset", "small", "--init", str(base), "--steps", "1", "--quiet"]) == 2


def test_frozen_encoder_run_trains_only_the_decoder(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    base = tmp_path / "base"
    train_vae(data, base, preset="tiny", steps=2, quiet=True)
    out = tmp_path / "dec"
    train_vae(data, out, preset="tiny", model_overrides=WIDE, steps=3, lr=1e-2, quiet=True,
              init=str(base), freeze_encoder=True)
    before, after = load_model(AudioVAE, base), load_model(AudioVAE, out)
    assert after.config.decoder_frame_dim == 32
    assert after.config.scaling_factor == before.config.scaling_factor  # latent space kept
    b_sd, a_sd = before.state_dict(), after.state_dict()
    for k in b_sd:
        if k.startswith("enc_"):
            torch.testing.assert_close(a_sd[k], b_sd[k], rtol=0, atol=0)
    assert not torch.equal(a_sd["dec_in.weight"], b_sd["dec_in.weight"])
    x = torch.randn(1, 2000) * 0.2
    with torch.no_grad():  # the editor's latents are the same; their sound is not
        torch.testing.assert_close(after.encode_latents(x), before.encode_latents(x))
        assert not torch.allclose(after.decode_latents(after.encode_latents(x)),
                                  before.decode_latents(before.encode_latents(x)))
    # a resumed run keeps the encoder frozen and the scaling kept
    train_vae(data, out, steps=5, resume=True, quiet=True)
    resumed = load_model(AudioVAE, out)
    assert resumed.config.scaling_factor == before.config.scaling_factor
    for k, v in resumed.state_dict().items():
        if k.startswith("enc_"):
            torch.testing.assert_close(v, b_sd[k], rtol=0, atol=0)
    # without an encoder to keep, the flag is a one-line error
    assert main(["train", "vae", "--data", str(data), "--out", str(tmp_path / "e"),
                 "--freeze-encoder", "--steps", "1", "--quiet"]) == 2
