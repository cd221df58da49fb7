"""Grow a trained :class:`~instructme.models.vae.AudioVAE` into a wider, deeper decoder.

The encoder defines the latent space the editor works in (InstructME, arXiv 2308.14360,
method overview: the diffusion model edits VAE latents); the decoder alone decides how well
those latents sound. :func:`grow_vae` starts a bigger decoder from a trained one *without
changing what it computes* (Net2WiderNet, Chen et al. 2016, plus zero-initialised residual
blocks), so fine-tuning resumes from the trained model's quality instead of from noise:

- **Wider** frame stage (``dec_frame_dim = r x frame_dim``, ``r`` an integer): every channel is
  repeated ``r`` times. Depthwise convolutions, biases, LayerNorm affine parameters and layer
  scales are repeated; LayerNorm statistics over repeated channels are unchanged; the hidden
  units of each MLP are repeated too; a linear layer reading repeated inputs gets its weight
  split into ``r`` copies that sum to the old one. The split is ``W/r + noise``, with noises
  that sum to zero over the copies: the output is unchanged exactly, but the copies receive
  different gradients, so they do not stay identical during training.
- **Deeper** frame stage: extra ConvNeXt blocks after the grown ones, with layer scale
  ``gamma = 0`` (identity at start; they switch on as training moves ``gamma``).
- **Low-band head** added (``low_n_fft``, a crossover that takes the bass away from the main
  head): the output cannot stay the same, but it starts close. Each long-STFT bin's weights
  are the main head's weights interpolated to its frequency (a short frame's spectrum sampled
  more finely is the spectrum of that frame zero-padded), with two bias corrections: the phase
  of the short frame's centre inside the long frame, and the ratio of the windows' overlap-add
  gains (``low_n_fft / n_fft``) in the log-magnitude. See :func:`low_head_from_main`.

The encoder, the latent-rate decoder blocks and ``scaling_factor`` are copied unchanged.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE, VAEConfig

#: Fields that must agree between the trained model and the grown one.
_SHARED_FIELDS = ("sample_rate", "hop_length", "stft_hop", "n_fft", "latent_channels",
                  "frame_dim", "frame_blocks", "latent_dim", "latent_blocks", "kernel_size",
                  "mlp_ratio")


def can_grow(src: VAEConfig, dst: VAEConfig) -> str | None:
    """None when ``src`` grows into ``dst``, else the reason it does not (one line)."""
    for f in _SHARED_FIELDS:
        if getattr(src, f) != getattr(dst, f):
            return f"{f} differs ({getattr(src, f)} vs {getattr(dst, f)})"
    d_src, d_dst = src.decoder_frame_dim, dst.decoder_frame_dim
    if d_dst % d_src:
        return f"decoder width {d_dst} is not a multiple of {d_src}"
    if src.low_n_fft and (src.low_n_fft, src.low_from_hz, src.low_to_hz) != (
            dst.low_n_fft, dst.low_from_hz, dst.low_to_hz):
        return "the low-band head differs (it can be added, not changed or dropped)"
    if dst.decoder_frame_blocks < src.decoder_frame_blocks:
        return (f"decoder has fewer frame blocks ({dst.decoder_frame_blocks} < "
                f"{src.decoder_frame_blocks})")
    return None


def _repeat(t: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """``r`` whole copies along ``dim``: ``[a, b] -> [a, b, a, b]`` for ``r = 2``."""
    return torch.cat([t] * r, dim=dim)


def _split(w: torch.Tensor, r: int, noise: float, gen: torch.Generator) -> torch.Tensor:
    """``w: [out, in]`` -> ``[out, r * in]`` whose ``r`` blocks sum to ``w`` exactly."""
    parts = [w / r for _ in range(r)]
    if noise > 0 and r > 1:
        scale = noise * float(w.abs().mean())
        eps = [torch.randn(w.shape, generator=gen, dtype=w.dtype) * scale for _ in range(r)]
        mean = sum(eps) / r
        parts = [p + e - mean for p, e in zip(parts, eps)]
        parts[-1] = w - sum(parts[:-1])  # the copies sum to w (up to rounding)
    return torch.cat(parts, dim=1)


def low_head_from_main(weight: torch.Tensor, bias: torch.Tensor, config: VAEConfig
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Main head ``weight: [2 * bins, D]``, ``bias: [2 * bins]`` -> a low-band head's
    ``([2 * low_bins, D], [2 * low_bins])`` drawing about the same bass (see module docstring).

    Row ``j`` of the long STFT (frequency ``j * sr / low_n_fft``) linearly interpolates the main
    rows at fractional bin ``j * n_fft / low_n_fft``, for log-magnitude and phase alike; the
    phase bias adds ``-2 pi j s / low_n_fft`` (the short frame starts ``s = (low_n_fft -
    n_fft) / 2`` samples into the centred long one) and the log-magnitude bias
    ``log(low_n_fft / n_fft)`` (the iSTFT divides by a window overlap sum that many times
    larger, the frame's samples being about the same)."""
    c = config
    bins, k = c.n_fft // 2 + 1, c.low_bins
    pos = torch.arange(k, dtype=torch.float64) * c.n_fft / c.low_n_fft
    lo = pos.floor().long().clamp(max=bins - 2)
    a = (pos - lo).to(weight.dtype)

    def interp(rows: torch.Tensor) -> torch.Tensor:
        return rows[lo] * (1 - a).view(-1, *[1] * (rows.dim() - 1)) + \
            rows[lo + 1] * a.view(-1, *[1] * (rows.dim() - 1))

    w_mag, w_phase = weight[:bins], weight[bins:]
    b_mag, b_phase = bias[:bins], bias[bins:]
    shift = (c.low_n_fft - c.n_fft) / 2
    j = torch.arange(k, dtype=bias.dtype)
    new_w = torch.cat([interp(w_mag), interp(w_phase)])
    new_b = torch.cat([interp(b_mag) + math.log(c.low_n_fft / c.n_fft),
                       interp(b_phase) - 2 * math.pi * j * shift / c.low_n_fft])
    return new_w, new_b


@torch.no_grad()
def grow_vae(src: AudioVAE, config: VAEConfig, noise: float = 0.01, seed: int = 0) -> AudioVAE:
    """A new :class:`AudioVAE` with ``config`` that computes what ``src`` computes.

    ``noise``: size of the zero-sum perturbation of split weights, relative to their mean
    absolute value (breaks the symmetry between copies; the function is unchanged).
    Raises :class:`CheckpointError` when ``src`` cannot grow into ``config`` (see
    :func:`can_grow`). ``config.scaling_factor`` is replaced by ``src``'s.
    """
    why = can_grow(src.config, config)
    if why is not None:
        raise CheckpointError(f"cannot grow this VAE into the requested one: {why}")
    config = dataclasses.replace(config, scaling_factor=src.config.scaling_factor)
    gen = torch.Generator().manual_seed(seed)
    dst = AudioVAE(config)
    r = config.decoder_frame_dim // src.config.decoder_frame_dim
    s_sd, d_sd = src.state_dict(), dst.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k in d_sd:
        if not k.startswith(("dec_up.1.", "dec_frame.", "dec_norm.", "head.", "low_head.")):
            out[k] = s_sd[k].clone()  # encoder and latent-rate decoder: unchanged
    # Transposed conv up to the frame rate: weight [latent_dim, frame_dim, k] -> repeat outputs.
    out["dec_up.1.weight"] = _repeat(s_sd["dec_up.1.weight"], r, 1)
    out["dec_up.1.bias"] = _repeat(s_sd["dec_up.1.bias"], r, 0)
    n_src = src.config.decoder_frame_blocks
    for i in range(config.decoder_frame_blocks):
        p = f"dec_frame.{i}."
        if i >= n_src:  # a new block: random weights, switched off by gamma = 0
            for name in ("dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias",
                         "pw1.weight", "pw1.bias", "pw2.weight", "pw2.bias"):
                out[p + name] = d_sd[p + name].clone()
            out[p + "gamma"] = torch.zeros_like(d_sd[p + "gamma"])
            continue
        for name in ("dwconv.weight", "dwconv.bias", "norm.weight", "norm.bias", "gamma"):
            out[p + name] = _repeat(s_sd[p + name], r, 0)
        # pw1: repeated inputs (split weights), repeated hidden units (repeated rows).
        out[p + "pw1.weight"] = _repeat(_split(s_sd[p + "pw1.weight"], r, noise, gen), r, 0)
        out[p + "pw1.bias"] = _repeat(s_sd[p + "pw1.bias"], r, 0)
        # pw2: repeated hidden inputs (split), repeated output channels.
        out[p + "pw2.weight"] = _repeat(_split(s_sd[p + "pw2.weight"], r, noise, gen), r, 0)
        out[p + "pw2.bias"] = _repeat(s_sd[p + "pw2.bias"], r, 0)
    out["dec_norm.weight"] = _repeat(s_sd["dec_norm.weight"], r, 0)
    out["dec_norm.bias"] = _repeat(s_sd["dec_norm.bias"], r, 0)
    out["head.weight"] = _split(s_sd["head.weight"], r, noise, gen)
    out["head.bias"] = s_sd["head.bias"].clone()
    if config.low_n_fft and src.config.low_n_fft:  # kept (split like the main head)
        out["low_head.weight"] = _split(s_sd["low_head.weight"], r, noise, gen)
        out["low_head.bias"] = s_sd["low_head.bias"].clone()
    elif config.low_n_fft:  # added: interpolated from the (grown) main head
        out["low_head.weight"], out["low_head.bias"] = low_head_from_main(
            out["head.weight"], out["head.bias"], config)
    dst.load_state_dict(out)
    return dst
