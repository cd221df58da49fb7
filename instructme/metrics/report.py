"""The edit report: FAD, IA, CRA, PCH and IOI per task, with sanity anchors (paper Sec. 5).

``evaluate_edits`` reads a triplet manifest, the model's edits (``OUTPUTS/<id>.wav``, one
per record) and the dataset's sources and targets (sums of stems), and scores four
"systems" against the target of every record:

- ``output``     the model's edit;
- ``target``     the target itself (the perfect edit: FAD 0, PCH/IOI/CRA 1; its IA is the
  classifier's own accuracy);
- ``source``     the unedited source (the "do nothing" edit);
- ``random``     the target of another record from another song (seeded draw).

Per clip: IA (:mod:`.instruction_accuracy`), CRA against the chords recognised in the target
and against the score's chords (:mod:`.chords`), PCH and IOI overlap (:mod:`.pch_ioi`).
Per task and overall: the means, and FAD (:mod:`.fad`) of every embedding
(:mod:`.embeddings`) between the system's clips and the targets. Metrics whose model is
missing are "n/a" with the reason. Files written to the report folder: ``report.json``,
``report.md``, ``per_clip.jsonl``, ``metrics_*.png`` and ``spectrograms_*.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from instructme.audio import load, resample
from instructme.config import SAMPLE_RATE
from instructme.errors import InstructMEError, ManifestError
from instructme.metrics import chords as cra_mod
from instructme.metrics import instruction_accuracy as ia_mod
from instructme.metrics import madmom_models, pch_ioi, report_format
from instructme.metrics.embeddings import (
    Embedder,
    MadmomChordEmbedding,
    builtin_embedder,
    classifier_embedding,
)
from instructme.metrics.fad import fad
from instructme.metrics.judge_record import describe_accuracy

SYSTEMS = ("output", "target", "source", "random")
SYSTEM_LABELS = {"output": "output (model)", "target": "anchor: target (perfect)",
                 "source": "anchor: source (do nothing)", "random": "anchor: random clip"}
CLIP_METRICS = ("ia", "cra", "cra_score", "pch", "ioi")


@dataclass
class Analyzers:
    """The models a report uses; ``na`` maps a metric to the reason it is not computed."""

    embedders: list[Embedder] = field(default_factory=list)
    chord: Any = None
    chord_description: str | None = None
    classifier: Any = None
    classifier_description: str | None = None
    threshold: float | np.ndarray = ia_mod.DEFAULT_THRESHOLD  # one, or one per class [K]
    na: dict[str, str] = field(default_factory=dict)


@dataclass
class ClipFeatures:
    """Everything measured on one clip ``x: [N]``."""

    emb: dict[str, np.ndarray]
    pch: np.ndarray
    ioi: np.ndarray
    chords: list[tuple[float, float, str]] | None
    probs: ia_mod.Probs | None


def build_analyzers(chord_model: str | None = None, classifier_dir: str | None = None,
                    embeddings: Sequence[str] | None = None,
                    threshold: float | None = None) -> Analyzers:
    """Load the requested models. ``chord_model``: a model folder, ``"madmom"``, ``"none"``
    or None (= madmom when installed). ``embeddings``: names from ``logmel-stats``,
    ``madmom-cnn-chord``, ``classifier`` (None = every one available). ``threshold`` None:
    the classifier's calibrated per-class thresholds if it has them, else 0.5."""
    an = Analyzers(threshold=ia_mod.DEFAULT_THRESHOLD if threshold is None else threshold)
    have_madmom = madmom_models.madmom_available()
    shared_madmom: madmom_models.MadmomChordModel | None = None

    def madmom_model() -> madmom_models.MadmomChordModel:
        nonlocal shared_madmom
        if shared_madmom is None:
            shared_madmom = madmom_models.MadmomChordModel()
        return shared_madmom

    if chord_model is None:
        chord_model = "madmom" if have_madmom else "none"
        if not have_madmom:
            an.na["cra"] = ("no --chord-model given and madmom is not installed "
                            f"({madmom_models.INSTALL_HINT})")
    if chord_model == "none":
        an.na.setdefault("cra", "chord recognition disabled (--chord-model none)")
    elif chord_model == "madmom":
        an.chord = madmom_model()
        an.chord_description = ("madmom pretrained CNN+CRF chord recognizer (Korzeniowski & "
                                "Widmer 2016), not trained on this project's data")
    else:
        an.chord, an.chord_description = cra_mod.load_chord_recognizer(chord_model)
    if "cra" in an.na:
        an.na["cra_score"] = an.na["cra"]

    crop_seconds = None
    if classifier_dir is not None:
        an.classifier = load_classifier(classifier_dir)
        crop_seconds = _training_crop_seconds(classifier_dir)
        an.classifier_description = (f"{type(an.classifier).__name__} trained here "
                                     f"({classifier_dir}); its measured accuracy: "
                                     f"{describe_accuracy(classifier_dir)}")
        if threshold is None and getattr(an.classifier.config, "thresholds", None):
            an.threshold = np.asarray(an.classifier.thresholds, dtype=np.float64)
    else:
        an.na["ia"] = "no classifier (--classifier none)"

    wanted = list(embeddings) if embeddings is not None else (
        ["logmel-stats"] + (["madmom-cnn-chord"] if have_madmom else [])
        + (["classifier"] if an.classifier is not None else []))
    for name in wanted:
        if name == "classifier":
            if an.classifier is None:
                raise InstructMEError("embedding 'classifier' needs --classifier DIR")
            an.embedders.append(classifier_embedding(an.classifier, crop_seconds))
        elif name == "madmom-cnn-chord":
            an.embedders.append(MadmomChordEmbedding(madmom_model()))
        else:
            an.embedders.append(builtin_embedder(name))
    if not have_madmom and embeddings is None:
        an.na["fad:madmom-cnn-chord"] = f"madmom is not installed ({madmom_models.INSTALL_HINT})"
    if an.classifier is None and embeddings is None:
        an.na["fad:classifier"] = "no classifier (--classifier none)"
    return an


def load_classifier(directory: str) -> Any:
    """Load ``instructme.models.classifier.InstrumentClassifier`` from its model folder."""
    try:
        from instructme.models.classifier import InstrumentClassifier
    except ImportError as e:
        raise InstructMEError(f"classifier code is not available ({e})") from None
    from instructme.checkpoint import load_model

    model = load_model(InstrumentClassifier, directory)
    model.eval()
    return model


def _training_crop_seconds(directory: str) -> float | None:
    """The crop length the classifier was trained on (``_extra.train.crop_seconds``), if saved."""
    from instructme.checkpoint import read_config

    value = (read_config(directory).get("_extra") or {}).get("train", {}).get("crop_seconds")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def analyze(x: np.ndarray, sr: int, an: Analyzers) -> ClipFeatures:
    """Measure one clip ``x: [N]`` with every available analyzer."""
    probs = None
    if an.classifier is not None:
        csr = int(getattr(getattr(an.classifier, "config", None), "sample_rate", sr) or sr)
        xc = x
        if csr != sr:
            xc = resample(x, sr, csr)
        probs = ia_mod.classifier_probs(an.classifier, xc[None])[0]
    return ClipFeatures(
        emb={e.name: e.embed(x, sr) for e in an.embedders},
        pch=pch_ioi.pitch_class_histogram(x, sr),
        ioi=pch_ioi.ioi_histogram(x, sr),
        chords=cra_mod.recognize(an.chord, x, sr) if an.chord is not None else None,
        probs=probs,
    )


def clip_scores(rec: dict[str, Any], sys_feat: ClipFeatures, src: ClipFeatures,
                tgt: ClipFeatures, score_chords: list[tuple[float, float, str]] | None,
                duration: float, an: Analyzers, style_names: Sequence[str] | None) -> dict:
    """Per-clip metrics of one system's clip against the record's target."""
    out: dict[str, Any] = {
        "pch": pch_ioi.overlap_area(sys_feat.pch, tgt.pch),
        "ioi": pch_ioi.overlap_area(sys_feat.ioi, tgt.ioi),
        "cra": None, "cra_score": None, "ia": None, "ia_reason": None,
    }
    if sys_feat.chords is not None and tgt.chords is not None:
        out["cra"] = _none_if_nan(cra_mod.cra(sys_feat.chords, tgt.chords, span=(0.0, duration)))
        if score_chords:
            out["cra_score"] = _none_if_nan(
                cra_mod.cra(sys_feat.chords, score_chords, span=(0.0, duration)))
    if sys_feat.probs is not None and src.probs is not None:
        try:
            j = ia_mod.judge(rec["task"], rec.get("args") or {}, src.probs, sys_feat.probs,
                             an.threshold, style_names, rec.get("rounds"))
        except InstructMEError as e:  # e.g. a style the classifier does not know: n/a
            out["ia_reason"] = f"not judged: {e}"
        else:
            out["ia"] = 1.0 if j.obeyed else 0.0
            out["ia_reason"] = j.reason
    return out


def sample_records(records: list[dict[str, Any]], limit: int | None, seed: int = 0,
                   tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The seeded sample of ``limit`` records of ``tasks`` (all when None) that ``--limit``
    and ``--tasks`` score (manifest order kept); ``instructme eval generate`` edits the same
    sample with the same seed. A task the manifest does not hold is a one-line error."""
    if tasks is not None:
        have = sorted({str(r["task"]) for r in records})
        unknown = sorted(set(tasks) - set(have))
        if unknown:
            raise ManifestError(f"no {', '.join(unknown)} records in this manifest (it has: "
                                f"{', '.join(have)})")
        records = [r for r in records if r["task"] in set(tasks)]
    if limit is None:
        return records
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(records), size=min(limit, len(records)), replace=False))
    return [records[i] for i in keep]


def evaluate_edits(manifest: str | Path, outputs: str | Path, out_dir: str | Path,
                   data_dir: str | Path | None = None, analyzers: Analyzers | None = None,
                   seed: int = 0, limit: int | None = None, n_examples: int = 4,
                   progress: bool = True, tasks: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """Score the edits in ``outputs`` for the records of ``manifest``; write the report files.

    ``data_dir`` defaults to the folder above the manifest's ``manifests/`` folder. Returns
    the report dictionary (also written as ``report.json``).
    """
    from instructme.dataset.folder import load_window, read_manifest, window_chords

    manifest, outputs, out_dir = Path(manifest), Path(outputs), Path(out_dir)
    records = read_manifest(manifest)
    if not records:
        raise ManifestError(f"{manifest}: no records")
    data_dir = Path(data_dir) if data_dir is not None else manifest.resolve().parent.parent
    sr = dataset_sample_rate(data_dir)
    records = sample_records(records, limit, seed, tasks)
    _check_records(records, outputs, data_dir)
    an = analyzers if analyzers is not None else build_analyzers()
    style_names = list(getattr(an.classifier, "style_names", []) or []) or None
    partner = _random_partners(records, seed)

    feats: dict[str, dict[str, ClipFeatures]] = {}
    per_clip: list[dict[str, Any]] = []
    examples = _example_indices(records, n_examples)
    example_audio: list[dict[str, Any]] = []
    length_mismatch = 0
    for i, rec in enumerate(tqdm(records, desc="scoring edits", unit="clip", disable=not progress)):
        start, dur = float(rec["start"]), float(rec["duration"])
        src = load_window(data_dir, rec["source"], start, dur, sr)
        tgt = load_window(data_dir, rec["target"], start, dur, sr)
        out, mismatch = _load_output(outputs / f"{rec['id']}.wav", sr, tgt.shape[0])
        length_mismatch += mismatch
        feats[rec["id"]] = {"source": analyze(src, sr, an), "target": analyze(tgt, sr, an),
                            "output": analyze(out, sr, an)}
        if i in examples:
            example_audio.append({"id": rec["id"], "task": rec["task"],
                                  "instruction": rec.get("instruction", ""),
                                  "source": src, "output": out, "target": tgt})
    for i, rec in enumerate(records):
        f = feats[rec["id"]]
        dur = float(rec["duration"])
        score = _score_chords(window_chords, data_dir, rec) if an.chord is not None else None
        row: dict[str, Any] = {"id": rec["id"], "task": rec["task"], "song": rec["song"],
                               "random_partner": records[partner[i]]["id"]}
        systems = {"output": f["output"], "target": f["target"], "source": f["source"],
                   "random": feats[records[partner[i]]["id"]]["target"]}
        for name, sf_ in systems.items():
            row[name] = clip_scores(rec, sf_, f["source"], f["target"], score, dur, an,
                                    style_names)
        per_clip.append(row)

    report = {
        "manifest": str(manifest), "outputs": str(outputs), "data": str(data_dir),
        "sample_rate": sr, "n_records": len(records), "seed": seed,
        "length_mismatch": length_mismatch,
        "threshold": np.asarray(an.threshold).tolist(),
        "embeddings": [{"name": e.name, "description": e.description,
                        "dim": int(feats[records[0]["id"]]["target"].emb[e.name].shape[1])}
                       for e in an.embedders],
        "chord_recognizer": an.chord_description, "classifier": an.classifier_description,
        "not_available": dict(an.na), "systems": SYSTEM_LABELS,
        "tasks": _aggregate(records, per_clip, feats, partner, an),
    }
    report_format.write_report(out_dir, report, per_clip, example_audio, sr)
    return report


def _aggregate(records: list[dict], per_clip: list[dict], feats: dict, partner: list[int],
               an: Analyzers) -> dict[str, dict[str, Any]]:
    tasks = sorted({r["task"] for r in records})
    groups = {t: [i for i, r in enumerate(records) if r["task"] == t] for t in tasks}
    groups["all"] = list(range(len(records)))
    result: dict[str, dict[str, Any]] = {}
    for task, idx in groups.items():
        result[task] = {}
        for system in SYSTEMS:
            entry: dict[str, Any] = {"n": len(idx)}
            for m in CLIP_METRICS:
                vals = [per_clip[i][system][m] for i in idx if per_clip[i][system][m] is not None]
                entry[m] = float(np.mean(vals)) if vals else None
                entry[f"{m}_n"] = len(vals)
            entry["fad"] = {}
            entry["fad_windows"] = {}
            for e in an.embedders:
                ref = np.concatenate([feats[records[i]["id"]]["target"].emb[e.name] for i in idx])
                cand = np.concatenate([_system_feat(feats, records, partner, i, system).emb[e.name]
                                       for i in idx])
                entry["fad"][e.name] = _safe_fad(cand, ref)
                entry["fad_windows"][e.name] = int(min(cand.shape[0], ref.shape[0]))
            result[task][system] = entry
    return result


def _system_feat(feats: dict, records: list[dict], partner: list[int], i: int,
                 system: str) -> ClipFeatures:
    if system == "random":
        return feats[records[partner[i]]["id"]]["target"]
    return feats[records[i]["id"]][system]


def _safe_fad(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.shape[0] < 2 or b.shape[0] < 2:
        return None
    return fad(a, b)


def _random_partners(records: list[dict], seed: int) -> list[int]:
    """For record i, a seeded random record j != i, from another song when one exists."""
    rng = np.random.default_rng(seed + 1)
    n = len(records)
    partners = []
    for i, rec in enumerate(records):
        others = [j for j in range(n) if records[j]["song"] != rec["song"]]
        if not others:
            others = [j for j in range(n) if j != i] or [i]
        partners.append(int(others[int(rng.integers(len(others)))]))
    return partners


def _example_indices(records: list[dict], n: int) -> set[int]:
    """Up to ``n`` records, one per task first (in order of appearance)."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i, r in enumerate(records):
        if len(chosen) < n and r["task"] not in seen:
            chosen.append(i)
            seen.add(r["task"])
    for i in range(len(records)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return set(chosen)


def _score_chords(window_chords: Any, data_dir: Path, rec: dict) -> list | None:
    try:
        segs = window_chords(data_dir, rec["song"], float(rec["start"]), float(rec["duration"]))
    except (OSError, ValueError, KeyError):
        return None
    return cra_mod.as_segments(segs) or None


def _check_records(records: list[dict], outputs: Path, data_dir: Path) -> None:
    if not outputs.is_dir():
        raise ManifestError(f"{outputs}: outputs folder not found")
    ids = [str(r["id"]) for r in records]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise ManifestError(f"manifest has duplicate ids: {', '.join(dup[:3])}")
    missing = [i for i in ids if not (outputs / f"{i}.wav").is_file()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ManifestError(
            f"{outputs}: {len(missing)} of {len(ids)} edits missing, e.g. "
            f"{', '.join(m + '.wav' for m in missing[:3])}{more}"
        )
    for r in records:
        for key in ("source", "target"):
            paths = r[key]
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ManifestError(f"record {r['id']}: {key!r} must be a list of stem paths")
            for p in paths:
                if not (data_dir / p).is_file():
                    raise ManifestError(f"record {r['id']}: stem {data_dir / p} not found "
                                        f"(wrong --data folder?)")
        try:
            if not float(r["duration"]) > 0 or float(r["start"]) < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ManifestError(f"record {r['id']}: bad start/duration") from None


def _load_output(path: Path, sr: int, n: int) -> tuple[np.ndarray, int]:
    """The model's edit at ``sr``, cut or zero-padded to the target length ``n``."""
    x, _ = load(path, sample_rate=sr, mono=True)
    mismatch = int(abs(x.shape[0] - n) > sr // 100)  # more than 10 ms off
    if x.shape[0] >= n:
        return x[:n], mismatch
    return np.pad(x, (0, n - x.shape[0])), mismatch


def dataset_sample_rate(data_dir: Path) -> int:
    """The sample rate in ``DATA/build.json`` (the project default when the folder has none)."""
    from instructme.dataset.folder import read_build_info

    if not (data_dir / "build.json").is_file():
        if not data_dir.is_dir():
            raise ManifestError(f"{data_dir}: dataset folder not found (pass --data DIR)")
        return SAMPLE_RATE
    return int(read_build_info(data_dir).get("sample_rate", SAMPLE_RATE))


def _none_if_nan(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)
