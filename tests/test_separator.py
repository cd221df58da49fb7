"""The stem separator: masks and shapes, extract + remove = input, chunked inference of any
length, conditioning by class, a real learning test on two synthetic instruments, the
trainer (resumable) on a dataset folder, save/load and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synth_songs import make_dataset

from instructme.checkpoint import load_model
from instructme.cli import main
from instructme.models.separator import Separator, SeparatorConfig
from instructme.training.separator import (
    SeparationCrops,
    SeparatorTrainConfig,
    evaluate_separator,
    separator_loss,
    si_sdr,
    train_separator,
)
from instructme.training.stem_mixes import MixSpec, draw_mix, load_songs

SR = 16_000


def tiny(**kw) -> Separator:
    torch.manual_seed(0)
    return Separator(SeparatorConfig.preset("tiny", **kw))


def test_masks_and_the_two_answers_sum_to_the_input() -> None:
    model = tiny().eval()
    x = torch.randn(2, SR) * 0.1
    classes = torch.tensor([model.class_index("bass"), model.class_index("drums")])
    with torch.no_grad():
        spec = model.stft(x)
        mask = model.mask(spec, classes)
        est = model(x, classes)
    assert mask.shape == spec.shape and mask.min() >= 0 and mask.max() <= 1
    assert est.shape == x.shape
    removed = x - est
    assert torch.allclose(removed + est, x)
    with pytest.raises(KeyError):
        model.class_index("kazoo")


def test_chunked_masks_cover_any_length_and_match_one_pass() -> None:
    model = tiny(chunk_frames=64, overlap_frames=16).eval()
    one = tiny(chunk_frames=100_000, overlap_frames=16).eval()
    one.load_state_dict(model.state_dict())
    for n in (100, 64 * 64, 64 * 64 * 5 + 37):
        x = torch.randn(1, n) * 0.1
        with torch.no_grad():
            a, b = model(x, torch.tensor([3])), one(x, torch.tensor([3]))
        assert a.shape == (1, n) and torch.isfinite(a).all()
        # the LSTMs see less context per chunk: close to one pass, not equal
        assert float(si_sdr(a, b)) > 15.0


def test_the_class_conditions_the_mask() -> None:
    model = tiny()
    for p in model.parameters():  # FiLM starts at zero: give the embedding a say
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else None
    x = torch.randn(1, SR) * 0.1
    with torch.no_grad():
        a = model.mask(model.stft(x), torch.tensor([0]))
        b = model.mask(model.stft(x), torch.tensor([4]))
    assert (a - b).abs().max() > 1e-3


def test_learns_to_separate_two_synthetic_instruments() -> None:
    """A low sine 'bass' and noise bursts 'drums': after 100 steps, extract bass beats the
    mix as an answer by a wide margin (a real learning test)."""
    torch.manual_seed(0)
    model = Separator(SeparatorConfig.preset("tiny", dim=24))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR

    def batch(n: int = 8):
        bass = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(50, 150) * t) for _ in range(n)])
        env = (np.sin(2 * np.pi * rng.uniform(2, 6, (n, 1)) * t) > 0.6)
        drums = 0.2 * rng.standard_normal((n, len(t))) * env
        return [torch.tensor(a, dtype=torch.float32) for a in (bass + drums, bass, drums)]

    bass_i, drums_i = model.class_index("bass"), model.class_index("drums")
    for _ in range(100):
        mix, bass, drums = batch()
        which = torch.tensor([bass_i, drums_i] * 4)
        target = torch.where((which == bass_i)[:, None], bass, drums)
        loss, _ = separator_loss(model, (mix, target, which), 0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mix, bass, drums = batch(16)
    model.eval()
    with torch.no_grad():
        est = model(mix, torch.full((16,), bass_i))
    assert float(si_sdr(est, bass).mean()) > float(si_sdr(mix, bass).mean()) + 6.0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("sep_data"))


def test_crops_targets_are_the_mixed_stems_of_the_class(data) -> None:
    songs = load_songs(data, ("train",))
    cfg = SeparatorConfig.preset("tiny")
    crops = SeparationCrops(songs, cfg, MixSpec(crop_seconds=1.0, full_mix_prob=0.0), 64,
                            seed=1, absent_prob=0.3)
    silent = 0
    for i in range(64):
        mix, target, cls = crops[i]
        assert mix.shape == target.shape == (SR,)
        silent += int(target.abs().max() == 0)
        drawn = draw_mix(songs, crops.spec, np.random.default_rng([1, i]), keep_parts=True)
        want = sum((p for s, p in zip(drawn.stems, drawn.parts)
                    if s.instrument == cfg.instruments[int(cls)]), np.zeros(SR, np.float32))
        assert np.array_equal(target.numpy(), want) and np.array_equal(mix.numpy(), drawn.audio)
        assert np.allclose(sum(drawn.parts), drawn.audio, atol=1e-6)
    assert 0 < silent < 40  # absent classes are asked for, not too often
    a, b = crops[5], crops[5]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_trainer_resumes_and_cli(data, tmp_path, capsys) -> None:
    out = tmp_path / "sep"
    tcfg = SeparatorTrainConfig.preset("tiny", eval_every=4, log_every=2)
    train_separator(data, out, preset="tiny", steps=4, train_config=tcfg, log=lambda s: None)
    with pytest.raises(Exception, match="--resume"):
        train_separator(data, out, preset="tiny", steps=4, train_config=tcfg,
                        log=lambda s: None)
    metrics = train_separator(data, out, preset="tiny", steps=6, resume=True,
                              train_config=tcfg, log=lambda s: None)
    assert np.isfinite(metrics["extract_sisdr"]) and np.isfinite(metrics["remove_sisdr"])
    logs = [json.loads(x) for x in (out / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == [2, 4, 6]
    model = load_model(Separator, out)
    assert model.config == SeparatorConfig.preset("tiny")
    songs = load_songs(data, ("test",))
    crops = SeparationCrops(songs, model.config, MixSpec(crop_seconds=1.0), 8, seed=2)
    assert set(evaluate_separator(model, crops)) >= {"extract_sisdr", "remove_nothing_sisdr"}

    from instructme.editing.pipeline import build_tiny_pipeline

    pipe = build_tiny_pipeline(tmp_path / "pipe")
    report = tmp_path / "sep.json"
    assert main(["eval", "separate", "--model", str(out), "--data", str(data), "--items", "4",
                 "--seconds", "1", "--musdb", "--pipeline", str(pipe), "--generated", "1",
                 "--steps", "1", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "MUSDB18" in printed and "ideal ratio mask" in printed
    saved = json.loads(report.read_text())
    assert set(saved) == {"data", "musdb"}
    assert saved["data"]["rows"]["generated path [first 1]"]["count"] == 1
    assert 0.0 <= saved["data"]["presence"]["silenced"] <= 1.0 and "presence test" in printed
    assert set(saved["musdb"]["per_class"]) <= {"drums", "bass", "vocals"}
    assert main(["eval", "separate", "--model", str(out)]) == 2  # no --data, no --musdb
    assert main(["eval", "separate", "--model", str(tmp_path / "none"), "--data", str(data)]
                ) == 2
    assert main(["train", "separator", "--data", str(tmp_path / "nodata"), "--out",
                 str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("error:") for line in err)
