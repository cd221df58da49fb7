"""The editing U-Net (InstructME, arXiv 2308.14360, Method: U-Net,
multi-scale aggregation, chord conditioning).

A 1-D U-Net over the latent time axis predicts noise (or velocity) for the target latent
``z_t`` given the source latent ``z_src``, the instruction tokens and the source's chord
probability matrix:

    ``forward(z_t [B, C, T], t [B], z_src [B, C_s, T], text [B, L, Dt], text_mask [B, L],
    chords [B, Tc, K] | None) -> [B, C, T]``

* **Target** (``target``): ``mix``, the paper's, generates the whole edited mix
  (``C_s = C``); ``part`` generates only what is new (the added stem, the replacing stem or,
  for a remix, the whole mix) and its source is the mix's latent *and* the latent of the part
  it must follow (a replace's old instrument; silence otherwise) stacked on the channel axis
  (``C_s = 2C``): both enter the concatenation and the multi-scale encoder.

* ResBlocks with scale-shift timestep conditioning, stride-2 down / nearest up sampling,
  skip connections; transformer blocks (chunked self-attention + text cross-attention,
  :mod:`instructme.models.attention`) at the levels in ``attention_levels`` and at the
  bottleneck. Any ``T``: padded to a multiple of the total down-sampling (padded frames are
  hidden from attention) and cropped back.
* **Multi-scale aggregation** (``multi_scale``): a convolutional encoder over ``z_src``
  yields one feature map per U-Net resolution, each added to the U-Net's encoder features
  through a zero-initialised 1x1 projection (a fresh branch changes nothing).
  ``concat_source`` keeps AUDIT's input concatenation ``[z_t; z_src]``.
* **Chord conditioning** (``chord_conditioning``): the chord probability matrix (``chord_rate``
  frames/s) is resampled to the bottleneck frame times, embedded, and attended
  to by local cross-attention at the bottleneck. All-zero chord rows mean "no chord
  information" (absent or dropped for guidance) and are masked; a learned null token remains.
* Classifier-free guidance: a learned null text token is always prepended to the
  instruction; ``text_mask`` all False (or ``text=None``) is the unconditional model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from instructme.config import Config
from instructme.models.attention import TransformerBlock
from instructme.models.text import TextEncoderConfig

#: Ablation variants (the paper's ablation study): overrides applied to any preset.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-chord": dict(chord_conditioning=False),
    "no-multi-scale": dict(multi_scale=False),
    "full-attention": dict(chunked_attention=False),
    "audit": dict(multi_scale=False, chord_conditioning=False, chunked_attention=False,
                  concat_source=True),
}


@dataclasses.dataclass
class EditorConfig(Config):
    """Editor U-Net and its diffusion set-up (what a checkpoint needs to be used)."""

    latent_channels: int = 32
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = (1, 2)
    transformer_depth: int = 1
    head_dim: int = 32
    dropout: float = 0.0
    # Conditioning.
    text_dim: int = 384
    text_encoder: str = "minilm"  # TextEncoderConfig.kind the editor was trained with
    text_encoder_path: str | None = None
    chord_classes: int = 25
    chord_dim: int = 64
    chord_window: int = 4  # bottleneck frames either side
    latent_rate: float = 31.25  # latent frames per second (VAE)
    chord_rate: float = 10.0  # chord frames per second (chord recognizer)
    # The paper's mechanisms, each switchable for ablations.
    multi_scale: bool = True
    chord_conditioning: bool = True
    chunked_attention: bool = True
    inter_chunk: bool = True
    concat_source: bool = True
    target: str = "mix"  # "mix" (the paper's whole edited mix) or "part" (only what is new)
    chunk_size: int = 64
    chunk_overlap: int = 16
    # Diffusion.
    prediction_type: str = "v_prediction"  # or "epsilon"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    text_dropout: float = 0.1  # classifier-free guidance: p(instruction dropped)
    chord_dropout: float = 0.1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Tests: ~0.2 M parameters, milliseconds per step on one core.
        "tiny": dict(latent_channels=8, model_channels=16, channel_mult=(1, 2),
                     attention_levels=(1,), head_dim=8, text_dim=64, text_encoder="hash",
                     chord_dim=16, chord_window=2, chunk_size=16, chunk_overlap=4,
                     latent_rate=62.5),
        # CPU training.
        "small": dict(),
        # GPU.
        "large": dict(model_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=2,
                      attention_levels=(1, 2, 3), transformer_depth=1, head_dim=64,
                      chord_dim=128, chunk_size=128, chunk_overlap=32),
    }

    def __post_init__(self) -> None:
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be epsilon or v_prediction, "
                             f"got {self.prediction_type!r}")
        bad = [lvl for lvl in self.attention_levels if not 0 <= lvl < len(self.channel_mult)]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{len(self.channel_mult) - 1}")
        if not (self.multi_scale or self.concat_source):
            raise ValueError("the editor needs the source: enable multi_scale or concat_source")
        if self.target not in ("mix", "part"):
            raise ValueError(f"target must be mix or part, got {self.target!r}")

    @classmethod
    def variant(cls, preset: str, variant: str = "full", **overrides: Any) -> EditorConfig:
        """``preset`` with the ablation ``variant`` (see :data:`VARIANTS`) applied."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown editor variant {variant!r} "
                             f"(known: {', '.join(VARIANTS)})")
        return cls.preset(preset, **{**VARIANTS[variant], **overrides})

    @property
    def source_channels(self) -> int:
        """Channels of ``z_src``: the mix's latent, plus the followed part's for ``part``."""
        return self.latent_channels * (2 if self.target == "part" else 1)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    def text_encoder_config(self) -> TextEncoderConfig:
        """The :class:`~instructme.models.text.TextEncoderConfig` this editor was trained with."""
        return TextEncoderConfig(kind=self.text_encoder, path=self.text_encoder_path,
                                 dim=self.text_dim)


def _groups(ch: int) -> int:
    return math.gcd(32, ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``[B, Cin, T] -> [B, Cout, T]``; ``emb [B, E]`` scales and shifts (FiLM) the features."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int | None, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out) if emb_dim else None
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv1d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.emb is not None and emb is not None:
            scale, shift = self.emb(F.silu(emb))[..., None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class Transformer1d(nn.Module):
    """Transformer blocks on a feature map ``[B, C, T]`` (norm, 1x1 in, blocks, zero 1x1 out)."""

    def __init__(self, channels: int, cfg: EditorConfig, chords: bool = False) -> None:
        super().__init__()
        heads = max(1, channels // cfg.head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.proj_in = nn.Conv1d(channels, channels, 1)
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, heads, cfg.text_dim, cfg.chunk_size, cfg.chunk_overlap,
                             "chunked" if cfg.chunked_attention else "full", cfg.inter_chunk,
                             chord_dim=cfg.chord_dim if chords else None,
                             chord_window=cfg.chord_window, dropout=cfg.dropout)
            for _ in range(cfg.transformer_depth))
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cond: dict[str, Any]
                ) -> torch.Tensor:
        h = self.proj_in(self.norm(x)).transpose(1, 2)
        for blk in self.blocks:
            h = blk(h, mask, cond["text"], cond["text_mask"], cond.get("chords"),
                    cond.get("chord_mask"))
        return x + self.proj_out(h.transpose(1, 2))


class SourceEncoder(nn.Module):
    """Multi-scale aggregation encoder: ``z_src [B, C, T]`` -> one map per U-Net level,
    ``[B, targets[l], T / 2^l]``, each through a zero-initialised 1x1 projection (``targets``:
    the U-Net's widths where the maps are added: after ``conv_in`` and each down-sampler)."""

    def __init__(self, cfg: EditorConfig, channels: list[int], targets: list[int]) -> None:
        super().__init__()
        self.conv_in = nn.Conv1d(cfg.source_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.proj = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            self.blocks.append(ResBlock(prev, ch, None))
            self.proj.append(_zero(nn.Conv1d(ch, targets[i], 1)))
            if i < len(channels) - 1:
                self.downs.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
            prev = ch

    def forward(self, z_src: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(z_src)
        feats = []
        for i, blk in enumerate(self.blocks):
            h = blk(h)
            feats.append(self.proj[i](h))
            if i < len(self.downs):
                h = self.downs[i](h)
        return feats


class EditorUNet(nn.Module):
    """InstructME editing U-Net; see the module docstring for the interface."""

    config_class = EditorConfig

    def __init__(self, config: EditorConfig) -> None:
        super().__init__()
        self.config = c = config
        chans = [c.model_channels * m for m in c.channel_mult]
        emb_dim = 4 * c.model_channels
        self.time_embed = nn.Sequential(nn.Linear(c.model_channels, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        c_in = c.latent_channels + (c.source_channels if c.concat_source else 0)
        self.conv_in = nn.Conv1d(c_in, chans[0], 3, padding=1)
        self.source_encoder = (SourceEncoder(c, chans, [chans[0]] + chans[:-1])
                               if c.multi_scale else None)
        self.text_norm = nn.LayerNorm(c.text_dim)
        self.null_text = nn.Parameter(torch.randn(1, 1, c.text_dim) * 0.02)
        if c.chord_conditioning:
            self.chord_embed = nn.Sequential(nn.Linear(c.chord_classes, c.chord_dim), nn.SiLU(),
                                             nn.Linear(c.chord_dim, c.chord_dim))

        self.down_blocks = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skip_ch = [chans[0]]
        ch = chans[0]
        for level, out_ch in enumerate(chans):
            for _ in range(c.num_res_blocks):
                self.down_blocks.append(ResBlock(ch, out_ch, emb_dim, c.dropout))
                self.down_attn.append(Transformer1d(out_ch, c) if level in c.attention_levels
                                      else nn.Identity())
                ch = out_ch
                skip_ch.append(ch)
            if level < len(chans) - 1:
                self.downsamplers.append(nn.Conv1d(ch, ch, 3, stride=2, padding=1))
                skip_ch.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, c.dropout)
        self.mid_attn = Transformer1d(ch, c, chords=c.chord_conditioning)
        self.mid2 = ResBlock(ch, ch, emb_dim, c.dropout)

        self.up_blocks = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level in reversed(range(len(chans))):
            out_ch = chans[level]
            for _ in range(c.num_res_blocks + 1):
                self.up_blocks.append(ResBlock(ch + skip_ch.pop(), out_ch, emb_dim, c.dropout))
                self.up_attn.append(Transformer1d(out_ch, c) if level in c.attention_levels
                                    else nn.Identity())
                ch = out_ch
            if level > 0:
                self.upsamplers.append(nn.Conv1d(ch, ch, 3, padding=1))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(),
                                 _zero(nn.Conv1d(ch, c.latent_channels, 3, padding=1)))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ conditioning
    def _text_context(self, text: torch.Tensor | None, text_mask: torch.Tensor | None,
                      b: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prepend the learned null token: ``[B, 1 + L, Dt]`` and its mask."""
        null = self.null_text.to(ref.dtype).expand(b, 1, -1)
        ones = torch.ones(b, 1, dtype=torch.bool, device=ref.device)
        if text is None:
            return null, ones
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=ref.device)
        ctx = torch.cat([null, self.text_norm(text.to(ref.dtype))], dim=1)
        return ctx, torch.cat([ones, text_mask.to(torch.bool)], dim=1)

    def _chord_context(self, chords: torch.Tensor | None, b: int, t_mid: int, valid_mid: int,
                       ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Chord probabilities resampled to the bottleneck frame times and embedded:
        ``[B, T_mid, chord_dim]`` and a mask ``[B, T_mid]`` (False: no chord information)."""
        c = self.config
        if chords is None:
            chords = torch.zeros(b, 1, c.chord_classes, device=ref.device)
        if chords.dim() != 3 or chords.shape[-1] != c.chord_classes:
            raise ValueError(f"chords must be [B, Tc, {c.chord_classes}], got "
                             f"{tuple(chords.shape)}")
        tc = chords.shape[1]
        step = c.downsample_factor
        times = (torch.arange(t_mid, device=ref.device, dtype=torch.float32) * step + 0.5)
        pos = times / c.latent_rate * c.chord_rate  # fractional chord frame per bottleneck frame
        lo = pos.floor().clamp(0, tc - 1).long()
        hi = (lo + 1).clamp_max(tc - 1)
        frac = (pos - lo.float()).clamp(0, 1)[None, :, None]
        probs = chords.float()
        p = probs[:, lo] * (1 - frac) + probs[:, hi] * frac  # [B, T_mid, K]
        mask = (p.sum(-1) > 0.5) & (pos <= tc - 0.5)[None]
        mask[:, valid_mid:] = False
        return self.chord_embed(p.to(ref.dtype)), mask

    # ------------------------------------------------------------------ forward
    def forward(self, z_t: torch.Tensor, t: torch.Tensor, z_src: torch.Tensor,
                text: torch.Tensor | None, text_mask: torch.Tensor | None,
                chords: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``epsilon`` / ``v`` for ``z_t [B, C, T]`` at timesteps ``t [B]``."""
        c = self.config
        if (z_t.dim() != 3 or z_t.shape[1] != c.latent_channels or z_src.dim() != 3
                or z_src.shape[1] != c.source_channels
                or (z_src.shape[0], z_src.shape[2]) != (z_t.shape[0], z_t.shape[2])):
            raise ValueError(f"z_t must be [B, {c.latent_channels}, T] and z_src "
                             f"[B, {c.source_channels}, T], got {tuple(z_t.shape)} and "
                             f"{tuple(z_src.shape)}")
        b, _, t_len = z_t.shape
        t = torch.as_tensor(t, device=z_t.device)
        if t.dim() == 0:
            t = t.expand(b)
        f = c.downsample_factor
        pad = (-t_len) % f
        if pad:
            z_t, z_src = F.pad(z_t, (0, pad)), F.pad(z_src, (0, pad))
        tp = t_len + pad
        masks = []  # per level: [B, T_l] valid frames, or None when nothing is padded
        for level in range(len(c.channel_mult)):
            n_l, valid = tp >> level, -(-t_len // (1 << level))
            if valid == n_l:
                masks.append(None)
            else:
                m = torch.zeros(b, n_l, dtype=torch.bool, device=z_t.device)
                m[:, :valid] = True
                masks.append(m)

        # sinusoidal embedding of (possibly fractional) timesteps, [B] -> [B, C] (cos, sin)
        t_emb = get_timestep_embedding(t, c.model_channels, flip_sin_to_cos=True,
                                       downscale_freq_shift=0)
        emb = self.time_embed(t_emb.to(z_t.dtype))
        ctx, ctx_mask = self._text_context(text, text_mask, b, z_t)
        cond: dict[str, Any] = {"text": ctx, "text_mask": ctx_mask}
        feats = self.source_encoder(z_src) if self.source_encoder is not None else None

        h = self.conv_in(torch.cat([z_t, z_src], 1) if c.concat_source else z_t)
        if feats is not None:
            h = h + feats[0]
        skips = [h]
        i = 0
        for level in range(len(c.channel_mult)):
            for _ in range(c.num_res_blocks):
                h = self.down_blocks[i](h, emb)
                if isinstance(self.down_attn[i], Transformer1d):
                    h = self.down_attn[i](h, masks[level], cond)
                skips.append(h)
                i += 1
            if level < len(c.channel_mult) - 1:
                h = self.downsamplers[level](h)
                if feats is not None:
                    h = h + feats[level + 1]
                skips.append(h)

        mid_cond = dict(cond)
        if c.chord_conditioning:
            valid_mid = -(-t_len // f)
            mid_cond["chords"], mid_cond["chord_mask"] = self._chord_context(
                chords, b, h.shape[-1], valid_mid, h)
        h = self.mid1(h, emb)
        h = self.mid_attn(h, masks[-1], mid_cond)
        h = self.mid2(h, emb)

        i = 0
        for u, level in enumerate(reversed(range(len(c.channel_mult)))):
            for _ in range(c.num_res_blocks + 1):
                h = self.up_blocks[i](torch.cat([h, skips.pop()], 1), emb)
                if isinstance(self.up_attn[i], Transformer1d):
                    h = self.up_attn[i](h, masks[level], cond)
                i += 1
            if level > 0:
                h = self.upsamplers[u](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)[:, :, :t_len]
