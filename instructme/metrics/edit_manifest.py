"""Edit every record of a triplet manifest with an
:class:`~instructme.editing.pipeline.EditPipeline` (the "system outputs" that
``instructme eval edits`` scores; InstructME, arXiv 2308.14360, Experiments).

For record ``r`` the source window (``r["source"]`` stems summed, ``r["start"]`` +
``r["duration"]``, at the dataset's rate) is edited with ``r["instruction"]`` (a multi-round
record runs its rounds' instructions in order, each output the next source) and written to
``OUT/<r["id"]>.wav``. Files are written atomically, so a finished file is a complete edit and
an interrupted run resumes where it stopped; ``OUT/generate.json`` records the model and the
edit settings (:class:`~instructme.editing.settings.EditSettings`, the sampler by its
scheduler's name) and whether a stem separator answered; a folder made with other settings
is refused (one from before the ``preserve`` setting existed holds generated mixes:
``preserve`` false; one from before the separator, ``separator`` false).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instructme.editing.settings import EditSettings
from instructme.errors import ManifestError
from instructme.fileio import atomic_write_json

SETTINGS_NAME = "generate.json"


def record_instructions(rec: dict[str, Any]) -> list[str]:
    """The instruction(s) of one manifest record, one per round."""
    rounds = rec.get("rounds") or []
    if rec.get("task") == "multiround" and rounds:
        return [str(rd["instruction"]) for rd in rounds]
    return [str(rec["instruction"])]


def generate_edits(pipe: Any, manifest: str | Path, out_dir: str | Path,
                   settings: EditSettings | None = None, *,
                   data_dir: str | Path | None = None, limit: int | None = None,
                   model_name: str = "", progress: bool = True,
                   tasks: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``OUT/<id>.wav`` for the records of ``manifest`` (the seeded ``limit`` sample
    (of ``tasks``) that ``evaluate_edits(..., limit=limit, seed=settings.seed, tasks=tasks)``
    scores), edited by ``pipe``
    (an :class:`~instructme.editing.pipeline.EditPipeline`) with ``settings`` (unset ones:
    the pipeline's). Returns a summary dict: ``edited`` (new files), ``skipped`` (already
    there), ``seconds`` of audio and ``wall``."""
    from tqdm import tqdm

    from instructme.audio import save
    from instructme.dataset.folder import load_window, read_manifest
    from instructme.metrics.report import dataset_sample_rate, sample_records

    manifest, out = Path(manifest), Path(out_dir)
    records = read_manifest(manifest)
    if not records:
        raise ManifestError(f"{manifest}: no records")
    data = Path(data_dir) if data_dir is not None else manifest.resolve().parent.parent
    cfg = pipe.resolve_settings(settings)
    records = sample_records(records, limit, cfg.seed, tasks)
    sr = dataset_sample_rate(data)
    recorded = {"manifest": str(manifest.resolve()), "model": model_name, "seed": cfg.seed,
                "limit": limit, "tasks": sorted(tasks) if tasks else None, "steps": cfg.steps,
                "guidance": cfg.guidance,
                "sampler": cfg.sampler_spec.scheduler, "preserve": cfg.preserve,
                "separator": getattr(pipe, "separator", None) is not None}
    meta_path = out / SETTINGS_NAME
    if meta_path.is_file():
        have = {"preserve": False, "separator": False, "tasks": None,
                **json.loads(meta_path.read_text())}
        diff = sorted(k for k in recorded if have.get(k) != recorded[k])
        if diff:
            raise ManifestError(f"{out}: holds edits made with other settings ({', '.join(diff)})"
                                "; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta_path, recorded)

    edited = skipped = 0
    seconds = 0.0
    t0 = time.perf_counter()
    for rec in tqdm(records, desc="editing", unit="clip", disable=not progress):
        path = out / f"{rec['id']}.wav"
        if path.is_file():
            skipped += 1
            continue
        x = load_window(data, rec["source"], float(rec["start"]), float(rec["duration"]), sr)
        results = pipe.edit_chain(x, sr, record_instructions(rec), cfg)
        save(path, results[-1].audio, sr)
        edited += 1
        seconds += x.shape[0] / sr
    return {"edited": edited, "skipped": skipped, "seconds": seconds,
            "wall": time.perf_counter() - t0, "records": len(records)}
