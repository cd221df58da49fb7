"""Writing the edit report: JSON, Markdown tables, metric bar charts, spectrogram triples.

Used by :func:`instructme.metrics.report.evaluate_edits`. Plots use matplotlib's object API
(``Figure`` + Agg canvas), so no global backend state is touched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import librosa
import numpy as np

from instructme.fileio import atomic_path, atomic_write_json, atomic_write_jsonl, atomic_write_text

METRIC_TITLES = {
    "ia": "IA (instruction accuracy, higher is better)",
    "cra": "CRA vs target chords (majmin, higher is better)",
    "cra_score": "CRA vs score chords (majmin, higher is better)",
    "pch": "PCH overlap with target (higher is better)",
    "ioi": "IOI overlap with target (higher is better)",
}
SYSTEM_ORDER = ("output", "source", "random", "target")
SYSTEM_COLORS = {"output": "#1f77b4", "source": "#ff7f0e", "random": "#7f7f7f",
                 "target": "#2ca02c"}


def write_report(out_dir: Path, report: dict[str, Any], per_clip: list[dict[str, Any]],
                 examples: list[dict[str, Any]], sr: int) -> None:
    """Write ``report.json``, ``report.md``, ``per_clip.jsonl`` and the PNGs into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_metric_plots(out_dir, report)
    plots += write_spectrograms(out_dir, examples, sr)
    report["files"] = {"markdown": "report.md", "per_clip": "per_clip.jsonl", "plots": plots}
    atomic_write_json(out_dir / "report.json", _json_safe(report))
    atomic_write_jsonl(out_dir / "per_clip.jsonl", (_json_safe(r) for r in per_clip))
    atomic_write_text(out_dir / "report.md", markdown(report))


def _threshold_text(threshold: float | list[float]) -> str:
    if isinstance(threshold, list):
        return f"per-class thresholds {min(threshold):g}-{max(threshold):g}"
    return f"threshold {threshold:g}"


def markdown(report: dict[str, Any]) -> str:
    """The per-task table (one row per task x system) with the models named above it."""
    emb_names = [e["name"] for e in report["embeddings"]]
    dims = {e["name"]: e["dim"] for e in report["embeddings"]}
    lines = [
        "# Edit evaluation report", "",
        f"- manifest: `{report['manifest']}` ({report['n_records']} edits), outputs: "
        f"`{report['outputs']}`, data: `{report['data']}`",
        f"- chord recognizer (CRA): {report['chord_recognizer'] or 'n/a'}",
        f"- classifier (IA, {_threshold_text(report['threshold'])}): "
        f"{report['classifier'] or 'n/a'}",
    ]
    for e in report["embeddings"]:
        lines.append(f"- FAD embedding `{e['name']}`: {e['description']}")
    for metric, reason in sorted(report["not_available"].items()):
        lines.append(f"- n/a `{metric}`: {reason}")
    if report.get("length_mismatch"):
        lines.append(f"- {report['length_mismatch']} outputs differ in length from their "
                     "target (cut or zero-padded to the target)")
    lines += [
        "",
        "Systems: `output` = the model's edit; anchors: `target` = the target itself (perfect), "
        "`source` = the unedited source (do nothing), `random` = the target of another song's "
        "record. FAD compares each system's clips with all targets of the task (lower is "
        "better); IA, CRA, PCH and IOI are means over clips (higher is better). FAD values "
        "marked * rest on fewer embedding windows than the embedding has dimensions: "
        "such covariances are rank-deficient and the value is noisy. The random anchor is "
        "drawn from the same pool of targets, so its FAD over `all` tends to 0 as clips grow: "
        "FAD compares distributions, not clips; the per-clip metrics catch the mismatch.", "",
    ]
    head = ["task", "system", "n"] + [f"FAD {n}" for n in emb_names] + [
        "IA", "CRA", "CRA (score)", "PCH", "IOI"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    for task, systems in report["tasks"].items():
        for system in SYSTEM_ORDER:
            e = systems[system]
            cells = [task, system, str(e["n"])]
            cells += [_fmt(e["fad"].get(n), 3) + ("*" if e["fad"].get(n) is not None and
                                                    e["fad_windows"][n] < dims[n] else "")
                      for n in emb_names]
            cells += [_fmt(e[m]) for m in ("ia", "cra", "cra_score", "pch", "ioi")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_metric_plots(out_dir: Path, report: dict[str, Any]) -> list[str]:
    """One grouped bar chart per metric (tasks on x, one bar per system). Returns file names."""
    tasks = list(report["tasks"])
    metrics: list[tuple[str, str, Any]] = [
        (f"fad_{e['name']}", f"FAD, embedding {e['name']} (lower is better)",
         lambda entry, n=e["name"]: entry["fad"].get(n))
        for e in report["embeddings"]
    ]
    metrics += [(m, t, lambda entry, m=m: entry[m]) for m, t in METRIC_TITLES.items()]
    files = []
    for key, title, get in metrics:
        values = {s: [get(report["tasks"][t][s]) for t in tasks] for s in SYSTEM_ORDER}
        if all(v is None for vs in values.values() for v in vs):
            continue
        name = f"metrics_{_safe_name(key)}.png"
        _bar_chart(out_dir / name, title, tasks, values)
        files.append(name)
    return files


def write_spectrograms(out_dir: Path, examples: list[dict[str, Any]], sr: int) -> list[str]:
    """One PNG per example: log-mel spectrograms of source / output / target, stacked."""
    files = []
    for k, ex in enumerate(examples):
        name = f"spectrograms_{k:02d}_{_safe_name(ex['task'])}.png"
        _spectrogram_triple(out_dir / name, ex, sr)
        files.append(name)
    return files


def _bar_chart(path: Path, title: str, tasks: list[str],
               values: dict[str, list[float | None]]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(7.0, 1.3 * len(tasks) + 3), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(values)
    x = np.arange(len(tasks))
    for k, (system, vals) in enumerate(values.items()):
        heights = [np.nan if v is None else v for v in vals]
        ax.bar(x + (k - (len(values) - 1) / 2) * width, heights, width, label=system,
               color=SYSTEM_COLORS.get(system))
    ax.set_xticks(x)
    ax.set_xticklabels(tasks, rotation=20)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _spectrogram_triple(path: Path, ex: dict[str, Any], sr: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 7.0))
    FigureCanvasAgg(fig)
    hop = 256
    specs = {}
    for role in ("source", "output", "target"):
        mel = librosa.feature.melspectrogram(y=ex[role], sr=sr, n_fft=1024, hop_length=hop,
                                             n_mels=80)
        specs[role] = 10 * np.log10(mel + 1e-10)
    vmax = max(float(s.max()) for s in specs.values())
    for k, (role, spec) in enumerate(specs.items()):
        ax = fig.add_subplot(3, 1, k + 1)
        ax.imshow(spec, origin="lower", aspect="auto", vmin=vmax - 80, vmax=vmax, cmap="magma",
                  extent=(0, spec.shape[1] * hop / sr, 0, spec.shape[0]))
        ax.set_ylabel(f"{role}\nmel bin")
        if k == 0:
            ax.set_title(f"{ex['id']} ({ex['task']}): {ex['instruction']}"[:110], fontsize=9)
    fig.axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=90)


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars/arrays -> Python (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
