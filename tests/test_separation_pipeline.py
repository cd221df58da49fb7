"""Remove / extract / split through the pipeline's separator: one forward pass, masks applied
at the user's rate on every channel, answers that sum to the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructme.checkpoint import save_model
from instructme.editing.pipeline import EditPipeline, build_tiny_pipeline
from instructme.errors import CheckpointError
from instructme.models.separator import Separator, SeparatorConfig


def _separator(**kw) -> Separator:
    torch.manual_seed(0)
    sep = Separator(SeparatorConfig.preset("tiny", **kw))
    with torch.no_grad():  # an untrained mask is ~0.5 everywhere: make it depend on the input
        for p in sep.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return sep


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> EditPipeline:
    root = build_tiny_pipeline(tmp_path_factory.mktemp("pipe") / "p")
    save_model(_separator(), root / "separator")
    return EditPipeline.from_pretrained(root)


def _stereo(sr: int = 44_100, seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(sr * seconds)) / sr
    left = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(len(t))
    right = 0.2 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))
    return np.stack([left, right]).astype(np.float32)


def test_remove_and_extract_sum_to_the_input(pipe: EditPipeline) -> None:
    x = _stereo()
    removed = pipe(x, 44_100, "remove the bass")
    extracted = pipe(x, 44_100, "extract the bass")
    assert removed.audio.shape == x.shape and removed.sample_rate == 44_100
    assert "separate" in removed.timings and "sample" not in removed.timings
    np.testing.assert_allclose(removed.audio + extracted.audio, x, atol=1e-5)
    np.testing.assert_allclose(removed.part, extracted.audio, atol=1e-6)
    assert not np.allclose(removed.audio, x, atol=1e-3)  # it did take something out
    # the mask is applied per channel: the right channel keeps its own content
    assert abs(np.corrcoef(removed.audio[1], x[1])[0, 1]) > 0.5


def test_split_stems_sum_to_the_input(pipe: EditPipeline) -> None:
    x = _stereo(sr=22_050).T  # [N, C] layout comes back as [N, C]
    stems = pipe.split(x, 22_050)
    assert "other" in stems and set(stems) <= set(pipe.separator.config.instruments) | {"other"}
    assert all(s.shape == x.shape for s in stems.values())
    np.testing.assert_allclose(sum(stems.values()), x, atol=1e-5)
    only = pipe.split(x, 22_050, ["bass"])
    assert set(only) <= {"bass", "other"}


def test_without_a_separator_the_generated_path_answers(pipe: EditPipeline, tmp_path) -> None:
    plain = EditPipeline.from_pretrained(build_tiny_pipeline(tmp_path / "plain"))
    res = plain(_stereo(), 44_100, "remove the bass", steps=2)
    assert "sample" in res.timings and "separate" not in res.timings
    with pytest.raises(CheckpointError, match="separator"):
        plain.split(_stereo(), 44_100)


def test_a_separator_at_another_rate_is_refused(tmp_path) -> None:
    root = build_tiny_pipeline(tmp_path / "p")
    save_model(_separator(sample_rate=22_050), root / "separator")
    with pytest.raises(CheckpointError, match="Hz"):
        EditPipeline.from_pretrained(root)


def test_cli_split_writes_stems_that_sum_to_the_input(pipe: EditPipeline, tmp_path,
                                                      capsys) -> None:
    import soundfile as sf

    from instructme.cli import main

    root = build_tiny_pipeline(tmp_path / "p")
    save_model(_separator(), root / "separator")
    src = tmp_path / "in.wav"
    x = _stereo(sr=32_000)
    sf.write(src, x.T, 32_000, subtype="FLOAT")
    out = tmp_path / "stems"
    assert main(["split", str(src), "--out", str(out), "--model", str(root),
                 "--instruments", "bass,keys"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert "other.wav" in files and set(files) <= {"bass.wav", "piano.wav", "other.wav"}
    total = sum(sf.read(out / f, dtype="float32")[0] for f in files)
    np.testing.assert_allclose(total.T, x, atol=1e-5)
    assert sf.info(str(out / "other.wav")).samplerate == 32_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".stems")]
    capsys.readouterr()
    assert main(["split", str(src), "--out", str(out), "--model", str(root)]) == 2  # not empty
    assert main(["split", str(src), "--out", str(tmp_path / "o2"), "--model", str(root),
                 "--instruments", "kazoo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err)
    assert not (tmp_path / "o2").exists()


def test_cli_pipeline_takes_a_separator_and_edit_can_skip_it(tmp_path, capsys) -> None:
    import soundfile as sf

    from instructme.checkpoint import load_model
    from instructme.cli import main
    from instructme.models.chord import ChordRecognizer
    from instructme.models.unet import EditorUNet
    from instructme.models.vae import AudioVAE

    tiny_root = build_tiny_pipeline(tmp_path / "parts")
    save_model(_separator(), tmp_path / "sep")
    out = tmp_path / "pipe"
    assert main(["pipeline", "--vae", str(tiny_root / "vae"), "--chord",
                 str(tiny_root / "chord"), "--editor", str(tiny_root / "editor"),
                 "--separator", str(tmp_path / "sep"), "-o", str(out)]) == 0
    assert EditPipeline.from_pretrained(out).separator is not None
    for cls, name in ((AudioVAE, "vae"), (ChordRecognizer, "chord"), (EditorUNet, "editor")):
        load_model(cls, out / name)
    src = tmp_path / "in.wav"
    sf.write(src, _stereo(sr=16_000).T, 16_000)
    capsys.readouterr()
    for extra in ([], ["--no-separator", "--steps", "1"]):
        dst = tmp_path / f"out{len(extra)}.wav"
        assert main(["edit", str(src), "remove the bass", "-o", str(dst), "--model", str(out),
                     "--quiet", *extra]) == 0
    a, b = (sf.read(tmp_path / f"out{n}.wav")[0] for n in (0, 3))
    assert not np.allclose(a, b, atol=1e-3)  # the two paths give different answers


def test_replace_removes_the_old_instrument_with_the_separator(pipe: EditPipeline) -> None:
    x = _stereo()
    replaced = pipe(x, 44_100, "replace the bass with strings", steps=2)
    removed = pipe(x, 44_100, "remove the bass")
    assert {"separate", "sample"} <= set(replaced.timings)
    assert replaced.part is not None and np.abs(replaced.part).max() > 0  # the new strings
    # what stays of the source is exactly the separator's removal
    np.testing.assert_allclose(replaced.audio - replaced.part, removed.audio, atol=1e-5)


def _deaf_pipeline(root) -> EditPipeline:
    """A pipeline whose separator hears nothing (every mask ~ 0)."""
    sep = _separator()
    with torch.no_grad():
        for head in sep.heads:
            head[-1].bias.fill_(-30.0)
    save_model(sep, root / "separator")
    return EditPipeline.from_pretrained(root)


def test_an_absent_instrument_gives_a_silent_part_and_a_notice(tmp_path, capsys) -> None:
    import soundfile as sf

    from instructme.cli import main

    root = build_tiny_pipeline(tmp_path / "p")
    deaf = _deaf_pipeline(root)
    x = _stereo()
    extracted = deaf(x, 44_100, "extract the bass")
    removed = deaf(x, 44_100, "remove the bass")
    assert not extracted.audio.any() and not removed.part.any()
    np.testing.assert_array_equal(removed.audio, x)
    assert extracted.notes == ["no bass heard in the input: its part is silent"]
    chain = deaf.edit_chain(x, 44_100, ["remove the bass", "remove the drums"])
    assert [n.split()[1] for r in chain for n in r.notes] == ["bass", "drums"]
    assert set(deaf.split(x, 44_100)) == {"other"}
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, x.T, 44_100)
    capsys.readouterr()
    assert main(["edit", str(src), "remove the drums", "-o", str(dst), "--model", str(root),
                 "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == ("note: no drums heard in the input: its "
                                               "part is silent")
    assert dst.exists()


def test_progress_counts_only_the_rounds_that_sample(pipe: EditPipeline, tmp_path,
                                                     capsys) -> None:
    """A separated remove/extract runs no sampler: no steps counted, no empty bar."""
    import soundfile as sf

    from instructme.cli import main

    calls: list[tuple[int, int]] = []
    pipe.edit_chain(_stereo(), 44_100, ["remove the bass", "add strings"], steps=2,
                    progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 2), (2, 2)]
    calls.clear()
    pipe(_stereo(), 44_100, "extract the bass", steps=2, progress=lambda i, n:
         calls.append((i, n)))
    assert calls == []
    root = build_tiny_pipeline(tmp_path / "p")
    save_model(_separator(), root / "separator")
    src = tmp_path / "in.wav"
    sf.write(src, _stereo().T, 44_100)
    capsys.readouterr()
    assert main(["edit", str(src), "remove the bass", "-o", str(tmp_path / "o.wav"),
                 "--model", str(root)]) == 0
    assert "0/" not in capsys.readouterr().err
