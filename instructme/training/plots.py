"""Loss-curve PNGs from a trainer's JSONL log (one record per line, each with ``step``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from instructme.fileio import atomic_path


def plot_losses(log_path: Path, png_path: Path, names: Sequence[str]) -> None:
    """One panel per logged term of ``names`` found in the JSONL log ``log_path``, against
    the step (log scale where positive and spanning more than a decade), written atomically
    to ``png_path``. A dotted name (``eval.macro_f1``) reads a nested value. A resumed run
    logs again the steps after its checkpoint: the later record of a step wins."""
    if not log_path.is_file():
        return
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    by_step: dict[tuple[int, tuple[str, ...]], dict] = {}
    for r in lines:  # records of one step with other fields (evaluations) are kept apart
        by_step[(int(r["step"]), tuple(sorted(r)))] = r
    records = [by_step[k] for k in sorted(by_step)]
    curves = {k: [(r["step"], v) for r in records if (v := _lookup(r, k)) is not None]
              for k in names}
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(curves), 1, figsize=(8, 1.8 * len(curves)), sharex=True,
                             squeeze=False)
    for ax, (name, pts) in zip(axes[:, 0], curves.items()):
        steps, vals = zip(*pts)
        ax.plot(steps, vals, lw=1)
        ax.set_ylabel(name)
        if min(vals) > 0 and max(vals) > 10 * min(vals):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _lookup(record: dict, name: str) -> float | None:
    value: object = record
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None
