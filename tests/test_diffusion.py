"""Diffusion: targets vs diffusers, samplers with an analytic Gaussian denoiser, guidance."""

from __future__ import annotations

import pytest
import torch

from instructme.diffusion import Diffusion
from instructme.editing.guidance import EditorDenoiser, classifier_free_guidance
from instructme.samplers import SAMPLERS

MU = torch.tensor([2.0, -1.0, 0.0, 0.5])
STD = torch.tensor([0.5, 1.0, 0.2, 2.0])


def gaussian_denoiser(diff: Diffusion):
    """Exact posterior-mean denoiser for data ~ N(MU, STD^2) (per dimension)."""

    def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ac = diff.alphas_cumprod[t][:, None]
        a, s = ac.sqrt(), (1 - ac).sqrt()
        x0 = MU + a * STD**2 / (a**2 * STD**2 + s**2) * (x_t - a * MU)
        eps = (x_t - a * x0) / s
        return eps if diff.prediction_type == "epsilon" else a * eps - s * x0

    return fn


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_targets_match_diffusers(prediction_type):
    diff = Diffusion(prediction_type)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, 5, generator=g), torch.randn(6, 3, 5, generator=g)
    t = torch.tensor([0, 10, 250, 500, 900, 999])
    xt = diff.add_noise(x0, noise, t)
    torch.testing.assert_close(xt, diff.scheduler.add_noise(x0, noise, t))
    tgt = diff.target(x0, noise, t)
    ref = noise if prediction_type == "epsilon" else diff.scheduler.get_velocity(x0, noise, t)
    torch.testing.assert_close(tgt, ref)
    keep = slice(0, 5)  # epsilon -> x0 is ill-conditioned at t = T
    torch.testing.assert_close(diff.predict_x0(tgt, xt, t)[keep], x0[keep], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_training_loss_oracle_vs_zero_model(prediction_type):
    diff = Diffusion(prediction_type)
    c = torch.full((64, 2, 8), 0.7)  # delta-distributed data: the exact denoiser is known

    def oracle(x_t, t):
        a, s = diff._coeffs(t, x_t)
        eps = (x_t - a * c) / s
        return eps if prediction_type == "epsilon" else a * eps - s * c

    g = torch.Generator().manual_seed(0)
    assert diff.training_loss(oracle, c, g) < 1e-8
    zero = diff.training_loss(lambda x, t: torch.zeros_like(x), c, g)
    assert 0.3 < zero < 1.5


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_samplers_recover_gaussian_data(sampler, prediction_type):
    diff = Diffusion(prediction_type)
    steps = {"ddpm": 100, "ddim": 50, "dpm": 25}[sampler]
    x = diff.sample(gaussian_denoiser(diff), (8000, 4), sampler=sampler, steps=steps,
                    generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x.mean(0), MU, atol=0.06, rtol=0.0)
    torch.testing.assert_close(x.std(0), STD, atol=0.02, rtol=0.05)


def test_second_order_solver_beats_ddim_at_few_steps():
    diff = Diffusion()
    err = {}
    for sampler in ("ddim", "dpmsolver++"):
        x = diff.sample(gaussian_denoiser(diff), (8000, 4), sampler=sampler, steps=10,
                        generator=torch.Generator().manual_seed(0))
        err[sampler] = (x.std(0) / STD - 1).abs().mean()
    assert err["dpmsolver++"] < 0.6 * err["ddim"]


def test_sampling_is_deterministic_and_reports_progress():
    diff = Diffusion()
    den = gaussian_denoiser(diff)
    seen = []
    a = diff.sample(den, (5, 4), steps=7, generator=torch.Generator().manual_seed(3),
                    callback=lambda i, n: seen.append((i, n)))
    b = diff.sample(den, (5, 4), steps=7, generator=torch.Generator().manual_seed(3))
    c = diff.sample(den, (5, 4), steps=7, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert seen == [(i, 7) for i in range(1, 8)]
    d1 = diff.sample(den, (5, 4), sampler="ddpm", steps=5,
                     generator=torch.Generator().manual_seed(1))
    d2 = diff.sample(den, (5, 4), sampler="ddpm", steps=5,
                     generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(d1, d2)


def test_bad_sampler_and_prediction_type():
    with pytest.raises(ValueError, match="prediction_type"):
        Diffusion("sample")
    with pytest.raises(ValueError, match="sampler"):
        Diffusion().make_sampler("euler")
    with pytest.raises(ValueError, match="steps"):
        Diffusion().make_sampler("ddim", 0)


def test_editor_denoiser_guidance():
    from instructme.models.unet import EditorConfig, EditorUNet

    torch.manual_seed(0)
    model = EditorUNet(EditorConfig.preset("tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    b, t = 2, 20
    z, src = torch.randn(b, 8, t), torch.randn(b, 8, t)
    text, mask = torch.randn(b, 4, 64), torch.ones(b, 4, dtype=torch.bool)
    ts = torch.tensor([100, 400])
    cond = model(z, ts, src, text, mask)
    uncond = model(z, ts, src, None, None)
    torch.testing.assert_close(EditorDenoiser(model, src, text, mask, None, 1.0)(z, ts), cond)
    torch.testing.assert_close(EditorDenoiser(model, src, text, mask, None, 0.0)(z, ts), uncond,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(EditorDenoiser(model, src, text, mask, None, 3.0)(z, ts),
                               classifier_free_guidance(cond, uncond, 3.0), atol=1e-5, rtol=1e-5)
    diff = Diffusion.from_config(model.config)
    out = diff.sample(EditorDenoiser(model, src, text, mask, None, 2.0), (b, 8, t), steps=4,
                      generator=torch.Generator().manual_seed(0))
    assert out.shape == (b, 8, t) and torch.isfinite(out).all()
