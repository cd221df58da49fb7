"""The edit report on a tiny synthetic dataset: files, anchors, per-task values, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructme.cli import main
from instructme.errors import ManifestError
from instructme.metrics.embeddings import LogMelStatsEmbedding, classifier_embedding
from instructme.metrics.pch_ioi import PITCH_CLASSES, pitch_class_histogram
from instructme.metrics.report import Analyzers, evaluate_edits
from instructme.vocab import INSTRUMENT_CLASSES

SR = 16000
SONG_SECONDS = 3.0
BANDS = {"bass": (30, 180), "piano": (180, 1200), "strings": (1200, 2600), "drums": (4000, 8000)}
STYLES = ["pop", "jazz"]


def _tone(freqs: list[float], seconds: float = SONG_SECONDS) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)


def _drums(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(int(SR * SONG_SECONDS))
    hp = np.diff(rng.normal(size=x.shape[0] + 1))  # high-passed noise
    for k in range(0, x.shape[0] - 800, int(0.25 * SR)):
        x[k:k + 800] = hp[k:k + 800] * np.exp(-np.arange(800) / 150)
    return x


def _song_stems(root: int, seed: int) -> dict[str, np.ndarray]:
    f0 = 440.0 * 2 ** ((root - 69) / 12)
    return {
        "bass": 0.3 * _tone([f0 / 4]),
        "piano": 0.2 * _tone([f0, f0 * 2 ** (4 / 12), f0 * 2 ** (7 / 12)]),
        "strings": 0.2 * _tone([f0 * 4, f0 * 4 * 2 ** (4 / 12)]),
        "drums": 0.5 * _drums(seed),
    }


def make_dataset(root: Path) -> tuple[Path, list[dict]]:
    (root / "manifests").mkdir(parents=True)
    (root / "build.json").write_text(json.dumps({"preset": "test", "seed": 0,
                                                 "sample_rate": SR, "config": {}}))
    for song, midi, label in (("s1", 60, "C:maj"), ("s2", 69, "A:maj")):
        d = root / "songs" / song
        d.mkdir(parents=True)
        stems = {}
        for name, x in _song_stems(midi, seed=midi).items():
            sf.write(str(d / f"{name}.flac"), x.astype(np.float32), SR)
            stems[name] = {"path": f"songs/{song}/{name}.flac", "instrument": name,
                           "variant_of": "piano" if name == "strings" else None}
        (d / "song.json").write_text(json.dumps({
            "song_id": song, "chords": [{"start": 0.0, "end": SONG_SECONDS, "label": label}],
            "stems": stems}))

    def p(song: str, *names: str) -> list[str]:
        return [f"songs/{song}/{n}.flac" for n in names]

    base = {"start": 0.5, "duration": 2.0, "split": "test", "instruction": "x"}
    records = [
        {"id": "r1", "task": "add", "args": {"instrument": "piano"}, "song": "s1",
         "source": p("s1", "bass", "drums"), "target": p("s1", "bass", "drums", "piano")},
        {"id": "r2", "task": "remove", "args": {"instrument": "drums"}, "song": "s1",
         "source": p("s1", "bass", "drums", "piano"), "target": p("s1", "bass", "piano")},
        {"id": "r3", "task": "extract", "args": {"instrument": "bass"}, "song": "s2",
         "source": p("s2", "bass", "drums", "piano"), "target": p("s2", "bass")},
        {"id": "r4", "task": "replace", "args": {"instrument": "piano",
                                                  "new_instrument": "strings"}, "song": "s2",
         "source": p("s2", "bass", "piano"), "target": p("s2", "bass", "strings")},
        {"id": "r5", "task": "remix", "args": {"style": "jazz"}, "song": "s1",
         "source": p("s1", "bass", "piano"), "target": p("s1", "bass", "strings")},
        {"id": "r6", "task": "multiround", "args": {"rounds": 2}, "song": "s2",
         "source": p("s2", "bass", "drums"), "target": p("s2", "bass", "piano"),
         "rounds": [{"task": "remove", "args": {"instrument": "drums"}},
                    {"task": "add", "args": {"instrument": "piano"}}]},
    ]
    records = [{**base, **r} for r in records]
    manifest = root / "manifests" / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest, records


def window(root: Path, paths: list[str]) -> np.ndarray:
    a, b = int(0.5 * SR), int(2.5 * SR)
    return sum(sf.read(str(root / p), dtype="float32")[0][a:b] for p in paths)


def write_outputs(root: Path, records: list[dict], out: Path) -> None:
    """r2 does nothing (output = source), r4 outputs noise, the others are perfect."""
    out.mkdir()
    for r in records:
        if r["id"] == "r2":
            x = window(root, r["source"])
        elif r["id"] == "r4":
            x = 0.1 * np.random.default_rng(0).normal(size=2 * SR)
        else:
            x = window(root, r["target"])
        sf.write(str(out / f"{r['id']}.wav"), np.asarray(x, np.float32), SR)


class BandClassifier(torch.nn.Module):
    """Instrument present when its frequency band holds > 2 % of the energy; style 'jazz'
    when strings are present (matches the synthetic data exactly)."""

    instrument_names = list(INSTRUMENT_CLASSES)
    style_names = STYLES

    def _shares(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = torch.fft.rfft(x, dim=1).abs() ** 2
        freqs = torch.fft.rfftfreq(x.shape[1], 1 / SR)
        total = spec.sum(dim=1) + 1e-12
        return {k: spec[:, (freqs >= lo) & (freqs < hi)].sum(dim=1) / total
                for k, (lo, hi) in BANDS.items()}

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shares = self._shares(x)
        inst = torch.zeros(x.shape[0], len(INSTRUMENT_CLASSES))
        for k, s in shares.items():
            inst[:, INSTRUMENT_CLASSES.index(k)] = (s > 0.02).float()
        jazz = (shares["strings"] > 0.02).float()
        return {"instruments": inst, "style": torch.stack([1 - jazz, jazz], dim=1)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(self._shares(x).values()), dim=1)


class PeakChordRecognizer:
    """One major chord on the strongest pitch class of the clip (enough for a fixture)."""

    def transcribe(self, x: np.ndarray, sr: int) -> list[tuple[float, float, str]]:
        p = pitch_class_histogram(x, sr)
        label = "N" if p.sum() == 0 else f"{PITCH_CLASSES[int(np.argmax(p))]}:maj"
        return [(0.0, x.shape[0] / sr, label)]


def fixture_analyzers() -> Analyzers:
    clf = BandClassifier()
    return Analyzers(embedders=[LogMelStatsEmbedding(), classifier_embedding(clf, 0.5)],
                     chord=PeakChordRecognizer(), chord_description="peak-pitch test recognizer",
                     classifier=clf, classifier_description="band-energy test classifier")


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    manifest, records = make_dataset(tmp_path / "data")
    write_outputs(tmp_path / "data", records, tmp_path / "outputs")
    return manifest, tmp_path / "outputs", records


def test_report_files_and_anchor_values(dataset, tmp_path):
    manifest, outputs, records = dataset
    report = evaluate_edits(manifest, outputs, tmp_path / "report",
                            analyzers=fixture_analyzers(), progress=False, n_examples=2)
    out = tmp_path / "report"
    saved = json.loads((out / "report.json").read_text())
    assert saved["n_records"] == 6 and saved["tasks"].keys() == report["tasks"].keys()
    assert set(saved["tasks"]) == {"add", "remove", "extract", "replace", "remix",
                                   "multiround", "all"}
    assert [e["name"] for e in saved["embeddings"]] == ["logmel-stats", "classifier"]
    for name in saved["files"]["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(n.startswith("spectrograms_") for n in saved["files"]["plots"]) == 2
    assert "metrics_fad_logmel-stats.png" in saved["files"]["plots"]
    md = (out / "report.md").read_text()
    assert "FAD logmel-stats" in md and "band-energy test classifier" in md
    assert md.count("\n| ") == 1 + 7 * 4  # header + 7 task groups x 4 systems
    # 2 log-mel windows < 128 dimensions: flagged; 4 classifier windows >= 4 dimensions: not.
    assert "| add | target | 1 | 0.000* | 0.000 |" in md

    allt = saved["tasks"]["all"]
    # The target anchor is perfect on every metric.
    assert allt["target"]["fad"]["logmel-stats"] == pytest.approx(0.0, abs=1e-6)
    for m in ("pch", "ioi", "cra", "ia"):
        assert allt["target"][m] == pytest.approx(1.0), m
    # Perfect outputs score like the target; the do-nothing and noise outputs do not.
    clips = {r["id"]: r for r in map(json.loads, (out / "per_clip.jsonl").read_text().split(
        "\n")[:-1])}
    # (outputs are 16-bit files: quantisation leaves tiny differences)
    assert clips["r1"]["output"]["ia"] == 1.0
    assert clips["r1"]["output"]["pch"] == pytest.approx(1.0, abs=1e-3)
    assert clips["r2"]["output"]["ia"] == 0.0  # drums still there
    assert "drums still present" in clips["r2"]["output"]["ia_reason"]
    assert clips["r4"]["output"]["ia"] == 0.0 and clips["r4"]["output"]["pch"] < 0.5
    assert clips["r6"]["output"]["ia"] == 1.0
    assert saved["tasks"]["remove"]["source"]["ia"] == 0.0
    fad_add = saved["tasks"]["add"]["output"]["fad"]["logmel-stats"]
    assert fad_add < 0.05 and saved["tasks"]["replace"]["output"]["fad"]["logmel-stats"] > 1.0
    # Random partners come from the other song.
    song = {r["id"]: r["song"] for r in records}
    assert all(song[c["random_partner"]] != c["song"] for c in clips.values())


def test_report_is_deterministic(dataset, tmp_path):
    manifest, outputs, _ = dataset
    a = evaluate_edits(manifest, outputs, tmp_path / "a", analyzers=fixture_analyzers(),
                       progress=False, n_examples=0)
    b = evaluate_edits(manifest, outputs, tmp_path / "b", analyzers=fixture_analyzers(),
                       progress=False, n_examples=0)
    assert json.dumps(a["tasks"], sort_keys=True) == json.dumps(b["tasks"], sort_keys=True)


def test_missing_outputs_and_bad_manifest_raise(dataset, tmp_path):
    manifest, outputs, _ = dataset
    (outputs / "r3.wav").unlink()
    with pytest.raises(ManifestError, match="1 of 6 edits missing, e.g. r3.wav"):
        evaluate_edits(manifest, outputs, tmp_path / "r", analyzers=Analyzers(), progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(ManifestError, match="lacks"):
        evaluate_edits(bad, outputs, tmp_path / "r", data_dir=manifest.parent.parent,
                       analyzers=Analyzers(), progress=False)


def test_cli_eval_edits(dataset, tmp_path, capsys):
    manifest, outputs, _ = dataset
    rc = main(["eval", "edits", "--manifest", str(manifest), "--outputs", str(outputs),
               "--out", str(tmp_path / "cli"), "--chord-model", "none", "--classifier", "none",
               "--embeddings", "logmel-stats", "--quiet", "--examples", "1"])
    assert rc == 0
    saved = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert saved["tasks"]["all"]["output"]["ia"] is None  # no classifier
    assert "no classifier (--classifier none)" in saved["not_available"]["ia"]
    assert "n/a" in capsys.readouterr().out
    (outputs / "r1.wav").unlink()
    rc = main(["eval", "edits", "--manifest", str(manifest), "--outputs", str(outputs),
               "--out", str(tmp_path / "cli2"), "--chord-model", "none", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "r1.wav" in err and "\n" not in err


def test_cli_eval_edits_judges_with_the_shipped_classifier(dataset, tmp_path, monkeypatch,
                                                           capsys):
    """Without --classifier, IA is judged by the shipped classifier-diverse; a checkout without
    it gets a one-line error naming both ways out."""
    from instructme.commands import evaluate as evaluate_cmd

    manifest, outputs, _ = dataset
    args = ["eval", "edits", "--manifest", str(manifest), "--outputs", str(outputs),
            "--chord-model", "none", "--embeddings", "logmel-stats", "--quiet",
            "--examples", "0"]
    monkeypatch.chdir(evaluate_cmd.default_classifier_dir().parents[1])  # the checkout
    assert main([*args, "--out", str(tmp_path / "rep")]) == 0
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert "(models/classifier-diverse)" in saved["classifier"]  # named as typed in the checkout
    assert saved["tasks"]["all"]["target"]["ia"] is not None
    monkeypatch.setattr(evaluate_cmd, "default_classifier_dir", lambda: tmp_path / "nothing")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "rep2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--classifier DIR" in err and "--classifier none" in err and "\n" not in err
    assert not (tmp_path / "rep2").exists()


def test_cli_with_the_project_chord_recognizer_and_classifier(dataset, tmp_path, capsys):
    """Untrained tiny models saved as model folders load and run through the whole report."""
    from instructme.checkpoint import save_model
    from instructme.models.chord import ChordConfig, ChordRecognizer
    from instructme.models.classifier import ClassifierConfig, InstrumentClassifier

    manifest, outputs, _ = dataset
    torch.manual_seed(0)
    save_model(ChordRecognizer(ChordConfig.preset("tiny")), tmp_path / "chord")
    clf = InstrumentClassifier(ClassifierConfig.preset("tiny", styles=("pop", "rock")))
    save_model(clf, tmp_path / "clf", extra={"train": {"crop_seconds": 1.0}})
    rc = main(["eval", "edits", "--manifest", str(manifest), "--outputs", str(outputs),
               "--out", str(tmp_path / "rep"), "--chord-model", str(tmp_path / "chord"),
               "--classifier", str(tmp_path / "clf"), "--embeddings", "classifier",
               "--quiet", "--examples", "0"])
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert "ChordRecognizer" in saved["chord_recognizer"]
    assert "unseen accuracy not measured" in saved["classifier"]  # how far to trust IA
    assert "1 s windows" in saved["embeddings"][0]["description"]
    allt = saved["tasks"]["all"]
    assert allt["target"]["cra"] == pytest.approx(1.0)
    assert allt["output"]["ia_n"] == 5  # the remix style "jazz" is unknown to this classifier
    clips = [json.loads(line) for line in (tmp_path / "rep" / "per_clip.jsonl").open()]
    remix = next(c for c in clips if c["task"] == "remix")
    assert remix["output"]["ia"] is None and "jazz" in remix["output"]["ia_reason"]
    assert allt["target"]["fad"]["classifier"] == pytest.approx(0.0, abs=1e-6)
