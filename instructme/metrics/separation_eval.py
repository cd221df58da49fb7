"""The separation benchmark of ``instructme eval separate``: extract and remove answered by
the stem separator beside anchors, scored against the exact stems.

Sets: held-out crops of a dataset split (:func:`crop_records`: the in-domain test split, or
a ``data render-eval`` folder re-rendered with a soundfont never trained on) and the real
band recording that stempeg ships (:func:`musdb_records`: the MUSDB18 excerpt's drums, bass
and vocals). Every method answers "extract X" with an estimate ``E`` of X and "remove X"
with ``mix - E`` unless noted (``mix``, ``X``: mono ``[N]`` at the model rate):

===================  ====================================================================
separator            ``E`` = the separator's ratio mask applied to the mix
do nothing           extract and remove both answered by the unedited mix
ideal ratio mask     ``E`` = ``|X| / (|X| + |mix - X|)`` x mix from the true stems at the
                     separator's STFT: the limit of any such mask
HPSS (drums only)    ``E`` = the percussive part of ``librosa.effects.hpss`` (median
                     filtering, Fitzgerald 2010)
generated path       the pipeline without its separator: the editor generates the edit
                     and its mix guides gains on the source (:mod:`~instructme.editing.
                     preserve`); optional, slow
===================  ====================================================================

Scores: SI-SDR (Le Roux et al. 2019) and SDR (BSS Eval v4 with its 512-tap distortion
filter, computed by ``fast_bss_eval``, Scheibler 2021), averaged over records, for extract
(target ``X``) and remove (target ``mix - X``); ``remove_better``: the share of removes
whose SI-SDR beats doing nothing on the same record. Per instrument class for the separator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import fast_bss_eval
import librosa
import numpy as np
import torch

from instructme.editing.separation import PRESENT_DB, level_db
from instructme.metrics.codec import si_sdr
from instructme.models.separator import Separator
from instructme.training.separator import SeparationCrops, ideal_ratio_mask

#: Silence below this mean power is not a target (its SI-SDR is undefined).
SILENT = 1e-8
#: SDR values are clamped to +-this many dB (a silent estimate would be -inf).
SDR_CLAMP_DB = 100.0


@dataclass
class Record:
    """One test case: ``mix`` and the exact ``target`` (X's stem), mono ``[N]`` float32."""

    mix: np.ndarray
    target: np.ndarray
    instrument: str


#: (extract answer, remove answer), both ``[N]``; None: the method does not apply.
Answer = tuple[np.ndarray, np.ndarray] | None
Method = Callable[[Record], Answer]


def crop_records(crops: SeparationCrops, classes: Sequence[str]) -> list[Record]:
    """The crops of :func:`~instructme.training.separator.heldout_set` whose target and
    rest both sound, as :class:`Record`s (``classes``: the separator's class names)."""
    return _records(crops, classes, lambda mix, target: _sounds(target) and
                    _sounds(mix - target))


def musdb_records(stems: dict[str, np.ndarray] | None, classes: Sequence[str]
                  ) -> list[Record]:
    """stempeg's MUSDB18 excerpt (``{"mix", "drums", ...}`` mono at the model rate, from
    :func:`~instructme.dataset.packaged_audio.packaged_multitrack`) as one record per
    sounding stem the separator has a class for (drums, bass, vocals)."""
    if stems is None:
        return []
    return [Record(stems["mix"], stems[name], name) for name in ("drums", "bass", "vocals")
            if name in classes and name in stems and _sounds(stems[name])]


def absent_records(crops: SeparationCrops, classes: Sequence[str]) -> list[Record]:
    """The crops of a ``heldout_set(..., absent_prob=1)`` whose queried class is not in the
    mix (silent target): queries the separator should answer with nothing."""
    return _records(crops, classes, lambda mix, target: not _sounds(target) and _sounds(mix))


def _records(crops: SeparationCrops, classes: Sequence[str],
             keep: Callable[[np.ndarray, np.ndarray], bool]) -> list[Record]:
    """The crops for which ``keep(mix, target)`` holds, as :class:`Record`s."""
    out = []
    for i in range(len(crops)):
        mix, target, cls = (t.numpy() for t in crops[i])
        if keep(mix, target):
            out.append(Record(mix.astype(np.float32), target.astype(np.float32),
                              classes[int(cls)]))
    return out


def presence(model: Separator, present: Sequence[Record], absent: Sequence[Record]
             ) -> dict[str, Any]:
    """How the pipeline's presence test (:func:`~instructme.editing.separation.sounds`,
    extracted power above :data:`~instructme.editing.separation.PRESENT_DB` relative to the
    mix) judges the separator: ``heard`` (share of present classes heard), ``silenced``
    (share of absent ones silenced) and the extracted levels' quartiles (dB) of each."""
    answer = separator_method(model)
    levels = {name: [level_db(answer(r)[0], r.mix) for r in records]  # type: ignore[index]
              for name, records in (("present", present), ("absent", absent))}
    out: dict[str, Any] = {"threshold_db": PRESENT_DB}
    for name, v in levels.items():
        out[name] = {"count": len(v),
                     "quartiles_db": np.percentile(v, [25, 50, 75]).tolist() if v else []}
    out["heard"] = _mean([v > PRESENT_DB for v in levels["present"]])
    out["silenced"] = _mean([v <= PRESENT_DB for v in levels["absent"]])
    return out


def format_presence(p: dict[str, Any]) -> str:
    """:func:`presence` as one line of text."""
    q = {k: "/".join(f"{x:.0f}" for x in p[k]["quartiles_db"]) for k in ("present", "absent")}
    return (f"  presence test (extracted level above {p['threshold_db']:g} dB of the mix): "
            f"present classes heard {100 * p['heard']:.0f} % ({p['present']['count']}, "
            f"quartiles {q['present']} dB), absent classes silenced "
            f"{100 * p['silenced']:.0f} % ({p['absent']['count']}, quartiles {q['absent']} dB)")


def _sounds(x: np.ndarray) -> bool:
    return float(np.mean(np.square(x, dtype=np.float64))) > SILENT


def separator_method(model: Separator) -> Method:
    """The separator's answers."""

    @torch.no_grad()
    def answer(r: Record) -> Answer:
        x = torch.from_numpy(r.mix)[None]
        est = model(x, torch.tensor([model.class_index(r.instrument)]))[0].numpy()
        return est, r.mix - est

    return answer


def nothing_method(r: Record) -> Answer:
    """Doing nothing: the mix answers both."""
    return r.mix, r.mix


def irm_method(model: Separator) -> Method:
    """The ideal ratio mask from the true stems at ``model``'s STFT."""

    @torch.no_grad()
    def answer(r: Record) -> Answer:
        est = ideal_ratio_mask(model, torch.from_numpy(r.mix)[None],
                               torch.from_numpy(r.target)[None])[0].numpy()
        return est, r.mix - est

    return answer


def hpss_method(r: Record) -> Answer:
    """Harmonic-percussive separation, for drums only."""
    if r.instrument != "drums":
        return None
    _, percussive = librosa.effects.hpss(r.mix)
    return percussive.astype(np.float32), (r.mix - percussive).astype(np.float32)


def generated_method(pipe: Any, sample_rate: int, steps: int | None, seed: int) -> Method:
    """The pipeline's generated path: ``pipe`` (an :class:`~instructme.editing.pipeline.
    EditPipeline` whose ``separator`` is None) edits each mix with "extract X" / "remove X"."""
    from instructme.instructions import phrasings

    def answer(r: Record) -> Answer:
        texts = [phrasings(task, {"instrument": r.instrument})[0]
                 for task in ("extract", "remove")]
        ext, rem = (np.asarray(pipe(r.mix, sample_rate, t, steps=steps, seed=seed).audio,
                               dtype=np.float32) for t in texts)
        return ext, rem

    return answer


def _sdr(refs: list[np.ndarray], ests: list[np.ndarray]) -> np.ndarray:
    """BSS Eval v4 SDR of each pair (grouped by length), clamped to +-:data:`SDR_CLAMP_DB`."""
    out = np.empty(len(refs))
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(refs):
        by_len.setdefault(len(r), []).append(i)
    for idx in by_len.values():
        ref = torch.from_numpy(np.stack([refs[i] for i in idx]).astype(np.float64))[:, None]
        est = torch.from_numpy(np.stack([ests[i] for i in idx]).astype(np.float64))[:, None]
        sdr = fast_bss_eval.sdr(ref, est, clamp_db=SDR_CLAMP_DB, load_diag=1e-10)
        out[idx] = sdr[:, 0].numpy()
    return out


def score(records: Sequence[Record], answers: Iterable[Answer]) -> dict[str, Any]:
    """Per-record scores of one method: ``{"index", "extract_sisdr", "extract_sdr",
    "remove_sisdr", "remove_sdr"}`` lists over the records it answered."""
    idx, ext, rem = [], [], []
    for i, a in enumerate(answers):
        if a is not None:
            idx.append(i)
            ext.append(a[0])
            rem.append(a[1])
    targets = [records[i].target for i in idx]
    rests = [records[i].mix - records[i].target for i in idx]
    return {
        "index": idx,
        "extract_sisdr": [si_sdr(t, e) for t, e in zip(targets, ext, strict=True)],
        "remove_sisdr": [si_sdr(t, e) for t, e in zip(rests, rem, strict=True)],
        "extract_sdr": _sdr(targets, ext).tolist() if idx else [],
        "remove_sdr": _sdr(rests, rem).tolist() if idx else [],
    }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarize(records: Sequence[Record], scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Method name -> per-record :func:`score` lists -> the report: ``rows`` (means, count,
    ``remove_better`` against ``"do nothing"`` on the same records) and, for the
    ``"separator"``, ``per_class`` means."""
    base = dict(zip(scores["do nothing"]["index"], scores["do nothing"]["remove_sisdr"],
                    strict=True))
    rows: dict[str, dict[str, float]] = {}
    for name, s in scores.items():
        row = {k: _mean(s[k]) for k in ("extract_sisdr", "extract_sdr", "remove_sisdr",
                                        "remove_sdr")}
        row["count"] = len(s["index"])
        better = [v > base[i] for i, v in zip(s["index"], s["remove_sisdr"], strict=True)]
        row["remove_better"] = _mean(better)
        rows[name] = row
    per_class: dict[str, dict[str, float]] = {}
    sep = scores.get("separator")
    if sep is not None:
        for cls in sorted({records[i].instrument for i in sep["index"]}):
            pos = [k for k, i in enumerate(sep["index"]) if records[i].instrument == cls]
            per_class[cls] = {k: _mean([sep[k][p] for p in pos])
                              for k in ("extract_sisdr", "extract_sdr", "remove_sisdr",
                                        "remove_sdr")}
            per_class[cls]["count"] = len(pos)
    return {"records": len(records), "rows": rows, "per_class": per_class}


def evaluate(records: Sequence[Record], methods: dict[str, Method],
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every method on every record and :func:`summarize` (``methods`` must hold
    ``"do nothing"``)."""
    scores = {}
    for name, method in methods.items():
        if progress is not None:
            progress(name)
        scores[name] = score(records, (method(r) for r in records))
    return summarize(records, scores)


def format_table(report: dict[str, Any], title: str) -> str:
    """The report of one set as a text table (SI-SDR and SDR, dB)."""
    lines = [title, f"  {'method':<28} {'extract':>16} {'remove':>16} {'remove beats':>13}"
                    f" {'records':>8}",
             f"  {'':<28} {'SI-SDR':>8}{'SDR':>8} {'SI-SDR':>8}{'SDR':>8} {'nothing':>13}"]
    for name, r in report["rows"].items():
        lines.append(f"  {name:<28} {r['extract_sisdr']:8.2f}{r['extract_sdr']:8.2f} "
                     f"{r['remove_sisdr']:8.2f}{r['remove_sdr']:8.2f} "
                     f"{100 * r['remove_better']:12.0f}% {r['count']:8d}")
    if report["per_class"]:
        lines.append("  separator per class:")
        for cls, r in report["per_class"].items():
            lines.append(f"    {cls:<26} {r['extract_sisdr']:8.2f}{r['extract_sdr']:8.2f} "
                         f"{r['remove_sisdr']:8.2f}{r['remove_sdr']:8.2f} {'':>13} "
                         f"{r['count']:8d}")
    return "\n".join(lines)
