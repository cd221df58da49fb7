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

The encoder, the latent-rate decoder blocks and ``scaling_factor`` are copied unchanged.
"""

from __future__ import annotations

import dataclasses

import torch

from instructme.errors import CheckpointError
from instructme.models.vae import AudioVAE, VAEConfig

#: Fields that must agree between the trained model and the grown one.
_SHARED_FIELDS = ("sample_rate", "hop_length", "stft_hop", "n_fft", "latent_channels",
                  "frame_dim", "frame_blocks", "latent_dim", "latent_blocks", "kernel_size",
                  "mlp_ratio")

#: Fields of the sinusoidal low band: a model that has one keeps it as it is.
_SINE_FIELDS = ("sine_slots", "sine_n_fft", "sine_crossover", "sine_blocks")


def can_grow(src: VAEConfig, dst: VAEConfig) -> str | None:
    """None when ``src`` grows into ``dst``, else the reason it does not (one line)."""
    for f in _SHARED_FIELDS:
        if getattr(src, f) != getattr(dst, f):
            return f"{f} differs ({getattr(src, f)} vs {getattr(dst, f)})"
    if src.sine_slots and any(getattr(src, f) != getattr(dst, f) for f in _SINE_FIELDS):
        return "the sinusoidal low band differs"
    d_src, d_dst = src.decoder_frame_dim, dst.decoder_frame_dim
    if d_dst % d_src:
        return f"decoder width {d_dst} is not a multiple of {d_src}"
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
        if k not in s_sd and k.startswith(("enc_bass.", "sine_head.")):
            out[k] = d_sd[k].clone()  # a new sinusoidal low band (encoder side starts at 0)
        elif not k.startswith(("dec_up.1.", "dec_frame.", "dec_norm.", "head.")):
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
    dst.load_state_dict(out)
    return dst
