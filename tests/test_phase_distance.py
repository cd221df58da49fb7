"""The low-band phase-derivative (instantaneous frequency) distance of ``eval vae``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.metrics.phase import LowBandPhaseDistance, bass_phase_distance

SR = 16_000


def _bass(freq: float, seconds: float = 1.0, shift: int = 0) -> torch.Tensor:
    t = (np.arange(int(seconds * SR)) + shift) / SR
    x = 0.5 * np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t + 0.4)
    return torch.from_numpy(x.astype(np.float32))[None]


def test_zero_for_identical_and_time_shifted_signals() -> None:
    loss = LowBandPhaseDistance(SR)
    x = _bass(82.4)
    assert float(loss(x, x)) < 1e-6
    # A constant delay moves every frame's phase alike: the phase *advance* is unchanged.
    # (Only the first and last frames, where the padding differs, see the shift.)
    assert float(loss(_bass(82.4, shift=37), x)) < 0.02


def test_metric_form_and_codec_report() -> None:
    from instructme.metrics.codec import codec_metrics

    x = _bass(110.0)[0].numpy()
    assert bass_phase_distance(x, x, SR) < 1e-6
    assert bass_phase_distance(x, _bass(118.0)[0].numpy(), SR) > 0.1
    m = codec_metrics(x, x, SR)
    assert set(m) == {"mel", "mrstft", "si_sdr", "bass_if"} and m["bass_if"] < 1e-6


def test_large_for_detuned_or_incoherent_bass() -> None:
    loss = LowBandPhaseDistance(SR)
    x = _bass(82.4)
    detuned = float(loss(_bass(90.0), x))  # 7.6 Hz off: ~0.38 rad more phase per 128-hop
    assert detuned > 0.1
    # Same magnitudes frame by frame, random phase per frame: what a phase-blind decoder draws.
    spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True)
    rnd = torch.polar(spec.abs(), torch.rand(spec.shape, generator=torch.Generator().manual_seed(0))
                      * 2 * torch.pi)
    noisy = torch.istft(rnd, 512, 128, window=torch.hann_window(512), length=x.shape[-1])
    assert float(loss(noisy, x)) > 0.1
    # Above max_hz nothing is scored.
    high = _bass(2000.0)
    assert float(loss(_bass(2100.0), high)) < 1e-3 * float(loss(_bass(90.0), x)) + 1e-4


def test_silent_reference_is_finite_and_shapes_accepted() -> None:
    loss = LowBandPhaseDistance(SR)
    est = torch.randn(2, 1, SR // 2, requires_grad=True)
    value = loss(est, torch.zeros(2, 1, SR // 2))
    assert torch.isfinite(value) and float(value.detach()) == pytest.approx(0.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(est.grad).all()
