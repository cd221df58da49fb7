"""Exponential moving averages of a model's weights, behind one interface for the trainer.

Two kinds, each the library's own implementation:

- :class:`DiffusersEMA`: ``diffusers.training_utils.EMAModel`` over the parameters, with its
  warm-up (``decay = 1 - (1 + step / inv_gamma) ** -power``), as in the diffusers and
  latent-diffusion trainers (the VAE and the editor);
- :class:`AveragedEMA`: ``torch.optim.swa_utils.AveragedModel`` with
  ``get_ema_multi_avg_fn``, which also averages buffers (batch-norm statistics; the chord
  recognizer and the classifier).

Both register with ``accelerate`` for checkpointing and swap their weights into the live
model for evaluation and export with :meth:`applied`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from diffusers.training_utils import EMAModel
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA(Protocol):
    """What the trainer needs of an average of the weights."""

    def update(self, model: nn.Module) -> None: ...

    def applied(self, model: nn.Module) -> Any: ...

    def checkpoint_object(self) -> Any: ...


class DiffusersEMA:
    """``EMAModel`` over ``parameters`` (``decay`` and warm-up ``power`` as diffusers')."""

    def __init__(self, parameters: Any, decay: float, power: float, foreach: bool = False
                 ) -> None:
        self.ema = EMAModel(parameters, decay=decay, use_ema_warmup=True, power=power,
                            foreach=foreach)

    def update(self, model: nn.Module) -> None:
        self.ema.step(model.parameters())

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the averaged parameters; its own are restored on exit."""
        self.ema.store(model.parameters())
        self.ema.copy_to(model.parameters())
        try:
            yield model
        finally:
            self.ema.restore(model.parameters())

    def checkpoint_object(self) -> Any:
        return self.ema


class AveragedEMA:
    """``AveragedModel`` (parameters and buffers) of ``model`` with a constant ``decay``."""

    def __init__(self, model: nn.Module, decay: float, device: torch.device) -> None:
        self.avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                                 use_buffers=True)
        self.avg.to(device)

    def update(self, model: nn.Module) -> None:
        self.avg.update_parameters(model)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` holding the averaged weights and buffers; its own are restored on exit."""
        own = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.avg.module.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def checkpoint_object(self) -> Any:
        return self.avg


@contextmanager
def maybe_applied(ema: EMA | None, model: nn.Module) -> Iterator[nn.Module]:
    """``ema.applied(model)``, or ``model`` itself when there is no average."""
    if ema is None:
        yield model
    else:
        with ema.applied(model) as m:
            yield m
