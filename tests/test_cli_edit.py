"""``instructme edit`` / ``instructme pipeline`` end to end (tiny untrained pipeline)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructme import cli
from instructme.editing.pipeline import EditPipeline, build_tiny_pipeline, edit

STEPS = ["--steps", "3"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny"))


def write_tones(path: Path, seconds: float = 1.5, sr: int = 44_100, channels: int = 2,
                amp: float = 0.3) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([amp * np.sin(2 * np.pi * (220 + 55 * c) * t) for c in range(channels)], 1)
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")
    return path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_edit_keeps_rate_length_channels(model, tmp_path, capsys):
    src = write_tones(tmp_path / "song.wav")
    out = tmp_path / "out.flac"
    code, stdout, _ = run(["edit", str(src), "add a piano", "-o", str(out), "--model", model,
                           *STEPS, "--seed", "5"], capsys)
    assert code == 0
    info, ref = sf.info(str(out)), sf.info(str(src))
    assert (info.samplerate, info.channels, info.frames) == (44_100, 2, ref.frames)
    assert "real-time factor" in stdout and "1 edit(s)" in stdout
    y, _ = sf.read(out)
    assert 0 < np.abs(y).max() <= 0.9
    # the Python convenience gives the same edit
    r = edit(src, "add a piano", tmp_path / "py.flac", model=model, steps=3, seed=5)
    assert r.audio.shape == (2, ref.frames)
    np.testing.assert_array_equal(sf.read(tmp_path / "py.flac")[0], y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac", "py.flac", "song.wav"]


def test_seed_changes_output_and_quiet(model, tmp_path, capsys):
    src = write_tones(tmp_path / "song.wav", channels=1, sr=16_000)
    outs = []
    for seed in ("1", "1", "2"):
        out = tmp_path / f"o{len(outs)}.wav"
        code, stdout, stderr = run(["edit", str(src), "remove the drums", "-o", str(out),
                                    "--model", model, *STEPS, "--seed", seed, "--quiet",
                                    "--sampler", "ddim", "--threads", "1"], capsys)
        assert code == 0 and stdout == "" and stderr == ""
        outs.append(sf.read(out)[0])
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_multi_round_then_and_intermediates(model, tmp_path, capsys):
    src = write_tones(tmp_path / "song.wav", sr=22_050)
    out = tmp_path / "out.wav"
    code, stdout, _ = run(["edit", str(src), "add a piano", "--then", "remove the drums",
                           "--then", "extract the bass", "-o", str(out), "--model", model,
                           *STEPS, "--keep-intermediate"], capsys)
    assert code == 0 and "3 edit(s)" in stdout
    r1, r2 = tmp_path / "out.round1.wav", tmp_path / "out.round2.wav"
    assert r1.is_file() and r2.is_file() and not (tmp_path / "out.round3.wav").exists()
    for p in (r1, r2, out):
        assert sf.info(str(p)).frames == sf.info(str(src)).frames
    # round 1 is exactly the single edit; later rounds differ from it
    single = tmp_path / "single.wav"
    assert run(["edit", str(src), "add a piano", "-o", str(single), "--model", model, *STEPS,
                "--quiet"], capsys)[0] == 0
    assert np.array_equal(sf.read(r1)[0], sf.read(single)[0])
    assert not np.array_equal(sf.read(r2)[0], sf.read(r1)[0])


def test_spectrogram_png_has_a_panel_per_round(model, tmp_path, capsys):
    from PIL import Image

    src = write_tones(tmp_path / "song.wav", sr=16_000)
    out, png = tmp_path / "out.wav", tmp_path / "plots" / "before_after.png"
    code, _, _ = run(["edit", str(src), "remove the drums", "-o", str(out), "--model", model,
                      *STEPS, "--quiet", "--spectrogram", str(png)], capsys)
    assert code == 0
    one = Image.open(png).size
    code, _, _ = run(["edit", str(src), "remove the drums", "--then", "add a piano", "-o",
                      str(out), "--model", model, *STEPS, "--quiet", "--spectrogram",
                      str(png)], capsys)
    two = Image.open(png).size
    assert code == 0 and one[0] == two[0] and two[1] > one[1] * 1.3  # 3 panels vs 2
    assert sorted(p.name for p in png.parent.iterdir()) == ["before_after.png"]
    code, _, err = run(["edit", str(src), "remove the drums", "-o", str(out), "--model", model,
                        "--spectrogram", str(tmp_path / "x.jpg")], capsys)
    assert code == 2 and "must be a .png" in err
    before = src.read_bytes()
    code, _, err = run(["edit", str(src), "remove the drums", "-o", str(out), "--model", model,
                        "--spectrogram", str(out)], capsys)
    assert code == 2 and "must be a .png" in err and src.read_bytes() == before


def test_long_input_in_one_pass(model, tmp_path, capsys):
    src = write_tones(tmp_path / "long.wav", seconds=60.0, sr=16_000, channels=1)
    out = tmp_path / "out.wav"
    code, _, _ = run(["edit", str(src), "replace the guitar with strings", "-o", str(out),
                      "--model", model, "--steps", "2", "--quiet"], capsys)
    assert code == 0 and sf.info(str(out)).frames == 60 * 16_000
    y = sf.read(out)[0]
    # no hard cuts: the output is not silent anywhere in the song
    rms = np.sqrt(np.mean(y.reshape(60, -1) ** 2, axis=1))
    assert rms.min() > 0


def bad_inputs(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (input file, expected message fragment)."""
    (d / "notaudio.wav").write_text("hello, I am text")
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), 16_000)
    nan = np.full(16_000, 0.1, np.float32)
    nan[5] = np.nan
    sf.write(d / "nan.wav", nan, 16_000, subtype="FLOAT")
    sf.write(d / "nine.wav", np.full((16_000, 9), 0.1, np.float32), 16_000)
    sf.write(d / "rate.wav", np.full(1_000, 0.1, np.float32), 500)
    sf.write(d / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    (d / "folder.wav").mkdir()
    return {"missing": (d / "missing.wav", "not found"),
            "not audio": (d / "notaudio.wav", "not a readable audio file"),
            "empty": (d / "empty.wav", "empty"), "nan": (d / "nan.wav", "NaN"),
            "channels": (d / "nine.wav", "9 channels"),
            "rate": (d / "rate.wav", "absurd sample rate"),
            "silent": (d / "silent.wav", "silent"), "folder": (d / "folder.wav", "folder")}


def test_bad_inputs_are_one_line_errors(model, tmp_path, capsys):
    out = tmp_path / "out.wav"
    for name, (path, msg) in bad_inputs(tmp_path).items():
        code, stdout, stderr = run(["edit", str(path), "add a piano", "-o", str(out),
                                    "--model", model, *STEPS], capsys)
        assert code == 2, name
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, (name, stderr)
        assert msg in stderr, (name, stderr)
    good = write_tones(tmp_path / "good.wav")
    for instruction, msg in [("", "empty instruction"), ("   ", "empty instruction"),
                             ("add a kazoo", "known instruments"),
                             ("do something nice", "add X"),
                             ("remix this as polka", "known styles")]:
        code, _, stderr = run(["edit", str(good), instruction, "-o", str(out), "--model", model],
                              capsys)
        assert code == 2 and msg in stderr and stderr.count("\n") == 1, (instruction, stderr)
    code, _, stderr = run(["edit", str(good), "add a piano", "--then", "add a kazoo", "-o",
                           str(out), "--model", model], capsys)
    assert code == 2 and "kazoo" in stderr
    assert not out.exists()


def test_model_folder_errors(model, tmp_path, capsys, monkeypatch):
    good = write_tones(tmp_path / "good.wav")
    out = str(tmp_path / "out.wav")
    monkeypatch.setenv("INSTRUCTME_MODEL", str(tmp_path / "no-model"))
    code, _, stderr = run(["edit", str(good), "add a piano", "-o", out], capsys)
    assert code == 2 and "no edit model" in stderr and "instructme pipeline" in stderr
    code, _, stderr = run(["edit", str(good), "add a piano", "-o", out, "--model",
                           str(tmp_path)], capsys)
    assert code == 2 and "no pipeline.json" in stderr
    broken = tmp_path / "broken"
    EditPipeline.from_pretrained(model, device="cpu").save_pretrained(broken)
    (broken / "editor" / "model.safetensors").write_bytes(b"garbage")
    code, _, stderr = run(["edit", str(good), "add a piano", "-o", out, "--model",
                           str(broken)], capsys)
    assert code == 2 and "unreadable weights" in stderr and stderr.count("\n") == 1
    for argv, msg in [(["--steps", "0"], "--steps"), (["--guidance", "-1"], "--guidance"),
                      (["--threads", "0"], "--threads")]:
        code, _, stderr = run(["edit", str(good), "add a piano", "-o", out, "--model", model,
                               *argv], capsys)
        assert code == 2 and msg in stderr


def test_refuses_to_overwrite_input_and_writes_atomically(model, tmp_path, capsys,
                                                           monkeypatch):
    src = write_tones(tmp_path / "song.wav")
    before = src.read_bytes()
    os.symlink(src, tmp_path / "link.wav")
    for target in (str(src), str(tmp_path / "." / "song.wav"), str(tmp_path / "link.wav")):
        code, _, stderr = run(["edit", str(src), "add a piano", "-o", target, "--model", model,
                               *STEPS], capsys)
        assert code == 2 and "refusing to overwrite the input" in stderr
    # an intermediate file that would be the input is refused too
    code, _, stderr = run(["edit", str(tmp_path / "x.round1.wav"), "add a piano", "--then",
                           "remove the drums", "-o", str(tmp_path / "x.wav"), "--model", model,
                           "--keep-intermediate"], capsys)
    assert code == 2 and "refusing" in stderr
    code, _, stderr = run(["edit", str(src), "add a piano", "-o", str(tmp_path / "o.mp4"),
                           "--model", model], capsys)
    assert code == 2 and "unsupported output format" in stderr
    assert src.read_bytes() == before

    # a failure while writing leaves an existing output untouched and no temporary file
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous result")

    def broken_write(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", broken_write)
    code, _, stderr = run(["edit", str(src), "add a piano", "-o", str(out), "--model", model,
                           *STEPS, "--quiet"], capsys)
    assert code == 2 and stderr == f"error: {out}: could not write (disk full)\n"
    assert out.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.wav", "out.wav", "song.wav"]


def test_pipeline_command_assembles_a_folder(model, tmp_path, capsys):
    out = tmp_path / "assembled"
    code, stdout, _ = run(["pipeline", "--vae", f"{model}/vae", "--chord", f"{model}/chord",
                           "--editor", f"{model}/editor", "-o", str(out), "--steps", "7",
                           "--no-preserve"], capsys)
    assert code == 0 and "wrote" in stdout
    pipe = EditPipeline.from_pretrained(out, device="cpu")
    assert pipe.defaults.steps == 7 and pipe.text_config.kind == "hash"
    assert pipe.defaults.preserve is False and pipe.resolve_settings().preserve is False
    code, _, stderr = run(["pipeline", "--vae", f"{model}/chord", "--chord", f"{model}/chord",
                           "--editor", f"{model}/editor", "-o", str(tmp_path / "bad")], capsys)
    assert code == 2 and "expected a AudioVAE" in stderr


def test_pipeline_fp16_editor_is_half_size_and_edits_alike(model, tmp_path, capsys):
    from safetensors.torch import load_file

    half = tmp_path / "half"
    code, _, _ = run(["pipeline", "--vae", f"{model}/vae", "--chord", f"{model}/chord",
                      "--editor", f"{model}/editor", "-o", str(half), "--fp16"], capsys)
    assert code == 0
    full_w, half_w = Path(model) / "editor/model.safetensors", half / "editor/model.safetensors"
    assert half_w.stat().st_size < 0.6 * full_w.stat().st_size
    assert {t.dtype for t in load_file(str(half_w)).values()} == {torch.float16}
    assert (half / "vae/model.safetensors").read_bytes() == (
        Path(model) / "vae/model.safetensors").read_bytes()
    a = EditPipeline.from_pretrained(model, device="cpu")
    b = EditPipeline.from_pretrained(half, device="cpu")
    assert next(b.editor.parameters()).dtype == torch.float32
    x = np.sin(np.arange(16_000) / 16_000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    ya = a(x, 16_000, "remove the drums", steps=3).audio
    yb = b(x, 16_000, "remove the drums", steps=3).audio
    assert np.abs(ya - yb).max() < 0.05 * np.abs(ya).max()


def test_help_lists_every_subcommand(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)
    assert {"data", "train", "eval", "edit", "pipeline"} <= names
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ")}
    assert names <= listed, names - listed
    with pytest.raises(SystemExit):
        cli.main(["edit", "--help"])
    edit_help = capsys.readouterr().out
    for flag in ("--model", "--steps", "--guidance", "--seed", "--sampler", "--then",
                 "--keep-intermediate", "--quiet", "-o"):
        assert flag in edit_help


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "instructme.cli", "edit",
                           str(tmp_path / "missing.wav"), "add a piano", "-o",
                           str(tmp_path / "o.wav")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {tmp_path / 'missing.wav'}: file not found"


def test_part_and_preserve_flags(model, tmp_path, capsys):
    src = write_tones(tmp_path / "song.wav", channels=2, sr=22_050)
    out, part = tmp_path / "out.wav", tmp_path / "drums.wav"
    code, stdout, _ = run(["edit", str(src), "remove the drums", "-o", str(out), "--part",
                           str(part), "--model", model, *STEPS], capsys)
    assert code == 0 and f"wrote {out} and the edited part to {part}:" in stdout
    x, y, p = (sf.read(f, dtype="float32")[0] for f in (src, out, part))
    assert y.shape == p.shape == x.shape
    np.testing.assert_allclose(y + p, x, atol=1e-3)  # output + removed part = the input
    assert not np.array_equal(y[:, 0], y[:, 1])  # each channel keeps its own content
    code, _, _ = run(["edit", str(src), "remove the drums", "-o", str(tmp_path / "g.wav"),
                      "--no-preserve", "--model", model, *STEPS], capsys)
    g = sf.read(tmp_path / "g.wav", dtype="float32")[0]
    assert code == 0 and np.array_equal(g[:, 0], g[:, 1])  # the generated mono mix
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, msg in [
        (["remix this as jazz", "--part", str(tmp_path / "p.wav")], "a remix has no separate"),
        (["remove the drums", "--no-preserve", "--part", str(tmp_path / "p.wav")],
         "needs source-preserving"),
        (["remove the drums", "--part", str(src)], "refusing to overwrite the input"),
        (["remove the drums", "--part", str(tmp_path / "o.wav")], "must differ"),
    ]:
        o = tmp_path / "o.wav"
        code, _, err = run(["edit", str(src), argv[0], "-o", str(o), *argv[1:], "--model",
                            model, *STEPS], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
