"""A pipeline whose editor generates parts: add = source + part, replace = (source -
separated old instrument) + part, remix = the generated mix; seeded; clear errors without a
separator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_separation_pipeline import _separator, _stereo

from instructme.audio import peak_safe
from instructme.checkpoint import load_model
from instructme.editing.pipeline import EditPipeline, build_tiny_pipeline
from instructme.errors import CheckpointError
from instructme.models.chord import ChordRecognizer
from instructme.models.text import TextEncoderConfig
from instructme.models.unet import EditorConfig, EditorUNet
from instructme.models.vae import AudioVAE

SR = 44_100


def _part_pipeline(root, separator: bool) -> EditPipeline:
    folder = build_tiny_pipeline(root)
    torch.manual_seed(1)
    editor = EditorUNet(EditorConfig.preset("tiny", target="part"))
    with torch.no_grad():  # as build_tiny_pipeline does: an output that depends on the input
        for p in editor.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.05)
    text = TextEncoderConfig(kind="hash", dim=editor.config.text_dim)
    return EditPipeline(load_model(AudioVAE, folder / "vae"),
                        load_model(ChordRecognizer, folder / "chord"), editor, text,
                        separator=_separator() if separator else None)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> EditPipeline:
    return _part_pipeline(tmp_path_factory.mktemp("parts") / "p", separator=True)


def test_add_mixes_the_generated_part_into_the_untouched_source(pipe):
    x = 0.3 * _stereo(SR)
    r = pipe(x, SR, "add a piano", seed=3, steps=4)
    assert r.audio.shape == x.shape and r.part is not None and r.part.shape == x.shape
    assert np.abs(r.part).max() > 1e-4 and "sample" in r.timings
    np.testing.assert_allclose(r.audio, peak_safe(x + r.part), atol=1e-5)
    again = pipe(x, SR, "add a piano", seed=3, steps=4)
    np.testing.assert_array_equal(again.audio, r.audio)  # deterministic for a seed
    other = pipe(x, SR, "add a piano", seed=4, steps=4)
    assert not np.allclose(other.part, r.part)


def test_replace_adds_the_part_to_the_source_without_the_old_instrument(pipe):
    x = 0.3 * _stereo(SR)
    removed = pipe(x, SR, "remove the bass")
    r = pipe(x, SR, "replace the bass with strings", seed=0, steps=4)
    assert "separate" in r.timings and "sample" in r.timings
    np.testing.assert_allclose(r.audio, peak_safe(removed.audio + r.part), atol=1e-5)


def test_remix_returns_the_generated_mix(pipe):
    x = 0.3 * _stereo(SR)
    r = pipe(x, SR, "remix this as jazz", seed=0, steps=4)
    assert r.audio.shape == x.shape and r.part is None and np.isfinite(r.audio).all()


def test_part_editor_without_a_separator_refuses_what_needs_one(tmp_path):
    pipe = _part_pipeline(tmp_path / "p", separator=False)
    x = 0.3 * _stereo(SR, seconds=1.0)
    assert pipe(x, SR, "add a piano", steps=2).audio.shape == x.shape
    for instruction in ("replace the bass with strings", "remove the bass"):
        with pytest.raises(CheckpointError, match="separator"):
            pipe(x, SR, instruction, steps=2)
