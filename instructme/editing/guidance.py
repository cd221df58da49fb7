"""Classifier-free guidance on the instruction (InstructME, arXiv 2308.14360, Method: the
instruction is dropped during training so that one model gives both predictions).

    pred = u + s (c - u)

``c``: the editor's prediction with the instruction, ``u``: with the instruction dropped (all
text masked, so the U-Net sees its learned null token only, as in training), ``s``: the
guidance scale (1: the conditional model alone, 0: the unconditional one). The source
latents and the chords condition both passes.

The two passes run as one batch of ``2B`` or, for long inputs on CPU, one after the other
(two batches of ``B``; see :data:`SPLIT_GUIDANCE_FRAMES`); both give the same prediction.
"""

from __future__ import annotations

import torch

__all__ = ["SPLIT_GUIDANCE_FRAMES", "EditorDenoiser", "classifier_free_guidance",
           "split_passes"]

#: On CPU, the conditional and unconditional passes run one after the other from this many
#: latent frames on (a batch of 2 stops fitting the CPU caches for long inputs; the model
#: card, ``models/instructme-small/README.md``, has the timings), else as one batch of 2.
SPLIT_GUIDANCE_FRAMES = 3000


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor,
                             scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)`` (scale 1: conditional model, 0: unconditional)."""
    return uncond + scale * (cond - uncond)


def split_passes(device: torch.device, frames: int) -> bool:
    """Whether guidance on ``device`` for ``frames`` latent frames runs its two passes one
    after the other (CPU, from :data:`SPLIT_GUIDANCE_FRAMES` frames on)."""
    return device.type == "cpu" and frames >= SPLIT_GUIDANCE_FRAMES


class EditorDenoiser:
    """Denoiser callable ``(z_t [B, C, T], t [B]) -> prediction [B, C, T]`` for the editor
    U-Net, with classifier-free guidance on the instruction.

    Holds the conditioning of one batch: ``z_src [B, C, T]``, ``text [B, L, Dt]``,
    ``text_mask [B, L]`` (None: all tokens), ``chords [B, Tc, K] | None``. With
    ``guidance_scale != 1`` the conditional and unconditional passes run as one ``2B`` batch,
    or with ``sequential`` as two batches of ``B``.
    """

    def __init__(self, model: torch.nn.Module, z_src: torch.Tensor, text: torch.Tensor | None,
                 text_mask: torch.Tensor | None, chords: torch.Tensor | None = None,
                 guidance_scale: float = 1.0, sequential: bool = False) -> None:
        self.model, self.z_src, self.chords = model, z_src, chords
        self.text, self.text_mask = text, text_mask
        self.scale = float(guidance_scale)
        self.sequential = bool(sequential)

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.text is None or self.scale == 1.0:
            return self.model(z_t, t, self.z_src, self.text, self.text_mask, self.chords)
        mask = self.text_mask
        if mask is None:
            mask = torch.ones(self.text.shape[:2], dtype=torch.bool, device=self.text.device)
        if self.sequential:
            cond = self.model(z_t, t, self.z_src, self.text, mask, self.chords)
            uncond = self.model(z_t, t, self.z_src, self.text, torch.zeros_like(mask),
                                self.chords)
        else:
            two = lambda x: None if x is None else torch.cat([x, x])  # noqa: E731
            pred = self.model(two(z_t), two(t), two(self.z_src), two(self.text),
                              torch.cat([mask, torch.zeros_like(mask)]), two(self.chords))
            cond, uncond = pred.chunk(2)
        return classifier_free_guidance(cond, uncond, self.scale)
