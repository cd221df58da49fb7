"""Timbre-diverse data: soundfonts drawn per stem, seeded pedalboard processing and mix-bus
limiting with every target exact, held-out soundfonts refused for training data, and the
unseen-timbre evaluation renders (``data render-eval``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instructme.cli import main
from instructme.config import DataConfig
from instructme.dataset.build import build_dataset
from instructme.dataset.effects import draw_chain, limiter_gain, process_stem
from instructme.dataset.render import active_rms
from instructme.dataset.render_eval import render_eval_set
from instructme.dataset.soundfonts import HELD_OUT_SOUNDFONTS, TRAINING_SOUNDFONTS
from instructme.errors import InstructMEError

SR = 16_000
FONTS = ("fluidr3", "musescore", "csound")


@pytest.fixture(scope="module")
def diverse(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diverse") / "data"
    cfg = DataConfig.preset("tiny", soundfonts=FONTS, stem_fx=True, gain_jitter_db=6.0,
                            limiter_prob=0.5)
    build_dataset(out, preset="tiny", workers=2, seed=0, quiet=True, config=cfg)
    return out


def _songs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("songs/*/song.json"))]


def test_stems_draw_soundfonts_and_chains(diverse: Path) -> None:
    songs = _songs(diverse)
    stems = [s for d in songs for s in d["stems"].values()]
    assert {s["soundfont"] for s in stems} == set(FONTS)
    assert all(s["fx"] and s["fx"][1]["kind"] in ("lowshelf", "peak") or
               s["fx"][0]["kind"] == "lowshelf" for s in stems)
    assert any("mix_limiter" in d for d in songs) and not all("mix_limiter" in d for d in songs)
    for d in songs:  # stored stems are the processed ones: their sum peaks where built
        mix = sum(sf.read(str(diverse / s["path"]), dtype="float64")[0]
                  for s in d["stems"].values() if not s["variant_of"])
        assert 0.3 < np.abs(mix).max() <= 10 ** (-3 / 20) + 1e-3


def test_training_builds_refuse_held_out_soundfonts(tmp_path: Path) -> None:
    assert set(HELD_OUT_SOUNDFONTS) == {"timgm6mb", "opl3"}
    assert not set(HELD_OUT_SOUNDFONTS) & set(TRAINING_SOUNDFONTS)
    assert set(DataConfig.preset("diverse").soundfonts) == set(TRAINING_SOUNDFONTS)
    for fonts in (("fluidr3", "timgm6mb"), ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",)):
        with pytest.raises(InstructMEError, match="held out"):
            build_dataset(tmp_path / "x", preset="tiny", quiet=True,
                          config=DataConfig.preset("tiny", soundfonts=fonts))
    assert not (tmp_path / "x").exists()


def test_chains_are_seeded_and_keep_length_and_silence() -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * np.sin(2 * np.pi * 110 * np.arange(SR) / SR)).astype(np.float32)
    chain = draw_chain("guitar", np.random.default_rng(3))
    assert chain == draw_chain("guitar", np.random.default_rng(3))
    y = process_stem(x, SR, chain)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert np.array_equal(y, process_stem(x, SR, chain))
    assert not np.allclose(y / active_rms(y, SR), x / active_rms(x, SR), atol=1e-3)
    assert not process_stem(np.zeros(SR, np.float32), SR, chain).any()
    assert all(c["kind"] != "distortion" for c in draw_chain("piano", rng) for _ in range(20))


def test_limiter_gain_only_reduces_loud_passages() -> None:
    t = np.arange(2 * SR) / SR
    x = (0.05 * np.sin(2 * np.pi * 220 * t) * (1 + 3 * (t > 1))).astype(np.float32)
    g = limiter_gain(x, SR, depth_db=6.0, release_ms=100.0)
    assert g.shape == x.shape and (g > 0).all() and (g <= 1).all()
    assert g[SR // 2] == pytest.approx(1.0, abs=1e-3)
    assert g[3 * SR // 2] < 0.7


def test_render_eval_rerenders_a_split_with_an_unseen_soundfont(diverse: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "unseen"
    info = render_eval_set(diverse, out, "timgm6mb", quiet=True, workers=2)
    assert info["render_eval"]["soundfont"] == "timgm6mb" and info["songs"] >= 1
    assert (out / "manifests" / "test.jsonl").read_bytes() == (
        diverse / "manifests" / "test.jsonl").read_bytes()
    for d in _songs(out):
        for name, s in d["stems"].items():
            assert s["soundfont"] == "timgm6mb" and "fx" not in s
            new = sf.read(str(out / s["path"]), dtype="float64")[0]
            old = sf.read(str(diverse / s["path"]), dtype="float64")[0]
            assert new.shape == old.shape and not np.allclose(new, old, atol=1e-3), name
            assert active_rms(new, SR) == pytest.approx(active_rms(old, SR), rel=0.02)
    assert render_eval_set(diverse, out, "timgm6mb", quiet=True) == info  # resumes: done


def test_cli_errors_are_one_line(diverse: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "render-eval", str(diverse), "--soundfont", "nosuch", "--out",
                 str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "known names" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    assert main(["data", "render-eval", str(diverse), "--soundfont", "timgm6mb", "--out",
                 str(tmp_path / "busy")]) == 2
