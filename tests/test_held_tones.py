"""Held-tone pitch fidelity: a faithful codec is in tune, a detuned or grid-bound one is not."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.metrics.tones import (
    HELD_TONE_NOTES,
    harmonic_tone,
    held_tone_scores,
    in_tune_fraction,
)

SR = 16000


def test_the_notes_span_a1_to_a5() -> None:
    assert HELD_TONE_NOTES[0] == 33 and HELD_TONE_NOTES[-1] == 81  # 55 Hz .. 880 Hz


def test_tone_is_harmonic_and_below_nyquist() -> None:
    x = harmonic_tone(2000.0, 1.0, SR)  # partials 2k..6k Hz; 8k and above are left out
    assert x.dtype == np.float32 and np.abs(x).max() == pytest.approx(0.3, rel=1e-4)
    assert in_tune_fraction(x, 2000.0, SR, middle=0.8) > 0.999


def test_identity_is_in_tune_and_detuning_is_not() -> None:
    scores = held_tone_scores(lambda x: x, SR)
    assert scores["in_tune"] > 0.999 and len(scores["per_note"]) == 9
    f0 = 110.0
    semitone_up = harmonic_tone(f0 * 2 ** (1 / 12), 3.0, SR)
    assert in_tune_fraction(semitone_up, f0, SR) < 0.02
    half = harmonic_tone(f0, 3.0, SR) + semitone_up  # equal parts: about half in tune
    assert in_tune_fraction(half, f0, SR) == pytest.approx(0.5, abs=0.05)
    assert in_tune_fraction(np.zeros(SR * 3, np.float32), f0, SR) == 0.0


def test_a_codec_bound_to_a_frame_rate_grid_is_out_of_tune() -> None:
    # A crude "decoder" whose output repeats every 512 samples: one period of the input,
    # tiled. Its spectrum lies on multiples of 31.25 Hz; A2 (110 Hz) is not on that grid.
    def periodic(x: np.ndarray) -> np.ndarray:
        period = x[len(x) // 2: len(x) // 2 + 512]
        return np.resize(period, len(x)).astype(np.float32)

    assert in_tune_fraction(periodic(harmonic_tone(110.0, 3.0, SR)), 110.0, SR) < 0.5
    assert in_tune_fraction(periodic(harmonic_tone(125.0, 3.0, SR)), 125.0, SR) > 0.95
