"""Shared input handling of the reference-vs-estimate audio metrics (codec, phase)."""

from __future__ import annotations

import numpy as np
import torch


def tensor_pair(ref: np.ndarray, est: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono ``ref, est: [N]`` cut to their common length -> float32 tensors ``[1, N]``."""
    n = min(len(ref), len(est))
    r = torch.as_tensor(np.asarray(ref[:n], dtype=np.float32))[None]
    e = torch.as_tensor(np.asarray(est[:n], dtype=np.float32))[None]
    return r, e
