"""The models committed under models/ load and do their job on fresh audio."""

from __future__ import annotations

from pathlib import Path

import mir_eval
import numpy as np
import pytest

from instructme.checkpoint import load_model
from instructme.data.render import render_part
from instructme.data.score import Note, Part
from instructme.models.chord import ChordRecognizer

MODELS = Path(__file__).resolve().parents[1] / "models"
PROGRESSION = [("C:maj", (48, 60, 64, 67)), ("G:maj", (43, 59, 62, 67)),
               ("A:min", (45, 60, 64, 69)), ("F:maj", (41, 60, 65, 69))]


@pytest.mark.skipif(not (MODELS / "chord-small").is_dir(), reason="no shipped chord model")
def test_shipped_chord_model_reads_a_rendered_progression():
    # Strings (not seen as this exact voicing in training) play C G Am F, 2 s each.
    notes = [Note(p, 2.0 * i, 2.0 * i + 1.9, 85) for i, (_, ps) in enumerate(PROGRESSION)
             for p in ps]
    x = render_part(Part("pad", 48, "strings", "comp", notes), duration=8.0)
    model = load_model(ChordRecognizer, MODELS / "chord-small")
    segments = model.transcribe(x, 16_000)
    est_iv = np.array([[s, e] for s, e, _ in segments])
    ref_iv = np.array([[2.0 * i, 2.0 * i + 2.0] for i in range(4)])
    ref_labels = [label for label, _ in PROGRESSION]
    est_iv, est_labels = mir_eval.util.adjust_intervals(
        est_iv, [lab for _, _, lab in segments], 0.0, 8.0, "N", "N")
    iv, ref_l, est_l = mir_eval.util.merge_labeled_intervals(ref_iv, ref_labels, est_iv,
                                                             est_labels)
    score = mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref_l, est_l),
                                             mir_eval.util.intervals_to_durations(iv))
    assert score >= 0.8, segments
