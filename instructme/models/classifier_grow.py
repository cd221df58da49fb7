"""Grow a trained :class:`~instructme.models.classifier.InstrumentClassifier` into a wider one.

The instruction-accuracy judge (InstructME, arXiv 2308.14360, evaluation metrics) needs more
capacity than the ``small`` preset has (it underfits its own training mixes), and training a
wider model from scratch costs many CPU hours. :func:`grow_classifier` starts a wider model
*from* a trained one without changing what it computes (Net2WiderNet, Chen et al. 2016), so
training continues from the trained model's accuracy:

- A layer that gets wider (a conv block's outputs, the embedding) copies its old units and
  fills the new ones with copies of randomly chosen old units: rows of the weight, biases and
  batch-norm parameters *and* running statistics follow the same mapping ``g: new -> old``.
  Duplicated channels stay identical through batch norm (train or eval), ReLU, pooling and the
  mean/max over time.
- The layer reading them divides each input column by the number of copies of its unit, plus
  a noise that sums to zero over the copies: the sum over copies -- the output -- is the old
  one exactly, but the copies receive different gradients, so they do not stay identical.

The frontend (STFT, mel bands) and the number of blocks cannot change; the calibrated
thresholds carry over with the function they were calibrated for.
"""

from __future__ import annotations

import dataclasses

import torch

from instructme.errors import CheckpointError
from instructme.models.classifier import ClassifierConfig, InstrumentClassifier

#: Fields that must agree between the trained model and the grown one.
_SHARED_FIELDS = ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "instruments",
                  "styles")


def can_grow(src: ClassifierConfig, dst: ClassifierConfig) -> str | None:
    """None when ``src`` grows into ``dst``, else the reason it does not (one line)."""
    for f in _SHARED_FIELDS:
        a, b = getattr(src, f), getattr(dst, f)
        if isinstance(a, (list, tuple)):
            a, b = tuple(a), tuple(b)
        if a != b:
            return f"{f} differs ({a} vs {b})"
    if len(src.channels) != len(dst.channels):
        return f"{len(dst.channels)} conv blocks instead of {len(src.channels)}"
    for i, (a, b) in enumerate(zip(src.channels, dst.channels)):
        if b < a:
            return f"block {i + 1} would shrink ({a} -> {b} channels)"
    if dst.embed_dim < src.embed_dim:
        return f"the embedding would shrink ({src.embed_dim} -> {dst.embed_dim})"
    return None


def _mapping(old: int, new: int, gen: torch.Generator) -> torch.Tensor:
    """``g: [new]`` old unit of each new one: ``0..old-1``, then random picks."""
    extra = torch.randint(old, (new - old,), generator=gen)
    return torch.cat([torch.arange(old), extra])


def _columns(w: torch.Tensor, g: torch.Tensor, noise: float, gen: torch.Generator
             ) -> torch.Tensor:
    """Input columns (dim 1) of ``w`` read from duplicated units: ``w[:, g(j)] / count``
    plus a zero-sum noise within each group of copies (sums over copies are unchanged)."""
    old = w.shape[1]
    count = torch.bincount(g, minlength=old).to(w.dtype)  # [old]
    shape = [1, -1] + [1] * (w.dim() - 2)
    out = w[:, g] / count[g].view(shape)
    if noise > 0 and len(g) > old:
        eps = torch.randn(out.shape, generator=gen, dtype=w.dtype) * noise * float(w.abs().mean())
        group_sum = torch.zeros_like(w).index_add_(1, g, eps)
        eps = eps - (group_sum / count.view(shape))[:, g]
        out = out + eps
    return out


@torch.no_grad()
def grow_classifier(src: InstrumentClassifier, config: ClassifierConfig, noise: float = 0.01,
                    seed: int = 0) -> InstrumentClassifier:
    """A new :class:`InstrumentClassifier` with ``config`` that computes what ``src`` does.

    ``config``: ``src.config`` with wider ``channels`` and/or ``embed_dim`` (same number of
    blocks; every other field is taken from ``src``). ``noise``: size of the zero-sum
    perturbation of split weights relative to their mean absolute value.
    Raises :class:`CheckpointError` when ``src`` cannot grow into ``config``.
    """
    why = can_grow(src.config, config)
    if why is not None:
        raise CheckpointError(f"cannot grow this classifier into the requested one: {why}")
    config = dataclasses.replace(src.config, channels=tuple(config.channels),
                                 embed_dim=config.embed_dim)
    gen = torch.Generator().manual_seed(seed)
    s = src.state_dict()
    out = {k: v.clone() for k, v in s.items()
           if not k.startswith(("cnn.", "fc.", "instrument_head.", "style_head."))}
    g_in = torch.arange(1)  # the log-mel "image" has one channel
    for i, (c_old, c_new) in enumerate(zip(src.config.channels, config.channels)):
        for conv, bn in ((0, 1), (3, 4)):
            w = s[f"cnn.{i}.{conv}.weight"]  # [out, in, 3, 3]
            g_out = _mapping(c_old, c_new, gen)
            out[f"cnn.{i}.{conv}.weight"] = _columns(w, g_in, noise, gen)[g_out]
            for name in ("weight", "bias", "running_mean", "running_var"):
                out[f"cnn.{i}.{bn}.{name}"] = s[f"cnn.{i}.{bn}.{name}"][g_out]
            out[f"cnn.{i}.{bn}.num_batches_tracked"] = s[f"cnn.{i}.{bn}.num_batches_tracked"]
            g_in = g_out
    # fc reads [mean over time (C), max over time (C)]: both halves follow the last mapping.
    c_last = src.config.channels[-1]
    g_fc = torch.cat([g_in, g_in + c_last])
    g_emb = _mapping(src.config.embed_dim, config.embed_dim, gen)
    out["fc.weight"] = _columns(s["fc.weight"], g_fc, noise, gen)[g_emb]
    out["fc.bias"] = s["fc.bias"][g_emb]
    for head in ("instrument_head", "style_head"):
        out[f"{head}.weight"] = _columns(s[f"{head}.weight"], g_emb, noise, gen)
        out[f"{head}.bias"] = s[f"{head}.bias"].clone()
    dst = InstrumentClassifier(config)
    dst.load_state_dict(out)
    return dst.train(src.training)
