"""The separation benchmark: anchors score as they must on records with exact stems."""

from __future__ import annotations

import numpy as np
import torch

from instructme.metrics import separation_eval as se
from instructme.models.separator import Separator, SeparatorConfig

SR = 16_000


def _records() -> list[se.Record]:
    rng = np.random.default_rng(0)
    t = np.arange(SR * 2) / SR
    out = []
    for k, name in enumerate(("drums", "bass", "piano")):
        if name == "drums":  # clicks: percussive
            target = np.zeros_like(t)
            target[:: SR // 4] = 1.0
            target = np.convolve(target, np.exp(-np.arange(400) / 40.0))[: t.size] * 0.5
        else:
            target = 0.3 * np.sin(2 * np.pi * (55.0 * (k + 1)) * t)
        rest = 0.2 * np.sin(2 * np.pi * 440.0 * t) + 0.02 * rng.standard_normal(t.size)
        out.append(se.Record((target + rest).astype(np.float32), target.astype(np.float32),
                             name))
    return out


def _oracle(r: se.Record) -> se.Answer:
    return r.target, r.mix - r.target


def test_anchors_score_in_order() -> None:
    torch.manual_seed(0)
    model = Separator(SeparatorConfig.preset("tiny"))
    records = _records()
    report = se.evaluate(records, {"separator": se.separator_method(model),
                                   "do nothing": se.nothing_method,
                                   "ideal ratio mask": se.irm_method(model),
                                   "HPSS (drums)": se.hpss_method, "oracle": _oracle})
    rows = report["rows"]
    assert rows["do nothing"]["remove_better"] == 0.0 and rows["do nothing"]["count"] == 3
    assert rows["HPSS (drums)"]["count"] == 1  # drums only
    assert rows["oracle"]["extract_sisdr"] > 60 and rows["oracle"]["remove_better"] == 1.0
    assert rows["oracle"]["extract_sdr"] > 60  # BSS Eval agrees (clamped at 100 dB)
    irm, nothing = rows["ideal ratio mask"], rows["do nothing"]
    assert irm["extract_sisdr"] > nothing["extract_sisdr"] + 5
    assert irm["remove_sisdr"] > nothing["remove_sisdr"] + 5
    assert rows["HPSS (drums)"]["extract_sisdr"] > se.score(
        records[:1], [se.nothing_method(records[0])])["extract_sisdr"][0]
    assert set(report["per_class"]) == {"drums", "bass", "piano"}
    assert all(d["count"] == 1 for d in report["per_class"].values())
    table = se.format_table(report, "synthetic")
    assert table.splitlines()[0] == "synthetic" and "oracle" in table and "bass" in table


def test_musdb_records_are_the_known_classes() -> None:
    x = np.ones(100, np.float32)
    stems = {"mix": 3 * x, "drums": x, "bass": x, "vocals": 0 * x, "other": x}
    recs = se.musdb_records(stems, ("drums", "bass", "vocals", "piano"))
    assert [r.instrument for r in recs] == ["drums", "bass"]  # silent vocals dropped
    assert se.musdb_records(None, ("drums",)) == []


def test_presence_counts_heard_and_silenced_queries() -> None:
    records = _records()
    model = Separator(SeparatorConfig.preset("tiny"))
    with torch.no_grad():  # an all-pass separator: the mask is 1 everywhere
        for p in model.parameters():
            p.zero_()
        for head in model.heads:
            head[-1].bias.fill_(20.0)
    p = se.presence(model, records, records[:2])
    assert p["heard"] == 1.0 and p["silenced"] == 0.0  # everything comes through
    assert p["present"]["count"] == 3 and p["absent"]["count"] == 2
    assert abs(p["present"]["quartiles_db"][1]) < 1.0  # the extract is the whole mix
    with torch.no_grad():  # a deaf separator: every query is silenced
        for head in model.heads:
            head[-1].bias.fill_(-20.0)
    p = se.presence(model, records, records)
    assert p["heard"] == 0.0 and p["silenced"] == 1.0
    assert "heard 0 %" in se.format_presence(p)
