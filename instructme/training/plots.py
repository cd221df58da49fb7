"""Loss-curve PNGs from a trainer's JSONL log (one record per line, each with ``step``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from instructme.fileio import atomic_path


def plot_losses(log_path: Path, png_path: Path, names: Sequence[str]) -> None:
    """One panel per logged term of ``names`` found in the JSONL log ``log_path``, against
    the step (log scale where positive), written atomically to ``png_path``."""
    if not log_path.is_file():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    curves = {k: [(r["step"], r[k]) for r in records if k in r] for k in names}
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
        if min(vals) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
