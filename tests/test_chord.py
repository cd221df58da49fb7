"""Chord recognizer: label mapping, HMM decoding, shapes, a real learning test on synthetic
triads, save/load, the trainer (resumable) on a synthetic dataset folder, mir_eval scoring
and the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import types

import mir_eval.chord
import numpy as np
import pytest
import soundfile as sf
import torch
from synth_songs import SR, make_dataset, triad

from instructme.checkpoint import load_model, save_model
from instructme.cli import main
from instructme.errors import DependencyError
from instructme.models.chord import (
    IGNORE_INDEX,
    MAJMIN_LABELS,
    N_INDEX,
    SEVENTHS_LABELS,
    ChordConfig,
    ChordRecognizer,
    chord_to_index,
    frames_to_segments,
    transpose_index,
    viterbi,
)
from instructme.models.features import LogFrequencySpectrogram
from instructme.training.chord import (
    ChordCrops,
    ChordTrainConfig,
    chord_loss,
    evaluate_transcriber,
    reference_segments,
    score_segments,
    train_chord,
)
from instructme.training.stem_mixes import MixSpec, load_songs


def test_vocabulary_and_label_mapping():
    assert len(MAJMIN_LABELS) == 25 and MAJMIN_LABELS[N_INDEX] == "N"
    for i, lab in enumerate(MAJMIN_LABELS):
        mir_eval.chord.encode(lab)
        assert chord_to_index(lab) == i
    cases = {"C:7": "C:maj", "C:maj7": "C:maj", "Db:maj/3": "C#:maj", "A:min7": "A:min",
             "F#:dim": "F#:min", "B:hdim7": "B:min", "E:aug": "E:maj", "Bb": "Bb:maj",
             "G:9": "G:maj", "N": "N"}
    for rich, simple in cases.items():
        assert MAJMIN_LABELS[chord_to_index(rich)] == MAJMIN_LABELS[chord_to_index(simple)], rich
    for bad in ("X", "C:sus4", "C:5", "C:(1)", "H:maj", ""):
        assert chord_to_index(bad) == IGNORE_INDEX, bad
    idx = np.array([0, 11, 12, 23, N_INDEX, IGNORE_INDEX])
    assert transpose_index(idx, 1).tolist() == [1, 0, 13, 12, N_INDEX, IGNORE_INDEX]
    assert transpose_index(torch.tensor(idx), -1).tolist() == [11, 10, 23, 22, N_INDEX,
                                                              IGNORE_INDEX]


def test_sevenths_vocabulary_keeps_the_seventh():
    assert len(SEVENTHS_LABELS) == 61 and SEVENTHS_LABELS[-1] == "N"
    for i, lab in enumerate(SEVENTHS_LABELS):
        assert chord_to_index(lab, SEVENTHS_LABELS) == i, lab
    cases = {"C:7": "C:7", "C:maj7": "C:maj7", "F:maj9": "F:maj7", "G:9": "G:7",
             "A:min7": "A:min7", "A:min9": "A:min7", "B:hdim7": "B:min", "C:dim7": "C:min",
             "E:aug": "E:maj", "D:min/b3": "D:min", "Bb:7/3": "Bb:7", "N": "N"}
    for rich, label in cases.items():
        assert SEVENTHS_LABELS[chord_to_index(rich, SEVENTHS_LABELS)] == label, rich
    assert chord_to_index("X", SEVENTHS_LABELS) == IGNORE_INDEX
    b7, c7 = SEVENTHS_LABELS.index("B:7"), SEVENTHS_LABELS.index("C:7")
    idx = np.array([b7, 60, IGNORE_INDEX])
    assert transpose_index(idx, 1, n_index=60).tolist() == [c7, 60, IGNORE_INDEX]
    assert ChordConfig(labels=SEVENTHS_LABELS).vocabulary == "sevenths"
    with pytest.raises(ValueError, match="vocabularies"):
        ChordRecognizer(ChordConfig.preset("tiny", labels=MAJMIN_LABELS[:-1]))


@pytest.mark.parametrize(("k", "t_len", "stay"), [(3, 6, 0.7), (4, 5, 0.3), (2, 9, 0.95)])
def test_viterbi_matches_brute_force(k, t_len, stay):
    rng = np.random.default_rng(k)
    prob = rng.dirichlet(np.ones(k), size=t_len)
    trans = np.full((k, k), (1 - stay) / (k - 1))
    np.fill_diagonal(trans, stay)

    def score(path):
        s = np.log(1 / k) + np.log(prob[0, path[0]])
        for a, b, t in zip(path[:-1], path[1:], range(1, t_len)):
            s += np.log(trans[a, b]) + np.log(prob[t, b])
        return s

    best = max(itertools.product(range(k), repeat=t_len), key=score)
    path = viterbi(prob, stay)
    assert path.dtype == np.int64 and path.tolist() == list(best)
    assert viterbi(prob[:0], stay).shape == (0,)
    with pytest.raises(ValueError, match="self_prob"):
        viterbi(prob, 1.0)


def test_viterbi_smooths_blips():
    # a strong self-transition smooths away a one-frame blip
    blip = np.array([[0.9, 0.1]] * 5 + [[0.3, 0.7]] + [[0.9, 0.1]] * 5)
    assert viterbi(blip, 0.99).tolist() == [0] * 11
    assert viterbi(blip, 0.5)[5] == 1


def test_frames_to_segments_timing():
    segs = frames_to_segments(np.array([0, 0, 0, 12, 12, 24]), MAJMIN_LABELS, 10.0, 0.52)
    assert segs == [(0.0, 0.25, "C:maj"), (0.25, 0.45, "C:min"), (0.45, 0.52, "N")]


def test_log_frequency_filterbank_shift_is_transposition():
    fe = LogFrequencySpectrogram(SR, 4096, 1600, 48, 24, 2, margin_semitones=3)
    t = np.arange(SR) / SR
    a = torch.tensor(np.sin(2 * np.pi * 440 * t), dtype=torch.float32)[None]  # A4 = MIDI 69
    b = torch.tensor(np.sin(2 * np.pi * 440 * 2 ** (2 / 12) * t), dtype=torch.float32)[None]
    peak_a = fe.crop(fe(a), 0)[0].mean(-1).argmax().item()
    peak_b = fe.crop(fe(b), 2)[0].mean(-1).argmax().item()  # B4 seen 2 semitones higher
    assert peak_a == (69 - 48) * 2 and peak_b == peak_a
    assert (fe.matrix.sum(0) - 1).abs().max() < 1e-5  # no empty filter at low pitches


def test_predict_proba_shapes_and_normalisation():
    torch.manual_seed(0)
    model = ChordRecognizer(ChordConfig.preset("tiny"))
    for n in (SR * 2 + 123, 500):  # also a clip shorter than the FFT window
        p = model.predict_proba(torch.randn(3, n) * 0.1)
        assert p.shape == (3, n // model.config.hop + 1, 25)
        assert torch.allclose(p.sum(-1), torch.ones(p.shape[:2]), atol=1e-5)
    assert model.training  # predict_proba restores the mode
    segs = model.transcribe(np.zeros(SR * 3, np.float32), SR)
    assert segs[0][0] == 0.0 and segs[-1][1] == pytest.approx(3.0)
    for (s, e, lab), nxt in zip(segs, segs[1:] + [None]):
        assert e > s and lab in model.labels
        mir_eval.chord.encode(lab)
        if nxt is not None:
            assert nxt[0] == pytest.approx(e)


def test_learns_synthetic_triads_and_round_trips(tmp_path):
    """A real learning test: a tiny model trained for a few seconds on random harmonic triads
    (with pitch-shift augmentation) names unseen triads, C major included."""
    torch.manual_seed(0)
    cfg = ChordConfig.preset("tiny")
    model = ChordRecognizer(cfg)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    n = SR // 2
    for _ in range(200):
        roots = rng.integers(12, size=8)
        minor = rng.integers(2, size=8)
        x = torch.from_numpy(np.stack([triad(int(r), bool(m), n, rng)
                                       for r, m in zip(roots, minor)]))
        y = torch.tensor(roots + 12 * minor)[:, None].repeat(1, model.num_frames(n))
        loss, _ = chord_loss(model, (x, y), int(rng.integers(-6, 7)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_rng = np.random.default_rng(123)
    c_major = model.transcribe(triad(0, False, SR * 2, test_rng), SR)
    assert [lab for _, _, lab in c_major] == ["C:maj"]
    hits = 0
    for i in range(24):
        segs = model.transcribe(triad(i % 12, i >= 12, SR, test_rng), SR)
        hits += [lab for _, _, lab in segs] == [MAJMIN_LABELS[i]]
    assert hits >= 20, hits

    save_model(model, tmp_path / "m")
    again = load_model(ChordRecognizer, tmp_path / "m")
    x = torch.from_numpy(triad(7, False, SR, test_rng))[None]
    assert torch.allclose(model.predict_proba(x), again.predict_proba(x), atol=1e-6)
    assert again.labels == MAJMIN_LABELS


def test_unlabelled_batch_gives_zero_loss_not_nan():
    model = ChordRecognizer(ChordConfig.preset("tiny"))
    x = torch.randn(2, SR) * 0.1
    y = torch.full((2, model.num_frames(SR)), IGNORE_INDEX)
    loss, _ = chord_loss(model, (x, y), 0)
    assert loss.item() == 0.0
    loss.backward()


def test_scoring_is_exact():
    ref = [(0.0, 2.0, "C:maj"), (2.0, 4.0, "A:min7"), (4.0, 5.0, "X")]
    assert score_segments(ref, [(0.0, 2.0, "C:maj"), (2.0, 5.0, "A:min")]) == {
        "root": (4.0, 4.0), "majmin": (4.0, 4.0), "sevenths": (2.0, 4.0)}
    assert score_segments(ref, [(0.0, 2.0, "C:maj"), (2.0, 5.0, "A:min7")])["sevenths"] == (
        4.0, 4.0)
    got = score_segments(ref, [(0.0, 1.0, "C:maj"), (1.0, 5.0, "A:maj")])
    assert got["majmin"] == pytest.approx((1.0, 4.0))
    assert got["root"] == pytest.approx((3.0, 4.0))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("chord_data"))


def test_crops_targets_follow_the_score(data):
    songs = load_songs(data, ("train",))
    cfg = ChordConfig.preset("tiny")
    ds = ChordCrops(songs, cfg, MixSpec(crop_seconds=3.0), length=20, seed=0)
    for i in range(10):
        audio, targets = ds[i]
        assert audio.shape == (3 * SR,) and targets.shape == (3 * SR // cfg.hop + 1,)
        rng = np.random.default_rng([0, i])  # the same draw the dataset made
        from instructme.training.stem_mixes import draw_mix

        mix = draw_mix(songs, MixSpec(crop_seconds=3.0), rng)
        assert np.array_equal(mix.audio, audio.numpy())
        t = mix.start + 1.0  # frame 10 at 10 frames/s
        label = next(c.label for c in mix.song.chords if c.start <= t < c.end)
        assert targets[10].item() == chord_to_index(label)
    assert torch.equal(ds[3][0], ds[3][0])  # deterministic


def test_reference_segments_fill_gaps(data):
    song = load_songs(data, ("test",))[0]
    song.chords = song.chords[1:2]
    ref = reference_segments(song)
    assert ref[0][2] == "X" and ref[-1][2] == "X" and ref[-1][1] == song.duration


def test_trainer_resumes_and_cli(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "chord"
    tcfg = dataclasses.replace(ChordTrainConfig.preset("tiny"), ema_decay=0.9)
    train_chord(data, out, steps=6, train_config=tcfg, log=lambda s: None)
    assert (out / "model.safetensors").is_file() and (out / "state").is_dir()
    with pytest.raises(Exception, match="--resume"):
        train_chord(data, out, steps=6, train_config=tcfg, log=lambda s: None)
    metrics = train_chord(data, out, steps=8, resume=True, train_config=tcfg,
                          log=lambda s: None)
    assert 0.0 <= metrics["majmin"] <= 1.0 and metrics["seconds"] > 0
    log = [json.loads(line) for line in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [6, 8]  # continued, not restarted
    assert json.loads((out / "state" / "trainer.json").read_text())["step"] == 8
    model = load_model(ChordRecognizer, out)
    songs = load_songs(data, ("test",))
    r = evaluate_transcriber(model.transcribe, songs)
    assert r["songs"] == 1 and 0.0 <= r["root"] <= 1.0

    assert main(["eval", "chord", "--model", str(out), "--data", str(data), "--no-anchor"]) == 0
    table = capsys.readouterr().out
    assert "majmin" in table and "instructme" in table

    class Missing:  # the madmom anchor, as when the eval extra is not installed
        def __init__(self):
            raise DependencyError("madmom is not installed")

    fake = types.ModuleType("instructme.metrics.madmom_models")
    fake.MadmomChordModel = Missing
    monkeypatch.setitem(sys.modules, "instructme.metrics.madmom_models", fake)
    assert main(["eval", "chord", "--model", str(out), "--data", str(data)]) == 0
    anchor = capsys.readouterr().out.strip().splitlines()[-1]
    assert anchor.startswith("madmom") and "not installed" in anchor

    wav = tmp_path / "x.wav"
    sf.write(wav, triad(0, False, SR, np.random.default_rng(0)), SR)
    assert main(["chords", str(wav), "--model", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    start, end, label = lines[0].split()
    assert float(start) == 0.0 and label in MAJMIN_LABELS
    assert float(lines[-1].split()[1]) == pytest.approx(1.0)

    sevenths = tmp_path / "sevenths"
    assert main(["train", "chord", "--data", str(data), "--out", str(sevenths), "--preset",
                 "tiny", "--steps", "2", "--vocabulary", "sevenths"]) == 0
    assert "sevenths" in capsys.readouterr().out
    assert load_model(ChordRecognizer, sevenths).labels == SEVENTHS_LABELS


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    model = ChordRecognizer(ChordConfig.preset("tiny"))
    save_model(model, tmp_path / "m")
    assert main(["chords", str(bad), "--model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert main(["chords", str(bad), "--model", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "chord", "--model", str(tmp_path / "m"), "--data",
                 str(tmp_path / "nodata")]) == 2
    assert capsys.readouterr().err.startswith("error:")
