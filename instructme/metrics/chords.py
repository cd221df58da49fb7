"""Chord recognition accuracy (CRA): does the edit keep the harmony?

InstructME (arXiv 2308.14360, Sec. 5) checks harmony preservation by recognising the chords
of the edited music and comparing them with a reference chord sequence. Here::

    CRA(est, ref) = sum_i d_i * majmin(ref_i, est_i) / sum_i d_i   over comparable segments

where the two segmentations are merged onto common intervals (``mir_eval.util``:
``adjust_intervals`` crops/pads the estimate to the reference span with "N", then
``merge_labeled_intervals``), ``d_i`` are the merged durations and ``majmin`` is
``mir_eval.chord.majmin`` (root and maj/min third; reference chords outside maj/min/N
are left out). This is exactly the duration-weighted ``majmin`` score of
``mir_eval.chord.evaluate``. 1 = the same chords everywhere, 0 = none shared.

The reference is either the chords recognised in the target audio by the same recognizer
(recognizer biases cancel) or the ground-truth chords of the score, shifted to the window.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import mir_eval
import numpy as np

from instructme.errors import InstructMEError
from instructme.metrics.madmom_models import MadmomChordModel

Segment = tuple[float, float, str]


class ChordTranscriber(Protocol):
    """Anything with ``transcribe(x: np.ndarray [N], sr: int) -> [(start, end, label)]``."""

    def transcribe(self, x: np.ndarray, sr: int) -> list[Segment]: ...


def as_segments(items: Iterable[Any]) -> list[Segment]:
    """Accept ``(start, end, label)`` tuples or objects with ``start``/``end``/``label``."""
    out: list[Segment] = []
    for it in items:
        if hasattr(it, "label"):
            out.append((float(it.start), float(it.end), str(it.label)))
        else:
            s, e, lab = it
            out.append((float(s), float(e), str(lab)))
    return out


def window_segments(segments: Iterable[Any], start: float, duration: float) -> list[Segment]:
    """Absolute-time chord segments -> segments of the window ``[start, start + duration)``,
    shifted to start at 0 and clipped to the window."""
    out = []
    for s, e, lab in as_segments(segments):
        a, b = max(s, start) - start, min(e, start + duration) - start
        if b > a:
            out.append((a, b, lab))
    return out


def cra(estimate: Sequence[Any], reference: Sequence[Any],
        span: tuple[float, float] | None = None) -> float:
    """Duration-weighted ``majmin`` agreement of ``estimate`` with ``reference`` (see module doc).

    ``span`` fixes the evaluated time range (default: the reference's first start to last
    end); gaps on either side are "N". Returns NaN when no segment is comparable (e.g. the
    reference only has chords outside maj/min/N), or when the span is empty.
    """
    ref = _clean(as_segments(reference))
    est = _clean(as_segments(estimate))
    if span is None:
        if not ref:
            return math.nan
        span = (ref[0][0], ref[-1][1])
    t0, t1 = float(span[0]), float(span[1])
    if not t1 > t0:
        return math.nan
    ref = _fill(ref, t0, t1)
    est = _fill(est, t0, t1)
    for _, _, lab in ref + est:
        try:
            mir_eval.chord.encode(lab)
        except (ValueError, mir_eval.chord.InvalidChordException):
            raise InstructMEError(f"CRA: invalid chord label {lab!r}") from None
    ref_int = np.array([[s, e] for s, e, _ in ref], dtype=np.float64)
    est_int = np.array([[s, e] for s, e, _ in est], dtype=np.float64)
    est_int, est_lab = mir_eval.util.adjust_intervals(
        est_int, [lab for _, _, lab in est], t0, t1, mir_eval.chord.NO_CHORD,
        mir_eval.chord.NO_CHORD)
    intervals, ref_lab, est_lab = mir_eval.util.merge_labeled_intervals(
        ref_int, [lab for _, _, lab in ref], est_int, est_lab)
    durations = mir_eval.util.intervals_to_durations(intervals)
    comparisons = mir_eval.chord.majmin(ref_lab, est_lab)
    keep = comparisons >= 0
    if not np.any(keep) or durations[keep].sum() <= 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(mir_eval.chord.weighted_accuracy(comparisons, durations))


def recognize(recognizer: ChordTranscriber, x: np.ndarray, sr: int) -> list[Segment]:
    """``recognizer.transcribe(x [N], sr)`` with its output checked and normalised."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise InstructMEError(f"chord recognition expects mono audio [N], got shape {x.shape}")
    return _clean(as_segments(recognizer.transcribe(x, sr)))


def load_chord_recognizer(spec: str) -> tuple[ChordTranscriber, str]:
    """``"madmom"`` -> the pretrained madmom CNN+CRF; else a model folder of
    ``instructme.models.chord.ChordRecognizer``. Returns ``(recognizer, description)``."""
    if spec == "madmom":
        model = MadmomChordModel()
        return model, ("madmom pretrained CNN+CRF chord recognizer (Korzeniowski & Widmer 2016), "
                       "not trained on this project's data")
    try:
        from instructme.models.chord import ChordRecognizer
    except ImportError as e:
        raise InstructMEError(f"chord recognizer code is not available ({e})") from None
    from instructme.checkpoint import load_model

    model = load_model(ChordRecognizer, spec)
    model.eval()
    return model, f"ChordRecognizer trained here ({spec})"


def _clean(segments: list[Segment]) -> list[Segment]:
    segs = sorted((s, e, lab) for s, e, lab in segments if e > s)
    out: list[Segment] = []
    for s, e, lab in segs:
        if out and s < out[-1][1]:  # overlap: the later segment starts where the earlier ends
            s = out[-1][1]
            if e <= s:
                continue
        out.append((s, e, lab))
    return out


def _fill(segments: list[Segment], t0: float, t1: float) -> list[Segment]:
    """Clip to ``[t0, t1]`` and fill gaps with "N" so intervals are contiguous."""
    out: list[Segment] = []
    t = t0
    for s, e, lab in segments:
        s, e = max(s, t0), min(e, t1)
        if e <= s or e <= t:
            continue
        s = max(s, t)
        if s > t:
            out.append((t, s, "N"))
        out.append((s, e, lab))
        t = e
    if t < t1:
        out.append((t, t1, "N"))
    return out
