"""Instruction accuracy: the truth table of every task, multi-round chains, the wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.errors import InstructionError, InstructMEError
from instructme.metrics.instruction_accuracy import (
    Probs,
    classifier_probs,
    instruction_obeyed,
    judge,
)
from instructme.vocab import INSTRUMENT_CLASSES

STYLES = ["pop", "rock", "jazz"]


def probs(*present: str, style: str | None = None) -> Probs:
    p = np.full(len(INSTRUMENT_CLASSES), 0.1)
    for name in present:
        p[INSTRUMENT_CLASSES.index(name)] = 0.9
    s = None
    if style is not None:
        s = np.full(len(STYLES), 0.1)
        s[STYLES.index(style)] = 0.8
    return Probs(p, s)


# (task, args, source classes, output classes, expected)
TRUTH = [
    ("add", {"instrument": "piano"}, {"drums"}, {"drums", "piano"}, True),
    ("add", {"instrument": "piano"}, {"drums"}, {"drums"}, False),               # not added
    ("add", {"instrument": "piano"}, {"drums", "piano"}, {"drums", "piano"}, False),  # was there
    ("remove", {"instrument": "drums"}, {"drums", "bass"}, {"bass"}, True),
    ("remove", {"instrument": "drums"}, {"drums", "bass"}, {"bass", "drums"}, False),
    ("remove", {"instrument": "drums"}, {"drums", "bass"}, set(), True),     # silence: drums gone
    ("extract", {"instrument": "bass"}, {"drums", "bass"}, {"bass"}, True),
    ("extract", {"instrument": "bass"}, {"drums", "bass"}, {"bass", "drums"}, False),
    ("extract", {"instrument": "bass"}, {"drums", "bass"}, set(), False),    # nothing extracted
    ("replace", {"instrument": "guitar", "new_instrument": "strings"}, {"guitar", "bass"},
     {"strings", "bass"}, True),
    ("replace", {"instrument": "guitar", "new_instrument": "strings"}, {"guitar", "bass"},
     {"guitar", "strings", "bass"}, False),                                  # X not removed
    ("replace", {"instrument": "guitar", "new_instrument": "strings"}, {"guitar", "bass"},
     {"bass"}, False),                                                       # Y not added
]


@pytest.mark.parametrize("task,args,src,out,expected", TRUTH)
def test_truth_table(task, args, src, out, expected):
    assert instruction_obeyed(task, args, probs(*src), probs(*out)) is expected
    # Plain [K] arrays are accepted too.
    assert instruction_obeyed(task, args, probs(*src).instruments,
                              probs(*out).instruments) is expected


def test_remix_uses_the_style_argmax():
    src = probs("drums", style="pop")
    assert judge("remix", {"style": "jazz"}, src, probs("drums", style="jazz"),
                 style_names=STYLES).obeyed
    j = judge("remix", {"style": "jazz"}, src, probs("drums", style="rock"), style_names=STYLES)
    assert not j.obeyed and "rock" in j.reason
    with pytest.raises(InstructionError):
        judge("remix", {"style": "polka"}, src, probs(style="jazz"), style_names=STYLES)
    with pytest.raises(InstructMEError):
        judge("remix", {"style": "jazz"}, src, probs("drums"))  # no style probabilities


def test_threshold_decides_presence():
    p = np.zeros(len(INSTRUMENT_CLASSES))
    p[INSTRUMENT_CLASSES.index("piano")] = 0.6
    assert instruction_obeyed("add", {"instrument": "piano"}, np.zeros_like(p), p, threshold=0.5)
    assert not instruction_obeyed("add", {"instrument": "piano"}, np.zeros_like(p), p,
                                  threshold=0.7)
    per_class = np.full(len(INSTRUMENT_CLASSES), 0.7)  # calibrated: one threshold per class
    per_class[INSTRUMENT_CLASSES.index("piano")] = 0.3
    assert instruction_obeyed("add", {"instrument": "piano"}, np.zeros_like(p), p,
                              threshold=per_class)
    p[INSTRUMENT_CLASSES.index("drums")] = 0.6  # under drums' 0.7: still counts as absent
    assert instruction_obeyed("extract", {"instrument": "piano"}, p, p, threshold=per_class)


def test_multiround_checks_the_final_state():
    rounds = [
        {"task": "remove", "args": {"instrument": "drums"}},
        {"task": "add", "args": {"instrument": "piano"}},
        {"task": "replace", "args": {"instrument": "guitar", "new_instrument": "strings"}},
    ]
    src = probs("drums", "guitar", "bass")
    ok = judge("multiround", {"rounds": 3}, src, probs("bass", "piano", "strings"), rounds=rounds)
    assert ok.obeyed, ok.reason
    bad = judge("multiround", {"rounds": 3}, src, probs("bass", "piano", "strings", "drums"),
                rounds=rounds)
    assert not bad.obeyed and "drums" in bad.reason
    # A later round wins: remove then add back the same class -> it must be present.
    back = [{"task": "remove", "args": {"instrument": "drums"}},
            {"task": "add", "args": {"instrument": "drums"}}]
    assert instruction_obeyed("multiround", {}, src, probs("drums", "guitar", "bass"),
                              rounds=back)
    assert not instruction_obeyed("multiround", {}, src, probs("guitar", "bass"), rounds=back)


@pytest.mark.parametrize("task,args", [
    ("add", {"instrument": "kazoo"}),
    ("replace", {"instrument": "guitar"}),
    ("transpose", {"instrument": "piano"}),
    ("remix", {}),
    ("multiround", {}),
])
def test_bad_tasks_and_args_raise(task, args):
    with pytest.raises(InstructionError):
        judge(task, args, probs(), probs())


def test_wrong_probability_shape_raises():
    with pytest.raises(InstructMEError):
        judge("add", {"instrument": "piano"}, np.zeros(3), np.zeros(3))


class _Classifier(torch.nn.Module):
    """Predicts 'piano' when the clip's mean absolute value is large."""

    instrument_names = list(INSTRUMENT_CLASSES)
    style_names = STYLES

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        assert isinstance(x, torch.Tensor) and x.ndim == 2
        loud = (x.abs().mean(dim=1) > 0.1).float()
        inst = torch.zeros(x.shape[0], len(INSTRUMENT_CLASSES))
        inst[:, INSTRUMENT_CLASSES.index("piano")] = loud
        return {"instruments": inst, "style": torch.full((x.shape[0], 3), 1 / 3)}


def test_classifier_wrapper_batches_and_lists():
    clf = _Classifier()
    clips = np.stack([np.zeros(100), np.full(100, 0.5)]).astype(np.float32)
    out = classifier_probs(clf, clips)
    assert len(out) == 2 and out[1].style.shape == (3,)
    assert instruction_obeyed("add", {"instrument": "piano"}, out[0], out[1])
    out2 = classifier_probs(clf, [np.zeros(50), np.full(80, 0.5)])  # unequal lengths
    assert [p.instruments[0] for p in out2] == [0.0, 1.0]
