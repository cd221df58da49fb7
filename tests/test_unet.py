"""Editor U-Net: shapes for every variant, zero-init multi-scale branch, conditioning paths,
any length, gradients everywhere, save/load."""

from __future__ import annotations

import pytest
import torch

from instructme.checkpoint import load_model, save_model
from instructme.models.unet import VARIANTS, EditorConfig, EditorUNet


def _perturb(model: torch.nn.Module, skip: str = "\0", seed: int = 0) -> None:
    """Give zero-initialised layers non-trivial weights (a fresh U-Net outputs zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if skip not in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs(cfg: EditorConfig, b: int = 2, t: int = 37, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, cfg.latent_channels, t, generator=g)
    src = torch.randn(b, cfg.latent_channels, t, generator=g)
    text = torch.randn(b, 5, cfg.text_dim, generator=g)
    mask = torch.ones(b, 5, dtype=torch.bool)
    mask[0, 3:] = False
    tc = int(t / cfg.latent_rate * cfg.chord_rate) + 1
    chords = torch.randn(b, tc, cfg.chord_classes, generator=g).softmax(-1)
    return z, torch.tensor([10, 700])[:b], src, text, mask, chords


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("t", [1, 8, 37])
def test_shapes_every_variant(variant, t):
    cfg = EditorConfig.variant("tiny", variant)
    model = EditorUNet(cfg)
    _perturb(model)
    z, ts, src, text, mask, chords = _inputs(cfg, t=t)
    for ch in (chords, None):
        out = model(z, ts, src, text, mask, ch)
        assert out.shape == z.shape and torch.isfinite(out).all()
    assert model(z, ts, src, None, None).shape == z.shape


FLAGS = ("multi_scale", "chord_conditioning", "chunked_attention", "concat_source", "inter_chunk")


@pytest.mark.parametrize("bits", range(2 ** len(FLAGS)))
def test_shapes_every_flag_combination(bits):
    flags = {name: bool(bits >> i & 1) for i, name in enumerate(FLAGS)}
    if not (flags["multi_scale"] or flags["concat_source"]):
        with pytest.raises(ValueError, match="source"):
            EditorConfig.preset("tiny", **flags)
        return
    cfg = EditorConfig.preset("tiny", **flags)
    model = EditorUNet(cfg)
    _perturb(model)
    args = _inputs(cfg, t=45)
    out = model(*args)
    assert out.shape == args[0].shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_text_encoder_config_matches_the_editor():
    from instructme.models.text import build_text_encoder

    cfg = EditorConfig.preset("tiny")
    enc = build_text_encoder(cfg.text_encoder_config())
    tokens, mask = enc.encode(["add a piano"])
    assert tokens.shape[-1] == cfg.text_dim
    model = EditorUNet(cfg)
    z = torch.randn(1, cfg.latent_channels, 12)
    assert model(z, torch.tensor([5]), z, tokens, mask).shape == z.shape


def test_fresh_model_predicts_zero():
    cfg = EditorConfig.preset("tiny")
    out = EditorUNet(cfg)(*_inputs(cfg))
    assert torch.count_nonzero(out) == 0


def test_fresh_multi_scale_branch_changes_nothing():
    torch.manual_seed(0)
    full = EditorUNet(EditorConfig.preset("tiny"))
    _perturb(full, skip="source_encoder.proj")
    plain = EditorUNet(EditorConfig.preset("tiny", multi_scale=False))
    missing, unexpected = plain.load_state_dict(full.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("source_encoder.") for k in unexpected)
    args = _inputs(full.config)
    a, b = full(*args), plain(*args)
    assert a.abs().mean() > 1e-3
    torch.testing.assert_close(a, b)
    with torch.no_grad():  # once trained (non-zero), the branch does change the output
        full.source_encoder.proj[1].weight.normal_(std=0.1)
    assert not torch.allclose(full(*args), b, atol=1e-4)


def test_conditioning_paths():
    cfg = EditorConfig.preset("tiny")
    model = EditorUNet(cfg)
    _perturb(model)
    z, ts, src, text, mask, chords = _inputs(cfg)
    base = model(z, ts, src, text, mask, chords)
    # Instruction: matters; padded tokens do not; all-masked == no text (null token only).
    assert not torch.allclose(model(z, ts, src, text.flip(1), mask, chords), base, atol=1e-4)
    text2 = text.clone()
    text2[0, 3:] = 100.0
    torch.testing.assert_close(model(z, ts, src, text2, mask, chords), base)
    off = torch.zeros_like(mask)
    torch.testing.assert_close(model(z, ts, src, text, off, chords),
                               model(z, ts, src, None, None, chords))
    # Chords: matter; all-zero rows == no chords.
    assert not torch.allclose(model(z, ts, src, text, mask, chords.roll(3, -1)), base,
                              atol=1e-4)
    torch.testing.assert_close(model(z, ts, src, text, mask, torch.zeros_like(chords)),
                               model(z, ts, src, text, mask, None))
    # Source and timestep matter.
    assert not torch.allclose(model(z, ts, src * 0.5, text, mask, chords), base, atol=1e-4)
    assert not torch.allclose(model(z, ts.flip(0), src, text, mask, chords), base, atol=1e-4)
    # Batch rows are independent.
    torch.testing.assert_close(model(z[1:], ts[1:], src[1:], text[1:], mask[1:], chords[1:]),
                               base[1:], atol=1e-5, rtol=1e-5)


def test_chords_ignored_without_chord_conditioning():
    cfg = EditorConfig.variant("tiny", "no-chord")
    model = EditorUNet(cfg)
    _perturb(model)
    z, ts, src, text, mask, chords = _inputs(cfg)
    torch.testing.assert_close(model(z, ts, src, text, mask, chords),
                               model(z, ts, src, text, mask, None))


def test_every_parameter_gets_a_gradient():
    cfg = EditorConfig.preset("tiny")
    model = EditorUNet(cfg)
    _perturb(model)
    model(*_inputs(cfg, t=40)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_save_load_round_trip(tmp_path):
    cfg = EditorConfig.variant("tiny", "full-attention", chunk_size=8)
    model = EditorUNet(cfg)
    _perturb(model)
    save_model(model, tmp_path / "editor")
    again = load_model(EditorUNet, tmp_path / "editor")
    assert again.config == cfg and isinstance(again.config.channel_mult, tuple)
    args = _inputs(cfg)
    torch.testing.assert_close(again(*args), model(*args))


def test_config_validation():
    with pytest.raises(ValueError, match="prediction_type"):
        EditorConfig(prediction_type="sample")
    with pytest.raises(ValueError, match="variant"):
        EditorConfig.variant("tiny", "nope")
    with pytest.raises(ValueError, match="source"):
        EditorConfig(multi_scale=False, concat_source=False)
    with pytest.raises(ValueError, match="attention_levels"):
        EditorConfig(attention_levels=(5,))
    model = EditorUNet(EditorConfig.preset("tiny"))
    z = torch.randn(1, 8, 10)
    with pytest.raises(ValueError, match="z_t must be .* and z_src"):
        model(z, torch.tensor([1]), z[:, :4], None, None)
    with pytest.raises(ValueError, match="chords"):
        model(z, torch.tensor([1]), z, None, None, torch.rand(1, 4, 3))
