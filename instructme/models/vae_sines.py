"""The VAE decoder's sinusoidal low band: held bass notes at their own pitch.

A decoder that draws STFT frames from a latent sequence (:mod:`instructme.models.vae`) holds
only multiples of ``sample_rate / hop_length`` (31.25 Hz) while a note is held: the latent
repeats, every repeated latent frame decodes to the same ``hop_length`` samples, and a signal
that repeats every 512 samples holds only that grid. In the bass the grid is coarser than a
semitone, so held bass notes came back at wrong pitches.

This module draws the band below a crossover (default 200-350 Hz) with an oscillator bank
instead, the sinusoidal model of McAulay & Quatieri (1986) with a quadratically interpolated
FFT peak estimate (Smith & Serra 1987):

- **Analysis** (:func:`analyze_peaks`, the training target): a ``n_fft``-point Hann STFT of
  the input with one frame per latent frame (frame ``t`` centred on sample
  ``t * hop + hop / 2``); in each bin ``k`` under the crossover, a spectral peak (local
  maximum within ``floor_db`` of the frame's loudest bin) gives a partial: its amplitude and
  its offset from the bin centre by parabolic interpolation of the log-magnitude.
- **Prediction** (:class:`SineHead`): ConvNeXt blocks on the decoder's latent-rate features
  -> per slot (bin) and frame: peak logit, log-amplitude, offset in ``[-0.5, 0.5]`` bins.
- **Synthesis** (:func:`synthesize`): one oscillator per slot, amplitude and frequency
  interpolated linearly between frame centres, phase integrated in closed form per segment
  (exact for the linear frequency ramp), so a frequency between grid points is held as long
  as the note is. Works on any length in chunks of frames (memory bounded for 5-minute songs).

InstructME (arXiv 2308.14360) decodes its edited latents with the VAE decoder (method
overview, decoder D); this is a component of that decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def lowpass_gain(freqs: torch.Tensor, f_lo: float, f_hi: float) -> torch.Tensor:
    """Crossover weight: 1 below ``f_lo``, a raised cosine down to 0 at ``f_hi`` (same shape)."""
    r = ((freqs - f_lo) / (f_hi - f_lo)).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * r))


def slot_frequencies(n_slots: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Centre frequency (Hz) of each slot ``[K]``: slot ``k`` is STFT bin ``k + 1``."""
    return (torch.arange(n_slots, dtype=torch.float32) + 1.0) * sample_rate / n_fft


def low_band_stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """The sine band's STFT of ``x: [B, N]``: complex ``[B, n_fft // 2 + 1, ceil(N / hop)]``,
    Hann window, frame ``t`` centred on sample ``t * hop + hop / 2`` (the middle of latent
    frame ``t``). The encoder's view of the bass and the peak analysis both read it."""
    n = x.shape[-1]
    t = -(-n // hop)
    xs = F.pad(x.float(), (0, t * hop - n))[:, hop // 2:]
    win = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(xs, n_fft, hop, window=win, center=True, pad_mode="constant",
                      return_complex=True)[..., :t]
    if spec.shape[-1] < t:  # inputs shorter than one hop
        spec = F.pad(spec, (0, t - spec.shape[-1]))
    return spec


def analyze_peaks(x: torch.Tensor, n_slots: int, n_fft: int, hop: int,
                  floor_db: float = -60.0, abs_floor_db: float = -80.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spectral peaks of ``x: [B, N]`` per slot and frame.

    Returns ``mask, log_amp, offset``, each ``[B, K, T]`` with ``T = ceil(N / hop)``: ``mask``
    1.0 where bin ``k + 1`` is a local maximum within ``floor_db`` of the frame's loudest bin
    and above ``abs_floor_db`` (dBFS of a sine), ``log_amp`` the natural log of the partial's
    amplitude (a sine of amplitude ``a`` gives ``log(a)``), ``offset`` its distance from the
    bin centre in bins (parabolic interpolation of the log-magnitude, Smith & Serra 1987).
    """
    lm = torch.log(low_band_stft(x, n_fft, hop).abs() + 1e-7)  # [B, bins, T]
    a, m, c = lm[:, 0:n_slots], lm[:, 1:n_slots + 1], lm[:, 2:n_slots + 2]
    gain = math.log(n_fft / 4)  # a sine of amplitude 1 peaks at |X| = sum(w) / 2 = n_fft / 4
    floor = torch.maximum(lm.amax(dim=1, keepdim=True) + floor_db / 20 * math.log(10),
                          torch.full_like(m[:, :1], abs_floor_db / 20 * math.log(10) + gain))
    mask = (m > a) & (m >= c) & (m > floor)
    den = (a - 2 * m + c).clamp(max=-1e-6)
    offset = (0.5 * (a - c) / den).clamp(-0.5, 0.5)
    log_amp = m - 0.25 * (a - c) * offset - gain
    return mask.float(), log_amp, torch.where(mask, offset, torch.zeros_like(offset))


def synthesize(amp: torch.Tensor, offset: torch.Tensor, n_fft: int, hop: int,
               sample_rate: int, length: int, chunk_frames: int = 64) -> torch.Tensor:
    """Oscillator bank: ``amp, offset: [B, K, T]`` (amplitude, bin offset) -> ``[B, length]``.

    Frame ``t`` sits at sample ``t * hop + hop / 2``; amplitude and frequency are linear
    between frame centres (held constant before the first and after the last), and each
    slot's phase is the exact integral of its frequency, accumulated across frames in
    float64 so that hours of audio stay in tune.
    """
    b, k, t = amp.shape
    freq = slot_frequencies(k, n_fft, sample_rate).to(amp)[None, :, None] + offset * (
        sample_rate / n_fft)  # [B, K, T] Hz
    # T + 1 segments of ``hop`` samples from frame centre i - 1 to i, starting at sample
    # -hop / 2 (frame -1 and frame T repeat the first and last frames); cropped at the end.
    a0 = torch.cat([amp[..., :1], amp], dim=-1)
    a1 = torch.cat([amp, amp[..., -1:]], dim=-1)
    f0 = torch.cat([freq[..., :1], freq], dim=-1).double()
    f1 = torch.cat([freq, freq[..., -1:]], dim=-1).double()  # [B, K, T+1]
    w = 2 * math.pi / sample_rate
    dphi = w * hop * 0.5 * (f0 + f1)  # phase advance over each segment
    phi = (torch.cumsum(dphi, dim=-1) - dphi).remainder(2 * math.pi)  # at segment starts
    # Within a segment the phase grows by at most 2 pi f_max hop / sr (tens of radians), so
    # float32 is exact enough there; only the running sum across segments needs float64.
    phi = phi.to(amp.dtype)
    f0, f1 = f0.to(amp.dtype), f1.to(amp.dtype)
    s = torch.arange(hop, device=amp.device, dtype=amp.dtype)
    frac = s / hop
    out = []
    for i in range(0, t + 1, chunk_frames):
        sl = slice(i, i + chunk_frames)
        fa, fb = f0[..., sl, None], f1[..., sl, None]
        ph = phi[..., sl, None] + w * (fa * s + (fb - fa) * s * s / (2 * hop))
        env = a0[..., sl, None] + (a1[..., sl, None] - a0[..., sl, None]) * frac
        out.append((env * torch.sin(ph)).sum(1).reshape(b, -1))
    y = torch.cat(out, dim=-1)[:, hop // 2:]
    return y[:, :length] if y.shape[-1] >= length else F.pad(y, (0, length - y.shape[-1]))


@dataclass
class SinePrediction:
    """The sine head's output, each ``[B, K, T]``: peak ``logit``, natural-log amplitude
    ``log_amp`` and bin ``offset`` in ``[-0.5, 0.5]`` per slot and latent frame."""

    logit: torch.Tensor
    log_amp: torch.Tensor
    offset: torch.Tensor

    def frequencies(self, config: Any) -> torch.Tensor:
        """Partial frequencies in Hz ``[B, K, T]`` (``config``: a ``VAEConfig``)."""
        k = self.offset.shape[1]
        centres = slot_frequencies(k, config.sine_n_fft, config.sample_rate).to(self.offset)
        return centres[None, :, None] + self.offset * (config.sample_rate / config.sine_n_fft)

    def amplitude(self, config: Any) -> torch.Tensor:
        """Oscillator amplitudes ``[B, K, T]``: P(peak) x amplitude x the crossover weight."""
        gain = lowpass_gain(self.frequencies(config).detach(), *config.sine_crossover)
        return torch.sigmoid(self.logit) * torch.exp(self.log_amp.clamp(max=0.0)) * gain


class SineHead(nn.Module):
    """Decoder features ``[B, D, T]`` (latent rate) -> ``logit, log_amp, offset`` ``[B, K, T]``."""

    def __init__(self, dim: int, n_slots: int, blocks: int, kernel_size: int, mlp_ratio: int,
                 block: type[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[block(dim, kernel_size, mlp_ratio, 0.1)
                                      for _ in range(blocks)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, 3 * n_slots)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.blocks(h)
        o = self.out(self.norm(h.transpose(1, 2))).transpose(1, 2)
        logit, log_amp, offset = o.chunk(3, dim=1)
        return logit, log_amp - 5.0, 0.5 * torch.tanh(offset)
