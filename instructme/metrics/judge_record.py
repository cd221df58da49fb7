"""What a classifier folder records of its own measured accuracy (``accuracy.json``).

``instructme eval classifier --record in-domain|unseen`` writes the measurement into the
model folder; every ``instructme eval edits`` report prints it beside the IA judge's name,
so that a reader knows how far to trust instruction accuracy, above all on timbres the
judge never heard (``unseen``: a ``data render-eval`` set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instructme.errors import ManifestError
from instructme.fileio import atomic_write_json

ACCURACY_NAME = "accuracy.json"
LABELS = ("in-domain", "unseen")


def timbres_of(data_dir: str | Path) -> str:
    """The soundfonts a dataset folder was rendered with, in words (from ``build.json``)."""
    path = Path(data_dir) / "build.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return "unknown soundfonts"
    if "render_eval" in info:
        return f"{info['render_eval']['soundfont']} (re-rendered)"
    cfg = info.get("config", {})
    names = cfg.get("soundfonts") or [Path(str(cfg.get("soundfont", "?"))).stem]
    return ", ".join(str(n) for n in names)


def record_accuracy(model_dir: str | Path, label: str, data_dir: str | Path, split: str,
                    items: int, seconds: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """Store ``metrics`` (of ``evaluate_classifier``) as the model's ``label`` accuracy."""
    if label not in LABELS:
        raise ManifestError(f"unknown accuracy label {label!r} (known: {', '.join(LABELS)})")
    path = Path(model_dir) / ACCURACY_NAME
    records = read_accuracy(model_dir)
    records[label] = {"data": str(data_dir), "timbres": timbres_of(data_dir), "split": split,
                      "items": int(items), "seconds": float(seconds),
                      "macro_f1": float(metrics["macro_f1"]),
                      "style_accuracy": metrics.get("style_accuracy"),
                      "per_class_f1": {k: float(v["f1"])
                                       for k, v in metrics.get("per_class", {}).items()}}
    atomic_write_json(path, records)
    return records


def read_accuracy(model_dir: str | Path) -> dict[str, Any]:
    """The recorded accuracies of a classifier folder (empty when none was recorded)."""
    path = Path(model_dir) / ACCURACY_NAME
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except ValueError:
        raise ManifestError(f"{path}: not valid JSON") from None


def describe_accuracy(model_dir: str | Path) -> str:
    """One line for reports: macro-F1 and style accuracy in-domain and on unseen timbres."""
    records = read_accuracy(model_dir)
    parts = []
    for label in LABELS:
        r = records.get(label)
        if r is None:
            parts.append(f"{label} accuracy not measured")
            continue
        style = (f", style accuracy {r['style_accuracy']:.3f}"
                 if r.get("style_accuracy") is not None else "")
        parts.append(f"{label} ({r['timbres']}, {r['items']} mixes of {r['seconds']:g} s): "
                     f"macro-F1 {r['macro_f1']:.3f}{style}")
    return "; ".join(parts)
