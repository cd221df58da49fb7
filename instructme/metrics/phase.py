"""Low-band phase-derivative distance ("bass IF" in ``instructme eval vae``).

The VAE decoder predicts STFT magnitude and phase (Vocos-style head) and is trained on
magnitude losses (multi-scale mel, multi-resolution STFT) plus a discriminator, so the phase
it draws is free. A sustained bass note needs its phase to advance by the same amount from
frame to frame; a decoder that does not do this draws the bass as noise with the right
envelope. This metric measures how far it is from doing so.

It compares the *instantaneous frequency* of output and reference in the low band: the phase
advance between consecutive frames of a long-window STFT, the unit phasor of
``P[f, t] = X[f, t + 1] conj(X[f, t])``, as ``sum w |u_est - u_ref|^2 / sum w`` with weights
``w = |P_ref|`` (only bins where the reference sounds count). ``|u_est - u_ref|^2 =
2 - 2 cos(dphi)`` is the smooth form of APNet's anti-wrapped phase distance (Ai & Ling,
2023). A constant delay changes every frame's phase alike and leaves the *advance* unchanged,
so the metric does not ask for sample alignment, only for coherent low partials: 0 for a
perfect or delayed copy. Measured values (Opus, the shipped VAEs, a bass line with random
phase) and a trial of the metric as a training loss, not kept, are in
``models/vae-medium/README.md``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from instructme.metrics.pairs import tensor_pair


class LowBandPhaseDistance(nn.Module):
    """Magnitude-weighted instantaneous-frequency distance below ``max_hz``.

    Args:
        sample_rate: audio rate (Hz).
        n_fft: STFT window (long, for bass resolution: 2048 at 16 kHz = 7.8 Hz bins).
        hop: STFT hop; small enough that in-bin frequency errors stay well under half a turn
            per hop (128 at 16 kHz: a 15 Hz error is 0.75 rad).
        max_hz: highest frequency scored.
    """

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop: int = 128,
                 max_hz: float = 500.0, floor: float = 0.1, eps: float = 1e-7) -> None:
        super().__init__()
        self.n_fft, self.hop, self.floor, self.eps = n_fft, hop, floor, eps
        self.n_bins = int(max_hz * n_fft / sample_rate) + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _advance(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` -> ``X[f, t + 1] conj(X[f, t])`` for the low bins, ``[B, F, T-1]``
        (its angle is the phase advance, its modulus the product of the magnitudes)."""
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, return_complex=True,
                          center=True)[:, :self.n_bins]
        return spec[..., 1:] * spec[..., :-1].conj()

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``est, ref: [B, N]`` (or ``[B, 1, N]``) -> scalar in ``[0, 4]``.

        The output's phasor is normalised by ``max(|P_est|, floor * |P_ref|)``: exactly a unit
        phasor wherever the output has at least ``floor`` of the reference's level, and a
        bounded gradient (instead of ``1 / |P_est|``) where it is nearly silent.
        """
        est, ref = est.reshape(est.shape[0], -1), ref.reshape(ref.shape[0], -1)
        p_ref = self._advance(ref).detach()
        w = p_ref.abs()
        u_ref = p_ref / (w + self.eps)
        p_est = self._advance(est)
        u_est = p_est / (torch.maximum(p_est.abs(), self.floor * w) + self.eps)
        dist = (u_est - u_ref).abs().square()
        return (w * dist).sum() / (w.sum() + self.eps)


def bass_phase_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    """:class:`LowBandPhaseDistance` of ``est`` against ``ref`` (``[N]`` arrays; lower is
    better, 0 = same phase advance in every sounding bin under 500 Hz)."""
    r, e = tensor_pair(ref, est)
    with torch.no_grad():
        return float(LowBandPhaseDistance(sample_rate)(e, r))
