"""Loss-curve PNGs from JSONL training logs."""

from __future__ import annotations

import json

from instructme.training import plots


def test_nested_names_resumed_steps_and_missing_terms(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    recs = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "eval": {"f1": 0.1}},
            {"step": 3, "loss": 9.0},  # logged, then the run resumed from step 2
            {"step": 3, "loss": 1.0}, {"step": 4, "loss": 0.5, "eval": {"f1": True}},
            {"step": 4, "eval": {"f1": 0.4}}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    drawn = {}

    def fake_plot(self, xs, ys, **kw):  # record what each panel draws
        drawn[self.get_ylabel() or len(drawn)] = (list(xs), list(ys))

    import matplotlib.axes

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", fake_plot)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel",
                        lambda self, name: setattr(self, "_name", name))
    monkeypatch.setattr(matplotlib.axes.Axes, "get_ylabel",
                        lambda self: getattr(self, "_name", ""))
    plots.plot_losses(log, tmp_path / "loss.png", ("loss", "eval.f1", "absent"))
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert list(drawn.values()) == [([1, 2, 3, 4], [3.0, 2.0, 1.0, 0.5]), ([2, 4], [0.1, 0.4])]
    plots.plot_losses(tmp_path / "none.jsonl", tmp_path / "x.png", ("loss",))
    assert not (tmp_path / "x.png").exists()
