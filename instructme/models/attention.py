"""Chunk transformer and cross-attention (InstructME, arXiv 2308.14360, Method:
"Chunk Transformer").

Self-attention over a long latent sequence ``x: [B, T, D]`` costs ``O(T^2)``; the paper
splits the sequence into overlapping chunks, attends inside each chunk and fuses the chunk
outputs over the overlaps, so cost grows linearly with ``T`` and a whole song is edited in
one pass. Here:

* **intra-chunk** attention: chunks of ``chunk_size`` frames with hop
  ``chunk_size - overlap``; outputs are overlap-added with linear cross-fade weights
  (normalised, so every frame's weights sum to one);
* **inter-chunk** path: one summary token per chunk (masked mean), full attention between
  the ``n`` summaries, result cross-faded back onto the frames through a zero-initialised
  projection, so long-range structure is seen at ``O(n^2)`` with ``n = T / hop`` (tiny);
  with a single chunk the path is redundant and gated off;
* ``mode="full"``: ordinary full self-attention (ablation).

Cross-attention to conditioning tokens (instruction) takes a key padding mask; the chord
cross-attention is *local*: each frame attends to the chord frames within ``window`` frames
of itself (time-aligned, learned relative positions) plus a learned null token, which keeps
it linear in ``T`` and independent of absolute time (any song length).
All attention uses ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("chunked", "full")


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, T, H*d] -> [B, H, T, d]``."""
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, T, d] -> [B, T, H*d]``."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def _key_mask(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask [..., L]`` (True = attend) -> SDPA boolean mask ``[..., 1, 1, L]`` that never
    masks a whole row (rows with no valid key attend everywhere) and ``has_any [...]``."""
    has_any = mask.any(-1)
    safe = mask | ~has_any.unsqueeze(-1)
    return safe[..., None, None, :], has_any


def crossfade_window(chunk_size: int, overlap: int) -> torch.Tensor:
    """Linear cross-fade weights ``[chunk_size]``: ramps of ``overlap`` frames at both ends.

    Two neighbouring chunks' weights sum to one over their overlap.
    """
    i = torch.arange(chunk_size, dtype=torch.float32)
    ramp = torch.minimum(i + 1, chunk_size - i).clamp_max(overlap + 1)
    return ramp / (overlap + 1)


def chunk_layout(length: int, chunk_size: int, overlap: int) -> tuple[int, int, int]:
    """``(n_chunks, chunk, padded_length)`` covering ``length`` frames with hop
    ``chunk_size - overlap``. A sequence no longer than one chunk is one unpadded chunk."""
    if length <= chunk_size:
        return 1, length, length
    hop = chunk_size - overlap
    n = math.ceil((length - overlap) / hop)
    return n, chunk_size, (n - 1) * hop + chunk_size


class ChunkedSelfAttention(nn.Module):
    """Multi-head self-attention over ``x: [B, T, D]`` in overlapping chunks (or full).

    ``mask: [B, T]`` (True = valid frame) hides padded frames from every query.
    """

    def __init__(self, dim: int, heads: int, chunk_size: int = 64, overlap: int = 16,
                 mode: str = "chunked", inter_chunk: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        if mode not in MODES:
            raise ValueError(f"unknown attention mode {mode!r} (known: {', '.join(MODES)})")
        if not 0 <= overlap < chunk_size:
            raise ValueError(f"need 0 <= overlap ({overlap}) < chunk_size ({chunk_size})")
        self.heads, self.mode = heads, mode
        self.chunk_size, self.overlap = chunk_size, overlap
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.inter_chunk = inter_chunk and mode == "chunked"
        if self.inter_chunk:
            self.g_norm = nn.LayerNorm(dim)
            self.g_qkv = nn.Linear(dim, 3 * dim)
            self.g_out = nn.Linear(dim, dim)
            nn.init.zeros_(self.g_out.weight)
            nn.init.zeros_(self.g_out.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        attn_mask = None if mask is None else _key_mask(mask)[0]
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        q, k, v = (_heads(y, self.heads) for y in self.qkv(x).chunk(3, dim=-1))
        n, chunk, tp = chunk_layout(t, self.chunk_size, self.overlap)
        if self.mode == "full" or n == 1:
            out = self.out(_merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)))
            if self.inter_chunk:  # a single chunk already sees everything: gate the path off
                out = out + 0.0 * self._inter_chunk(x, mask, 1, t, t)
            return out
        hop = chunk - self.overlap
        pad = tp - t
        q, k, v = (F.pad(y, (0, 0, 0, pad)) for y in (q, k, v))
        maskp = F.pad(mask, (0, pad), value=False)
        h, d = q.shape[1], q.shape[3]

        def chunks(y: torch.Tensor) -> torch.Tensor:  # [B, H, Tp, d] -> [B*n, H, chunk, d]
            y = y.unfold(2, chunk, hop).permute(0, 2, 1, 4, 3)
            return y.reshape(b * n, h, chunk, d)

        attn_mask, _ = _key_mask(maskp.unfold(1, chunk, hop).reshape(b * n, chunk))
        o = F.scaled_dot_product_attention(chunks(q), chunks(k), chunks(v), attn_mask=attn_mask)
        o = o.view(b, n, h, chunk, d).permute(0, 2, 1, 3, 4).reshape(b, h, n * chunk, d)
        out = self._overlap_add(o, n, chunk, hop, tp)[:, :, :t]
        out = self.out(_merge(out))
        if self.inter_chunk:
            out = out + self._inter_chunk(x, mask, n, chunk, tp)
        return out

    def _overlap_add(self, frames: torch.Tensor, n: int, chunk: int, hop: int,
                     tp: int) -> torch.Tensor:
        """``frames [B, H, n*chunk, d]`` -> cross-faded sum ``[B, H, Tp, d]``."""
        dev = frames.device
        w = crossfade_window(chunk, self.overlap).to(dev, frames.dtype)
        idx = (torch.arange(n, device=dev)[:, None] * hop
               + torch.arange(chunk, device=dev)[None]).reshape(-1)
        wn = w.repeat(n)
        total = torch.zeros(tp, device=dev, dtype=frames.dtype).index_add_(0, idx, wn)
        shape = list(frames.shape)
        shape[2] = tp
        acc = frames.new_zeros(shape).index_add_(2, idx, frames * wn[:, None])
        return acc / total[:, None]

    def _inter_chunk(self, x: torch.Tensor, mask: torch.Tensor, n: int, chunk: int,
                     tp: int) -> torch.Tensor:
        """Attention between per-chunk summary tokens, cross-faded back: ``[B, T, D]``."""
        b, t, dim = x.shape
        hop = chunk - self.overlap if n > 1 else chunk
        xp = F.pad(x * mask[..., None].to(x.dtype), (0, 0, 0, tp - t))
        mp = F.pad(mask, (0, tp - t), value=False).to(x.dtype)
        xs = xp.unfold(1, chunk, hop).sum(-1)  # [B, n, D]
        counts = mp.unfold(1, chunk, hop).sum(-1)  # [B, n]
        summary = self.g_norm(xs / counts.clamp_min(1.0)[..., None])
        q, k, v = (_heads(y, self.heads) for y in self.g_qkv(summary).chunk(3, dim=-1))
        attn_mask, _ = _key_mask(counts > 0)
        g = self.g_out(_merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)))
        frames = g[:, :, None, :].expand(b, n, chunk, dim).reshape(b, 1, n * chunk, dim)
        if n == 1:
            return frames[:, 0, :t]
        return self._overlap_add(frames, n, chunk, hop, tp)[:, 0, :t]


class CrossAttention(nn.Module):
    """Queries ``x: [B, T, D]`` attend to ``context: [B, L, Dc]`` (``context_mask [B, L]``,
    True = real token). A row with no valid token gets a zero update."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = _heads(self.q(x), self.heads)
        k, v = (_heads(y, self.heads) for y in self.kv(context).chunk(2, dim=-1))
        if context_mask is None:
            return self.out(_merge(F.scaled_dot_product_attention(q, k, v)))
        attn_mask, has_any = _key_mask(context_mask)
        o = _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))
        return self.out(o * has_any[:, None, None].to(o.dtype))


class LocalCrossAttention(nn.Module):
    """Time-aligned local cross-attention: frame ``t`` of ``x: [B, T, D]`` attends to frames
    ``t-window .. t+window`` of ``context: [B, T, Dc]`` (same frame rate) plus a learned null
    token. Relative positions are learned; ``context_mask [B, T]`` hides frames (e.g. chords
    dropped for guidance or absent)."""

    def __init__(self, dim: int, context_dim: int, heads: int, window: int = 4) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.rel = nn.Parameter(torch.randn(2 * window + 1, dim) * 0.02)
        self.null_kv = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, dim = x.shape
        if context.shape[1] != t:
            raise ValueError(f"context length {context.shape[1]} != query length {t}")
        if context_mask is None:
            context_mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        w, span = self.window, 2 * self.window + 1
        k, v = self.kv(context).chunk(2, dim=-1)
        k, v = (F.pad(y, (0, 0, w, w)).unfold(1, span, 1).transpose(-1, -2) for y in (k, v))
        k = k + self.rel  # [B, T, span, D]
        m = F.pad(context_mask, (w, w), value=False).unfold(1, span, 1)  # [B, T, span]
        nk, nv = (y.expand(b, t, 1, dim) for y in self.null_kv[:, None, None, :].unbind(0))
        k, v = torch.cat([k, nk], 2), torch.cat([v, nv], 2)
        m = torch.cat([m, torch.ones(b, t, 1, dtype=torch.bool, device=x.device)], 2)
        h, d = self.heads, dim // self.heads
        # One query against span + 1 keys per frame: plain einsums beat B*T tiny SDPA calls.
        q = self.q(x).view(b, t, h, d)
        k, v = (y.reshape(b, t, span + 1, h, d) for y in (k, v))
        scores = torch.einsum("bthd,btshd->bths", q, k) / math.sqrt(d)
        scores = scores.masked_fill(~m[:, :, None, :], float("-inf"))
        o = torch.einsum("bths,btshd->bthd", scores.softmax(-1), v)
        return self.out(o.reshape(b, t, dim))


class FeedForward(nn.Module):
    """GEGLU feed-forward ``[B, T, D] -> [B, T, D]``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(self.drop(a * F.gelu(gate)))


class TransformerBlock(nn.Module):
    """Pre-norm block on ``x: [B, T, D]``: chunked self-attention, text cross-attention,
    optional local chord cross-attention (U-Net bottleneck, paper: "Chord Conditioning"),
    feed-forward."""

    def __init__(self, dim: int, heads: int, text_dim: int, chunk_size: int = 64,
                 overlap: int = 16, mode: str = "chunked", inter_chunk: bool = True,
                 chord_dim: int | None = None, chord_window: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = ChunkedSelfAttention(dim, heads, chunk_size, overlap, mode, inter_chunk)
        self.norm2 = nn.LayerNorm(dim)
        self.text_attn = CrossAttention(dim, text_dim, heads)
        self.chord_attn = None
        if chord_dim is not None:
            self.norm_c = nn.LayerNorm(dim)
            self.chord_attn = LocalCrossAttention(dim, chord_dim, heads, chord_window)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, text: torch.Tensor,
                text_mask: torch.Tensor | None, chords: torch.Tensor | None = None,
                chord_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), mask)
        x = x + self.text_attn(self.norm2(x), text, text_mask)
        if self.chord_attn is not None:
            if chords is None:
                raise ValueError("this block needs chord features")
            x = x + self.chord_attn(self.norm_c(x), chords, chord_mask)
        return x + self.ff(self.norm3(x))
