"""EditPipeline: folders, formats kept, determinism, multi-round, conditioning, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instructme.audio import SAFE_PEAK
from instructme.editing.folder import write_pipeline_folder
from instructme.editing.pipeline import EditPipeline, EditResult, build_tiny_pipeline, plan_rounds
from instructme.errors import AudioError, CheckpointError, InstructionError, InstructMEError

STEPS = 3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("pipe") / "tiny", seed=0)


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return EditPipeline.from_pretrained(tiny_dir, device="cpu")


def tones(seconds: float, sr: int, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    """Two-tone test music ``[C, N]`` (``[N]`` for one channel)."""
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([amp * np.sin(2 * np.pi * (220 + 110 * c) * t) * (1 + 0.5 * np.sin(3 * t))
                  for c in range(channels)]).astype(np.float32)
    return x[0] if channels == 1 else x


def test_tiny_folder_layout_and_round_trip(tiny_dir, pipe, tmp_path):
    assert {p.name for p in tiny_dir.iterdir()} == {"vae", "chord", "editor", "pipeline.json"}
    meta = json.loads((tiny_dir / "pipeline.json").read_text())
    assert meta["text_encoder"]["kind"] == "hash" and meta["sample_rate"] == 16_000
    assert meta["defaults"] == {"steps": 50, "guidance": 3.0, "sampler": "dpm",
                                "preserve": True}
    again = EditPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "copy"), device="cpu")
    for a, b in zip(pipe.editor.state_dict().values(), again.editor.state_dict().values()):
        assert torch.equal(a, b)
    x = tones(1.0, 16_000)
    assert np.array_equal(pipe(x, 16_000, "add a piano", steps=2).audio,
                          again(x, 16_000, "add a piano", steps=2).audio)


@pytest.mark.parametrize("preserve", [True, False])
@pytest.mark.parametrize("layout", ["cn", "nc", "mono"])
def test_output_keeps_rate_length_channels_layout(pipe, layout, preserve):
    sr = 44_100
    x = tones(1.3, sr, channels=1 if layout == "mono" else 2)
    x = x.T.copy() if layout == "nc" else x
    r = pipe(x, sr, "remove the drums", steps=STEPS, preserve=preserve)
    assert isinstance(r, EditResult)
    assert r.audio.shape == x.shape and r.audio.dtype == np.float32 and r.sample_rate == sr
    assert np.isfinite(r.audio).all() and 0 < np.abs(r.audio).max() <= SAFE_PEAK + 1e-6
    assert (r.task, r.args) == ("remove", {"instrument": "drums"})
    assert r.seconds > 0 and {"encode", "chords", "sample", "decode"} <= set(r.timings)
    assert (r.part is not None) == preserve
    if preserve:  # the removed part and the output add up to the input
        assert r.part.shape == x.shape and r.part.dtype == np.float32
        np.testing.assert_allclose(r.audio + r.part, x, atol=1e-4)
    if layout != "mono":
        ch, src = (r.audio, x) if layout == "cn" else (r.audio.T, x.T)
        if preserve:  # each channel keeps its own content (here: its own tone)
            for c in range(2):
                corr = [np.corrcoef(ch[c], s)[0, 1] for s in src]
                assert corr[c] > 0.5 and corr[c] > corr[1 - c] + 0.3
        else:  # the mono downmix's edit on every channel
            assert np.array_equal(ch[0], ch[1])


def test_integer_pcm_and_8_khz_input(pipe):
    x = (tones(1.0, 8_000) * 32767).astype(np.int16)
    r = pipe(x, 8_000, "extract the bass", steps=STEPS)
    assert r.audio.shape == x.shape and r.audio.dtype == np.float32 and r.sample_rate == 8_000


def test_seed_reproducibility_and_samplers(pipe):
    x = tones(1.0, 22_050, channels=2)
    a = pipe(x, 22_050, "add a piano", steps=STEPS, seed=7)
    b = pipe(x, 22_050, "add a piano", steps=STEPS, seed=7)
    c = pipe(x, 22_050, "add a piano", steps=STEPS, seed=8)
    assert np.array_equal(a.audio, b.audio)
    assert not np.allclose(a.audio, c.audio, atol=1e-4)
    d = pipe(x, 22_050, "add a piano", steps=STEPS, seed=7, sampler="ddim")
    assert d.audio.shape == x.shape and not np.array_equal(a.audio, d.audio)
    # the instruction and the guidance scale both change the result
    e = pipe(x, 22_050, "remove the piano", steps=STEPS, seed=7)
    f = pipe(x, 22_050, "add a piano", steps=STEPS, seed=7, guidance=1.0)
    assert not np.allclose(a.audio, e.audio, atol=1e-5)
    assert not np.allclose(a.audio, f.audio, atol=1e-5)


def test_sequential_guidance_matches_batched(pipe, monkeypatch):
    """Long inputs on CPU run the two guidance passes one after the other: same result."""
    import instructme.editing.guidance as guidance

    x = tones(1.0, 16_000)
    batched = pipe(x, 16_000, "add a piano", steps=STEPS, seed=2).audio
    monkeypatch.setattr(guidance, "SPLIT_GUIDANCE_FRAMES", 1)
    calls = []
    forward = pipe.editor.forward
    monkeypatch.setattr(pipe.editor, "forward", lambda *a: calls.append(a[0].shape[0])
                        or forward(*a))
    sequential = pipe(x, 16_000, "add a piano", steps=STEPS, seed=2).audio
    assert set(calls) == {1}
    np.testing.assert_allclose(sequential, batched, atol=1e-4 * np.abs(batched).max())


def test_progress_callback_counts_every_step(pipe):
    calls: list[tuple[int, int]] = []
    pipe(tones(1.0, 16_000), 16_000, "add strings", steps=4, progress=lambda i, n:
         calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls.clear()
    pipe.edit_chain(tones(1.0, 16_000), 16_000, ["add strings", "remove the bass"], steps=2,
                    progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_edit_chain_rounds_and_chained_text(pipe):
    sr = 32_000
    x = tones(1.2, sr, channels=2)
    results = pipe.edit_chain(x, sr, ["add a piano", "remove the drums then extract the bass"],
                              steps=STEPS, seed=3)
    assert [r.task for r in results] == ["add", "remove", "extract"]
    assert [r.instruction for r in results] == ["add a piano", "remove the drums",
                                                "extract the bass"]
    assert all(r.audio.shape == x.shape for r in results)
    # round 1 is the single edit with the same seed; later rounds edit the previous output
    single = pipe(x, sr, "add a piano", steps=STEPS, seed=3)
    assert np.array_equal(results[0].audio, single.audio)
    assert not np.allclose(results[1].audio, results[0].audio, atol=1e-5)
    # round 2 (source-preserving remove) splits exactly what the user got from round 1
    np.testing.assert_allclose(results[1].audio + results[1].part, results[0].audio, atol=1e-4)
    chained = pipe(x, sr, "add a piano then remove the drums then extract the bass",
                   steps=STEPS, seed=3)
    assert chained.task == "multiround" and len(chained.args["rounds"]) == 3
    assert np.array_equal(chained.audio, results[-1].audio)


def test_plan_rounds_splits_and_validates():
    rounds = plan_rounds(["add a piano and remove the drums", "remix this as jazz"])
    assert [(r.task, r.text) for r in rounds] == [("add", "add a piano"),
                                                  ("remove", "remove the drums"),
                                                  ("remix", "remix this as jazz")]
    for bad in ("", "   ", "make it better", "add a kazoo"):
        with pytest.raises(InstructionError, match="add|known"):
            plan_rounds(bad)
    with pytest.raises(InstructionError, match="known instruments"):
        plan_rounds(["add a piano", "add a kazoo"])


def test_bad_audio_and_settings_are_one_line_errors(pipe):
    x = tones(1.0, 16_000)
    nan = x.copy()
    nan[100] = np.nan
    cases = [
        (nan, 16_000, "NaN"),
        (np.zeros(16_000, np.float32), 16_000, "silent"),
        (np.full(16_000, 1e-6, np.float32), 16_000, "silent"),
        (x[:1000], 16_000, "too short"),
        (np.zeros(0, np.float32), 16_000, "empty"),
        (np.stack([x] * 9), 16_000, "channels"),
        (x, 100, "absurd sample rate"),
        (x, 10_000_000, "absurd sample rate"),
        (x.astype(str), 16_000, "numeric"),
        (np.zeros((2, 3, 4), np.float32), 16_000, "shape"),
    ]
    for audio, sr, msg in cases:
        with pytest.raises(AudioError, match=msg) as e:
            pipe(audio, sr, "add a piano", steps=1)
        assert "\n" not in str(e.value)
    for kw, msg in [(dict(steps=0), "steps"), (dict(guidance=float("nan")), "guidance"),
                    (dict(sampler="euler"), "sampler"), (dict(seed=1.5), "seed")]:
        with pytest.raises(InstructMEError, match=msg):
            pipe(x, 16_000, "add a piano", **kw)
    with pytest.raises(InstructionError):
        pipe(x, 16_000, "sing along")


def test_level_follows_input(pipe):
    """The input is edited at the training level and the output scaled back: a 20 dB
    quieter input gives a 20 dB quieter output (same seed)."""
    x = tones(1.0, 16_000, amp=0.5)
    loud = pipe(x, 16_000, "add a piano", steps=STEPS).audio
    quiet = pipe(x * 0.1, 16_000, "add a piano", steps=STEPS).audio
    assert np.abs(loud).max() < SAFE_PEAK  # not limited, so the scale is exact
    ratio = np.sqrt(np.mean(quiet**2) / np.mean(loud**2))
    assert ratio == pytest.approx(0.1, rel=0.01)
    np.testing.assert_allclose(quiet, loud * 0.1, atol=0.02 * np.abs(loud * 0.1).max())


def test_editor_sees_training_style_conditioning(pipe, monkeypatch):
    """z_src, chords and text reach the U-Net as the latent cache prepares them: VAE means
    and chord probabilities of the -3 dBFS-peak source, float16-rounded; the guidance batch
    pairs the instruction with the fully masked (null) one."""
    seen = {}
    forward = pipe.editor.forward

    def spy(z_t, t, z_src, text, text_mask, chords=None):
        seen.update(z_src=z_src, text=text, mask=text_mask, chords=chords)
        return forward(z_t, t, z_src, text, text_mask, chords)

    monkeypatch.setattr(pipe.editor, "forward", spy)
    x = tones(1.0, 16_000, amp=0.2)
    pipe(x, 16_000, "replace the guitar with strings", steps=1)
    src = torch.from_numpy(x * np.float32(10 ** (-3 / 20) / np.abs(x).max()))[None]
    with torch.no_grad():
        z = pipe.vae.encode_latents(src).half().float()
        p = pipe.chord.predict_proba(src).half().float()
    tok, _ = pipe.text_encoder.encode(["replace the guitar with strings"])
    assert seen["z_src"].shape[0] == 2  # conditional + unconditional
    torch.testing.assert_close(seen["z_src"][:1], z, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(seen["chords"][:1], p, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(seen["text"][:1], tok.half().float())
    assert seen["mask"][0].all() and not seen["mask"][1].any()


def test_folder_errors(tiny_dir, tmp_path):
    from instructme.checkpoint import load_model, save_model
    from instructme.models.chord import ChordRecognizer
    from instructme.models.unet import EditorConfig, EditorUNet
    from instructme.models.vae import AudioVAE, VAEConfig

    with pytest.raises(CheckpointError, match="not found"):
        EditPipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no pipeline.json"):
        EditPipeline.from_pretrained(tmp_path / "empty")
    meta = json.loads((tiny_dir / "pipeline.json").read_text())
    vae = load_model(AudioVAE, tiny_dir / "vae")
    chord = load_model(ChordRecognizer, tiny_dir / "chord")
    editor = load_model(EditorUNet, tiny_dir / "editor")

    bad = write_pipeline_folder(tmp_path / "v2", vae, chord, editor, meta["text_encoder"])
    (bad / "pipeline.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(CheckpointError, match="version 99"):
        EditPipeline.from_pretrained(bad)
    (bad / "pipeline.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        EditPipeline.from_pretrained(bad)

    other = write_pipeline_folder(tmp_path / "mismatch", vae, chord, editor, meta["text_encoder"])
    save_model(AudioVAE(VAEConfig.preset("tiny", latent_channels=4)), other / "vae")
    with pytest.raises(CheckpointError, match="latent channels"):
        EditPipeline.from_pretrained(other)
    with pytest.raises(CheckpointError, match="text encoder"):
        write_pipeline_folder(tmp_path / "t", vae, chord, editor, {"kind": "minilm"})
    with pytest.raises(CheckpointError, match="no chord model"):
        write_pipeline_folder(tmp_path / "c", vae, None, editor, meta["text_encoder"])
    nochord = write_pipeline_folder(tmp_path / "c", vae, chord, editor, meta["text_encoder"])
    import shutil

    shutil.rmtree(nochord / "chord")
    with pytest.raises(CheckpointError, match="no chord/"):
        EditPipeline.from_pretrained(nochord)
    # an editor without chord conditioning needs no chord model
    plain = EditorUNet(EditorConfig.variant("tiny", "no-chord"))
    d = write_pipeline_folder(tmp_path / "plain", vae, None, plain, meta["text_encoder"])
    r = EditPipeline.from_pretrained(d, device="cpu")(tones(1.0, 16_000), 16_000,
                                                      "remove the bass", steps=2)
    assert r.audio.shape == (16_000,) and "chords" not in r.timings


def test_import_is_light_and_exports_api():
    import subprocess
    import sys

    code = ("import sys, instructme; assert 'torch' not in sys.modules; "
            "from instructme import EditPipeline, EditResult, edit; print(EditPipeline.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "EditPipeline"


def test_which_tasks_keep_the_source(pipe):
    """add/remove/replace keep the source; extract and remix return the generated mix
    (an extract's part is its output; a remix has none)."""
    x = tones(1.0, 22_050, channels=2)
    for text, kept in [("add a piano", True), ("remove the drums", True),
                       ("replace the piano with strings", True), ("extract the bass", False),
                       ("remix this as jazz", False)]:
        r = pipe(x, 22_050, text, steps=STEPS, seed=3)
        g = pipe(x, 22_050, text, steps=STEPS, seed=3, preserve=False)
        assert g.part is None
        assert np.array_equal(r.audio, g.audio) != kept, text
        if r.task == "remix":
            assert r.part is None
        elif r.task == "extract":
            assert np.array_equal(r.part, r.audio)
        else:
            assert r.part is not None and r.part.shape == x.shape
    with pytest.raises(InstructMEError, match="preserve must be"):
        pipe(x, 22_050, "add a piano", steps=STEPS, preserve="yes")
