"""PCH and IOI on synthesised audio with known answers; overlapping area."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.errors import InstructMEError
from instructme.metrics.pch_ioi import (
    IOI_BINS,
    IOI_EDGES,
    ioi_histogram,
    ioi_histogram_from_onsets,
    ioi_similarity,
    overlap_area,
    pch_similarity,
    pitch_class_histogram,
)

SR = 16000
C_MAJOR = [0, 2, 4, 5, 7, 9, 11]


def tone(midi: int, seconds: float) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(0.5**k * np.sin(2 * np.pi * f * (k + 1) * t) for k in range(4)) * np.exp(-3 * t)


def scale(midis: list[int]) -> np.ndarray:
    return (0.3 * np.concatenate([tone(m, 0.4) for m in midis])).astype(np.float32)


def clicks(period: float, seconds: float = 6.0) -> np.ndarray:
    x = np.zeros(int(SR * seconds), np.float32)
    for k in range(0, x.shape[0] - 80, int(round(period * SR))):
        x[k:k + 80] = np.hanning(80)
    return x


def test_pch_of_c_major_scale_concentrates_on_its_pitch_classes():
    p = pitch_class_histogram(scale([60, 62, 64, 65, 67, 69, 71, 72]), SR)
    assert p.shape == (12,) and p.sum() == pytest.approx(1.0)
    assert p[C_MAJOR].sum() > 0.9
    outside = [c for c in range(12) if c not in C_MAJOR]
    assert p[C_MAJOR].min() > p[outside].max()


def test_pch_similarity_transposition_and_identity():
    x = scale([60, 62, 64, 65, 67, 69, 71, 72])
    assert pch_similarity(x, x, SR) == pytest.approx(1.0)
    # F# major shares only 2 of its 7 pitch classes with C major.
    fsharp = scale([66, 68, 70, 71, 73, 75, 77, 78])
    assert pch_similarity(x, fsharp, SR) < 0.45


@pytest.mark.parametrize("period", [0.25, 0.5, 1.0])
def test_ioi_of_click_track_peaks_at_its_period(period):
    h = ioi_histogram(clicks(period), SR)
    assert h.shape == (IOI_BINS,) and h.sum() == pytest.approx(1.0)
    k = int(np.argmax(h))
    assert IOI_EDGES[k] <= period * 1.02 and period * 0.98 < IOI_EDGES[k + 1]
    assert h[k] > 0.8


def test_ioi_similarity_separates_tempi():
    assert ioi_similarity(clicks(0.5), clicks(0.5), SR) == pytest.approx(1.0)
    assert ioi_similarity(clicks(0.25), clicks(1.0), SR) < 0.2


def test_ioi_histogram_from_onsets_bins_and_range():
    h = ioi_histogram_from_onsets(np.array([0.0, 0.5, 1.0, 1.5, 4.0, 4.01]))
    # 3 IOIs of 0.5 s count; 2.5 s (>= 2 s) and 0.01 s (< 0.05 s) do not.
    assert h.sum() == pytest.approx(1.0) and h.max() == pytest.approx(1.0)
    assert ioi_histogram_from_onsets(np.array([1.0])).sum() == 0.0


def test_silence_gives_empty_histograms():
    z = np.zeros(SR, np.float32)
    assert pitch_class_histogram(z, SR).sum() == 0.0
    assert ioi_histogram(z, SR).sum() == 0.0
    assert pch_similarity(z, z, SR) == 1.0
    assert pch_similarity(z, scale([60]), SR) == 0.0


def test_overlap_area_definition():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    assert overlap_area(p, q) == pytest.approx(0.5)
    assert overlap_area(p, p) == pytest.approx(1.0)
    assert overlap_area(np.array([1.0, 0, 0]), np.array([0, 0, 1.0])) == 0.0
    with pytest.raises(InstructMEError):
        overlap_area(p, np.ones(4) / 4)
    with pytest.raises(InstructMEError):
        pitch_class_histogram(np.zeros((2, 100)), SR)
