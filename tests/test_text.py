"""Text encoders: the bundled MiniLM, a tiny random T5 saved locally, the hash encoder."""

from __future__ import annotations

import pytest
import torch

from instructme.errors import CheckpointError
from instructme.models.text import (
    TextEncoderConfig,
    build_text_encoder,
    pad_token_states,
)


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder(TextEncoderConfig())


def test_minilm_shapes_mask_and_frozen(minilm):
    tokens, mask = minilm.encode(["add a piano", "remove the drums from this song please"])
    assert tokens.shape[0] == 2 and tokens.shape[2] == 384 == minilm.dim
    assert mask.dtype == torch.bool and mask.shape == tokens.shape[:2]
    assert mask[1].all() and not mask[0].all()  # the short text is padded
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.training and not minilm.model.training


def test_minilm_padding_does_not_change_states(minilm):
    alone, m1 = minilm.encode(["add a piano"])
    minilm._cache.clear()
    together, m2 = minilm.encode(["add a piano", "a much longer instruction with many more words"])
    n = int(m1[0].sum())
    torch.testing.assert_close(together[0, :n], alone[0, :n], atol=1e-5, rtol=1e-4)
    assert not m2[0, n:].any()


def test_minilm_knows_paraphrases(minilm):
    v = torch.nn.functional.normalize(
        minilm.pooled(["remove the drums", "take out the drum kit", "add a violin"]), dim=-1)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1


def test_cache_hits_and_bounds(minilm, monkeypatch):
    minilm._cache.clear()
    minilm.encode(["x one", "x two"])
    calls = []
    orig = minilm._encode_batch
    monkeypatch.setattr(minilm, "_encode_batch", lambda t: calls.append(list(t)) or orig(t))
    minilm.encode(["x one", "x two", "x one", "x three"])
    assert calls == [["x three"]]
    minilm.cache_size = 2
    minilm.encode(["a", "b", "c"])
    assert len(minilm._cache) <= 3


def _tiny_t5_folder(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "add", "a", "piano", "remove", "the", "drums"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(words), d_model=16, d_kv=4, d_ff=32, num_layers=2,
                   num_heads=4, pad_token_id=0, eos_token_id=1)
    T5EncoderModel(cfg).save_pretrained(path)


def test_t5_from_local_folder(tmp_path):
    _tiny_t5_folder(tmp_path)
    enc = build_text_encoder(TextEncoderConfig(kind="t5", path=str(tmp_path)))
    tokens, mask = enc.encode(["add a piano", "remove the drums now"])
    assert enc.dim == 16 and tokens.shape == (2, 4, 16)
    assert mask.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.isfinite(tokens).all()
    assert not any(p.requires_grad for p in enc.parameters())


def test_t5_missing_weights_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="t5 text encoder") as e:
        build_text_encoder(TextEncoderConfig(kind="t5", path=str(tmp_path / "nope")))
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError):
        build_text_encoder(TextEncoderConfig(kind="t5", path=None))
    with pytest.raises(CheckpointError, match="unknown text encoder"):
        build_text_encoder(TextEncoderConfig(kind="bert"))


def test_hash_encoder_is_deterministic_and_order_aware():
    enc = build_text_encoder(TextEncoderConfig(kind="hash", dim=32))
    a, ma = enc.encode(["replace the guitar with strings", "add piano"])
    enc2 = build_text_encoder(TextEncoderConfig(kind="hash", dim=32))
    b, _ = enc2.encode(["replace the guitar with strings", "add piano"])
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 5, 32) and ma.sum(1).tolist() == [5, 2]
    c, _ = enc.encode(["replace the strings with guitar"])
    assert not torch.allclose(a[0], c[0])


def test_pad_token_states_empty_text():
    tokens, mask = pad_token_states([torch.zeros(0, 4), torch.ones(2, 4)], 4)
    assert tokens.shape == (2, 2, 4) and mask.tolist() == [[False, False], [True, True]]
