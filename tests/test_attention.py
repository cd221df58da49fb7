"""Chunk transformer: equivalence with full attention, a loop reference, masks, any length."""

from __future__ import annotations

import pytest
import torch

from instructme.models.attention import (
    ChunkedSelfAttention,
    CrossAttention,
    LocalCrossAttention,
    TransformerBlock,
    chunk_layout,
    crossfade_window,
)

D, H = 16, 4


def _pair(chunk: int, overlap: int, seed: int = 0):
    torch.manual_seed(seed)
    chunked = ChunkedSelfAttention(D, H, chunk, overlap, mode="chunked", inter_chunk=True)
    for p in chunked.parameters():  # non-trivial weights everywhere, inter-chunk path included
        torch.nn.init.normal_(p, std=0.3)
    full = ChunkedSelfAttention(D, H, chunk, overlap, mode="full")
    missing, unexpected = full.load_state_dict(chunked.state_dict(), strict=False)
    assert not missing and all(k.startswith("g_") for k in unexpected)
    return chunked, full


@pytest.mark.parametrize("t", [1, 5, 16])
def test_one_chunk_equals_full_attention(t):
    chunked, full = _pair(chunk=16, overlap=4)
    x = torch.randn(2, t, D)
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1, t // 2 + 1:] = False
    for m in (None, mask):
        torch.testing.assert_close(chunked(x, m), full(x, m), atol=1e-5, rtol=1e-5)


def _reference(mod: ChunkedSelfAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Loop-over-chunks reference of the intra-chunk path (no inter-chunk path)."""
    b, t, _ = x.shape
    n, chunk, tp = chunk_layout(t, mod.chunk_size, mod.overlap)
    hop = chunk - mod.overlap
    w = crossfade_window(chunk, mod.overlap)
    q, k, v = mod.qkv(x).chunk(3, dim=-1)
    acc = torch.zeros(b, t, D)
    tot = torch.zeros(t)
    dh = D // H
    for i in range(n):
        s = i * hop
        e = min(s + chunk, t)
        for bi in range(b):
            keys = [j for j in range(s, e) if mask[bi, j]] or list(range(s, e))
            for hh in range(H):
                sl = slice(hh * dh, (hh + 1) * dh)
                att = (q[bi, s:e, sl] @ k[bi, keys, sl].T) / dh ** 0.5
                acc[bi, s:e, sl] += w[: e - s, None] * (att.softmax(-1) @ v[bi, keys, sl])
        tot[s:e] += w[: e - s]
    return mod.out(acc / tot[:, None])


@pytest.mark.parametrize("t", [17, 40, 53])
def test_chunked_matches_loop_reference(t):
    torch.manual_seed(1)
    mod = ChunkedSelfAttention(D, H, chunk_size=16, overlap=5, inter_chunk=False)
    x = torch.randn(2, t, D)
    mask = torch.rand(2, t) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(mod(x, mask), _reference(mod, x, mask), atol=1e-5, rtol=1e-4)


def test_crossfade_sums_to_one_in_overlaps():
    chunk, overlap = 12, 4
    n, c, tp = chunk_layout(50, chunk, overlap)
    w = crossfade_window(c, overlap)
    total = torch.zeros(tp)
    for i in range(n):
        total[i * (c - overlap): i * (c - overlap) + c] += w
    interior = total[overlap: tp - overlap]
    torch.testing.assert_close(interior, torch.ones_like(interior))
    assert (w > 0).all()


def test_intra_chunk_is_local_and_inter_chunk_path_reaches_far():
    chunked, _ = _pair(chunk=8, overlap=2)
    x = torch.randn(1, 64, D)
    y = x.clone()
    y[:, 40:] += torch.randn(24, D)  # far outside the first chunk
    local = ChunkedSelfAttention(D, H, 8, 2, inter_chunk=False)
    local.load_state_dict(chunked.state_dict(), strict=False)
    torch.testing.assert_close(local(x)[:, :6], local(y)[:, :6])
    assert not torch.allclose(chunked(x)[:, :6], chunked(y)[:, :6], atol=1e-4)


def test_fresh_inter_chunk_path_is_zero_initialised():
    torch.manual_seed(0)
    a = ChunkedSelfAttention(D, H, 8, 2, inter_chunk=True)
    b = ChunkedSelfAttention(D, H, 8, 2, inter_chunk=False)
    b.load_state_dict(a.state_dict(), strict=False)
    x = torch.randn(2, 37, D)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("mode", ["chunked", "full"])
def test_masked_frames_change_nothing(mode):
    chunked, full = _pair(chunk=8, overlap=3)
    mod = chunked if mode == "chunked" else full
    t = 45
    x = torch.randn(2, t, D)
    mask = torch.rand(2, t) > 0.4
    mask[:, :2] = True
    y = torch.where(mask[..., None], x, torch.randn_like(x) * 10)
    torch.testing.assert_close(mod(x, mask)[mask], mod(y, mask)[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("t", [1, 2, 7, 8, 9, 31, 100])
def test_any_length(t):
    chunked, _ = _pair(chunk=8, overlap=3)
    out = chunked(torch.randn(3, t, D))
    assert out.shape == (3, t, D) and torch.isfinite(out).all()


def test_fully_masked_chunk_stays_finite():
    chunked, _ = _pair(chunk=8, overlap=2)
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[:, 10:30] = False
    out = chunked(torch.randn(1, 40, D), mask)
    assert torch.isfinite(out).all()


def test_cross_attention_respects_key_padding():
    torch.manual_seed(0)
    ca = CrossAttention(D, 12, H)
    x, ctx = torch.randn(2, 9, D), torch.randn(2, 5, 12)
    m = torch.tensor([[True, True, False, False, False], [True] * 5])
    ctx2 = ctx.clone()
    ctx2[0, 2:] = torch.randn(3, 12) * 5
    torch.testing.assert_close(ca(x, ctx, m), ca(x, ctx2, m))
    torch.testing.assert_close(ca(x, ctx, m)[:1], ca(x[:1], ctx[:1, :2]))
    none = ca(x, ctx, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(none).all()
    torch.testing.assert_close(none, ca.out.bias.expand_as(none))


def test_local_cross_attention_window_and_null():
    torch.manual_seed(0)
    la = LocalCrossAttention(D, 6, H, window=2)
    x, c = torch.randn(1, 20, D), torch.randn(1, 20, 6)
    c2 = c.clone()
    c2[:, 10:] += 4.0
    a, b = la(x, c), la(x, c2)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # frames 0..7 see chords 0..9 only
    assert not torch.allclose(a[:, 8:], b[:, 8:])
    off = torch.zeros(1, 20, dtype=torch.bool)
    torch.testing.assert_close(la(x, c, off), la(x, c2, off))  # null token only


def test_transformer_block_shapes_and_chord_requirement():
    blk = TransformerBlock(D, H, text_dim=12, chunk_size=8, overlap=2, chord_dim=6)
    x = torch.randn(2, 21, D)
    text, tm = torch.randn(2, 4, 12), torch.ones(2, 4, dtype=torch.bool)
    out = blk(x, None, text, tm, torch.randn(2, 21, 6), None)
    assert out.shape == x.shape
    with pytest.raises(ValueError):
        blk(x, None, text, tm)
