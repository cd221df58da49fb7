"""``instructme eval generate``: a pipeline edits every manifest record (tiny pipeline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from test_metrics_report import SR, make_dataset, window

from instructme import cli
from instructme.editing.pipeline import EditPipeline, build_tiny_pipeline
from instructme.editing.settings import EditSettings
from instructme.errors import ManifestError
from instructme.metrics.edit_manifest import generate_edits, record_instructions
from instructme.metrics.report import sample_records

TEXTS = {"r1": "add a piano", "r2": "remove the drums", "r3": "extract the bass",
         "r4": "replace the piano with strings", "r5": "remix this as jazz"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    manifest, records = make_dataset(root / "data")
    for r in records:
        r["instruction"] = TEXTS.get(r["id"], "remove the drums, then add a piano")
    records[-1]["rounds"][0]["instruction"] = "remove the drums"
    records[-1]["rounds"][1]["instruction"] = "add a piano"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    model = build_tiny_pipeline(root / "model")
    return root, manifest, records, EditPipeline.from_pretrained(model), model


def test_every_record_is_edited_and_resumes(setup, tmp_path):
    root, manifest, records, pipe, _ = setup
    out = tmp_path / "edits"
    res = generate_edits(pipe, manifest, out, EditSettings(steps=2), progress=False)
    assert res["edited"] == 6 and res["skipped"] == 0 and res["seconds"] == pytest.approx(12)
    for r in records:
        y, sr = sf.read(out / f"{r['id']}.wav", dtype="float32")
        assert sr == SR and y.shape == (2 * SR,) and np.isfinite(y).all()
    # the multi-round record runs both rounds, each output the next source
    chain = pipe.edit_chain(window(root / "data", records[-1]["source"]), SR,
                            ["remove the drums", "add a piano"], steps=2)
    np.testing.assert_allclose(sf.read(out / "r6.wav", dtype="float32")[0], chain[-1].audio,
                               atol=1e-4)
    (out / "r3.wav").unlink()
    again = generate_edits(pipe, manifest, out, EditSettings(steps=2), progress=False)
    assert (again["edited"], again["skipped"]) == (1, 5)
    with pytest.raises(ManifestError, match="other settings"):
        generate_edits(pipe, manifest, out, EditSettings(steps=3), progress=False)


def test_limit_edits_the_sample_that_eval_scores(setup, tmp_path, capsys):
    _, manifest, records, _, model = setup
    out = tmp_path / "edits"
    code = cli.main(["eval", "generate", "--manifest", str(manifest), "--out", str(out),
                     "--model", str(model), "--limit", "3", "--seed", "4", "--steps", "2",
                     "--quiet"])
    assert code == 0 and "wrote 3 edits" in capsys.readouterr().out
    want = sorted(f"{r['id']}.wav" for r in sample_records(records, 3, seed=4))
    assert sorted(p.name for p in out.glob("*.wav")) == want
    assert cli.main(["eval", "generate", "--manifest", str(tmp_path / "none.jsonl"), "--out",
                     str(out), "--model", str(model)]) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert cli.main(["eval", "generate", "--manifest", str(manifest), "--out", str(out),
                     "--model", str(model), "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


def test_tasks_select_the_records_both_commands_use(setup, tmp_path, capsys):
    _, manifest, records, _, model = setup
    tasks = sorted({r["task"] for r in records})
    keep = tasks[:1]
    picked = sample_records(records, None, tasks=keep)
    assert picked and all(r["task"] in keep for r in picked)
    assert len(picked) == sum(r["task"] in keep for r in records)
    assert all(r["task"] in keep for r in sample_records(records, 2, seed=1, tasks=keep))
    out = tmp_path / "edits"
    code = cli.main(["eval", "generate", "--manifest", str(manifest), "--out", str(out),
                     "--model", str(model), "--tasks", ",".join(keep), "--steps", "2",
                     "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(f"{r['id']}.wav" for r in picked)
    assert json.loads((out / "generate.json").read_text())["tasks"] == keep
    assert cli.main(["eval", "generate", "--manifest", str(manifest), "--out", str(out),
                     "--model", str(model), "--tasks", "juggle"]) == 2
    err = capsys.readouterr().err
    assert "no juggle records" in err and tasks[0] in err and "Traceback" not in err


def test_record_instructions():
    assert record_instructions({"task": "add", "instruction": "add a piano"}) == ["add a piano"]
    rec = {"task": "multiround", "instruction": "a, then b",
           "rounds": [{"instruction": "a"}, {"instruction": "b"}]}
    assert record_instructions(rec) == ["a", "b"]


def test_preserve_is_a_recorded_setting(setup, tmp_path):
    root, manifest, records, pipe, _ = setup
    out = tmp_path / "edits"
    generate_edits(pipe, manifest, out, EditSettings(steps=2, preserve=False), limit=2,
                   progress=False)
    assert json.loads((out / "generate.json").read_text())["preserve"] is False
    with pytest.raises(ManifestError, match=r"other settings \(preserve\)"):
        # default: on
        generate_edits(pipe, manifest, out, EditSettings(steps=2), limit=2, progress=False)
    # a folder written before the setting existed holds generated mixes
    meta = json.loads((out / "generate.json").read_text())
    del meta["preserve"]
    (out / "generate.json").write_text(json.dumps(meta))
    res = generate_edits(pipe, manifest, out, EditSettings(steps=2, preserve=False), limit=2,
                   progress=False)
    assert res["skipped"] == 2
    kept = tmp_path / "kept"
    generate_edits(pipe, manifest, kept, EditSettings(steps=2), limit=2, progress=False)
    task = {r["id"]: r["task"] for r in records}
    for r in sample_records(records, 2, seed=0):
        a, b = (sf.read(d / f"{r['id']}.wav")[0] for d in (out, kept))
        assert a.shape == b.shape and np.allclose(a, b) == (task[r["id"]] == "remix")


def test_the_separator_is_a_recorded_setting(setup, tmp_path, capsys):
    import torch

    from instructme.checkpoint import save_model
    from instructme.models.separator import Separator, SeparatorConfig

    root, manifest, _, _, _ = setup
    model = build_tiny_pipeline(tmp_path / "with-separator")
    torch.manual_seed(0)
    save_model(Separator(SeparatorConfig.preset("tiny")), model / "separator")
    out = tmp_path / "edits"
    args = ["eval", "generate", "--manifest", str(manifest), "--out", str(out), "--model",
            str(model), "--limit", "2", "--steps", "2", "--quiet"]
    assert cli.main(args) == 0
    assert json.loads((out / "generate.json").read_text())["separator"] is True
    assert cli.main([*args, "--no-separator"]) == 2
    assert "other settings (separator)" in capsys.readouterr().err
    assert cli.main([*args[:5], str(tmp_path / "plain"), *args[6:], "--no-separator"]) == 0
    assert json.loads((tmp_path / "plain" / "generate.json").read_text())["separator"] is False
