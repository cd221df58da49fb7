"""CRA: identical / disjoint / partial agreement, windows, errors, recognizers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from instructme.errors import InstructMEError
from instructme.metrics.chords import as_segments, cra, recognize, window_segments
from instructme.metrics.madmom_models import madmom_available
from instructme.music.score import ChordSegment

REF = [(0.0, 2.0, "C:maj"), (2.0, 4.0, "A:min"), (4.0, 6.0, "F:maj"), (6.0, 8.0, "G:maj")]


def test_identical_segments_score_one():
    assert cra(REF, REF) == 1.0


def test_disjoint_chords_score_zero():
    est = [(0.0, 2.0, "D:maj"), (2.0, 4.0, "E:min"), (4.0, 6.0, "B:maj"), (6.0, 8.0, "C#:min")]
    assert cra(est, REF) == 0.0


def test_partial_agreement_is_duration_weighted():
    est = [(0.0, 1.0, "C:maj"), (1.0, 8.0, "A:min")]  # right for 1 s of C and the 2 s of Am
    assert cra(est, REF) == pytest.approx(3.0 / 8.0)


def test_majmin_reduction_and_out_of_gamut_reference():
    # Sevenths reduce to their triad; a dim reference is out of the maj/min gamut (ignored).
    assert cra([(0, 4, "C:maj")], [(0, 2, "C:7"), (2, 4, "C:maj7")]) == 1.0
    assert cra([(0, 4, "C:maj")], [(0, 2, "C:maj"), (2, 4, "B:dim")]) == 1.0
    assert math.isnan(cra([(0, 4, "C:maj")], [(0, 4, "B:dim")]))


def test_span_pads_with_no_chord():
    # An empty estimate is "N" everywhere: it only matches the reference's N part.
    assert cra([], [(0, 2, "C:maj"), (2, 4, "N")]) == pytest.approx(0.5)
    # A span longer than the reference: the gap is reference "N", estimate "C" -> mismatch.
    assert cra([(0, 4, "C:maj")], [(0, 2, "C:maj")], span=(0, 4)) == pytest.approx(0.5)
    assert math.isnan(cra(REF, REF, span=(3.0, 3.0)))


def test_window_segments_shift_and_clip():
    segs = [ChordSegment(0.0, 2.0, "C:maj"), ChordSegment(2.0, 4.0, "A:min")]
    assert window_segments(segs, 1.5, 2.0) == [(0.0, 0.5, "C:maj"), (0.5, 2.0, "A:min")]
    assert as_segments(segs)[1] == (2.0, 4.0, "A:min")


def test_invalid_label_is_a_one_line_error():
    with pytest.raises(InstructMEError, match="invalid chord label"):
        cra([(0, 1, "H:maj")], REF)


class _FixedRecognizer:
    def __init__(self, segments):
        self.segments = segments

    def transcribe(self, x, sr):
        return self.segments


def test_recognize_cleans_overlaps():
    rec = _FixedRecognizer([(2.0, 4.0, "A:min"), (0.0, 2.5, "C:maj"), (5.0, 5.0, "G:maj")])
    assert recognize(rec, np.zeros(16000, np.float32), 16000) == [
        (0.0, 2.5, "C:maj"), (2.5, 4.0, "A:min")]
    with pytest.raises(InstructMEError):
        recognize(rec, np.zeros((2, 10)), 16000)


def _progression(sr: int) -> np.ndarray:
    def note(m: int, d: float) -> np.ndarray:
        t = np.arange(int(sr * d)) / sr
        f = 440.0 * 2 ** ((m - 69) / 12)
        return sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 9)) * np.exp(-1.5 * t)

    voicings = [[48, 60, 64, 67], [45, 57, 60, 64], [41, 57, 60, 65], [43, 55, 59, 62]]
    return (0.1 * np.concatenate([sum(note(m, 2.0) for m in v) for v in voicings])).astype(
        np.float32)


@pytest.mark.skipif(not madmom_available(), reason="madmom (eval extra) not installed")
def test_madmom_recognizer_on_a_synthesised_progression():
    from instructme.metrics.madmom_models import MadmomChordModel

    sr = 16000
    model = MadmomChordModel()
    segs = recognize(model, _progression(sr), sr)
    assert cra(segs, REF, span=(0, 8)) >= 0.9
    assert model.features(_progression(sr), sr).shape == (80, 128)
