"""Model folders: ``config.json`` + ``model.safetensors`` (+ an optional model card).

``save_model(model, dir)`` and ``load_model(cls, dir)`` work for any ``nn.Module`` whose
constructor takes a single :class:`~instructme.config.Config` (stored as ``model.config``).
Writes are atomic; a missing or mismatched folder raises a one-line
:class:`~instructme.errors.CheckpointError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from instructme.errors import CheckpointError
from instructme.fileio import atomic_path, atomic_write_json

M = TypeVar("M", bound=torch.nn.Module)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_model(model: torch.nn.Module, directory: str | Path, extra: dict[str, Any] | None = None,
               state_dict: dict[str, torch.Tensor] | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` (the model's config, its class name, ``extra``) and weights.

    ``state_dict`` overrides the model's own weights (e.g. to save EMA weights). ``dtype``
    (e.g. ``torch.float16``) stores floating-point weights in that type: smaller files,
    loaded back into the model's own (float32) parameters by :func:`load_model`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {"model_class": type(model).__name__, **model.config.to_dict()}  # type: ignore[attr-defined]
    if extra:
        cfg["_extra"] = extra
    sd = state_dict if state_dict is not None else model.state_dict()
    tensors = {k: v.detach().to("cpu", dtype if dtype is not None and v.is_floating_point()
                                else v.dtype).contiguous() for k, v in sd.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(directory / CONFIG_NAME, cfg)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: model folder not found")
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_NAME} (not a model folder)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: not a model config (a JSON object)")
    return cfg


def load_model(cls: type[M], directory: str | Path, map_location: str = "cpu") -> M:
    """Rebuild ``cls`` from its folder; errors clearly if the folder holds another model."""
    directory = Path(directory)
    cfg = read_config(directory)
    found = cfg.pop("model_class", None)
    cfg.pop("_extra", None)
    if found is not None and found != cls.__name__:
        raise CheckpointError(f"{directory}: holds a {found}, expected a {cls.__name__}")
    config_cls = cls.config_class  # type: ignore[attr-defined]
    try:
        config = config_cls.from_dict(cfg)
    except CheckpointError as e:  # a field of the wrong type, an unknown field, ...
        raise CheckpointError(f"{directory / CONFIG_NAME}: {e}") from None
    model = cls(config)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
    try:
        sd = load_file(str(weights), device=map_location)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: unreadable weights ({e})") from None
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError:  # tensor shapes differ from what the config builds
        raise CheckpointError(f"{directory}: weight shapes do not match the config") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match the config "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    return model
