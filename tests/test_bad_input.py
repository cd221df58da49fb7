"""Bad input is one ``error:`` line and exit code 2, never a traceback, a silent wrong
result or a half-written set of outputs (docs/ARCHITECTURE.md, the error contract)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructme import cli
from instructme.audio import load, probe, save, save_all
from instructme.checkpoint import load_model
from instructme.dataset.folder import load_window, read_manifest, read_song, song_dir
from instructme.editing.pipeline import build_tiny_pipeline, resolve_device
from instructme.errors import AudioError, CheckpointError, InstructMEError, ManifestError
from instructme.fileio import atomic_path, remove_stale_temps
from instructme.models.vae import AudioVAE
from instructme.training.stem_mixes import has_split
from instructme.training.vae_data import split_songs
from tests.synth_songs import make_dataset

SR = 16_000
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("model") / "tiny"))


def tones(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return path


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``instructme argv``; stderr must be one ``error:`` line."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], err


def edit_argv(src: Path, out: Path, model: str, *extra: str) -> list[str]:
    return ["edit", str(src), "add a piano", "-o", str(out), "--model", model, "--steps", "2",
            "--quiet", *extra]


# -- item 9: seeds, devices, configs, failed writes, manifests, corrupt val songs -----------

def test_seed_out_of_range(model, tmp_path, capsys):
    src = tones(tmp_path / "in.wav")
    code, err = run(edit_argv(src, tmp_path / "o.wav", model, "--seed",
                              "1180591620717411303424"), capsys)
    one_line_error(code, err, "--seed", "64-bit")
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("device, needle", [("bogus", "unknown device"),
                                            ("meta", "not supported"),
                                            ("cuda:99", "cuda")])
def test_bad_device_is_one_line(model, tmp_path, capsys, device, needle):
    src = tones(tmp_path / "in.wav")
    code, err = run(edit_argv(src, tmp_path / "o.wav", model, "--device", device), capsys)
    one_line_error(code, err, needle)
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(model, tmp_path, capsys):
    src = tones(tmp_path / "in.wav")
    code, err = run(edit_argv(src, tmp_path / "o.wav", model, "--device", "cuda"), capsys)
    one_line_error(code, err, "CUDA is not available")
    with pytest.raises(InstructMEError, match="CUDA is not available"):
        resolve_device("cuda")


def test_resolve_device_keeps_good_ones():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")


def test_config_field_of_the_wrong_type(model, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    cfg_path = bad / "vae" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["frame_blocks"] = "sixteen"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: VAEConfig: field 'frame_blocks' "
                                              r"must be int, got 'sixteen'"):
        load_model(AudioVAE, bad / "vae")
    for value in (True, 2.5, None, [1]):
        cfg["frame_blocks"] = value
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match="frame_blocks"):
            load_model(AudioVAE, bad / "vae")
    cfg["frame_blocks"] = 1
    cfg["sine_crossover"] = [200.0]  # tuple[float, float]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="sine_crossover"):
        load_model(AudioVAE, bad / "vae")
    cfg_path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a model config"):
        load_model(AudioVAE, bad / "vae")
    src = tones(tmp_path / "in.wav")
    code, err = run(edit_argv(src, tmp_path / "o.wav", str(bad)), capsys)
    one_line_error(code, err, "config.json")


def test_failed_write_is_an_audio_error(tmp_path):
    """A file size limit (``ulimit -f``) makes libsndfile fail with its own error type."""
    script = (
        "import resource, numpy as np\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))\n"
        "from instructme.audio import save\n"
        "from instructme.errors import AudioError\n"
        "try:\n"
        f"    save({str(tmp_path / 'big.wav')!r}, np.zeros(16000 * 10, np.float32), 16000)\n"
        "except AudioError as e:\n"
        "    print('AudioError', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("AudioError ") and "could not write" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temp file left


@pytest.fixture()
def dataset(tmp_path) -> Path:
    root = make_dataset(tmp_path / "data", n_songs=4, seconds=4.0)
    rec = {"id": "t0", "task": "remove", "instruction": "remove the bass", "args": {},
           "song": "song00", "start": 0.0, "duration": 2.0,
           "source": ["songs/song00/s00-piano.flac", "songs/song00/s01-bass.flac"],
           "target": ["songs/song00/s00-piano.flac"], "edited": ["songs/song00/s01-bass.flac"]}
    for split in ("train", "val"):
        (root / "manifests" / f"{split}.jsonl").write_text(json.dumps(rec) + "\n")
    return root


def test_non_utf8_manifest(dataset, capsys):
    (dataset / "manifests" / "val.jsonl").write_bytes(b'{"song": "caf\xe9"}\n')
    code, err = run(["data", "stats", str(dataset)], capsys)
    one_line_error(code, err, "val.jsonl", "not UTF-8")
    with pytest.raises(ManifestError, match="not UTF-8"):
        split_songs(dataset, "val")  # train vae's reader


def test_start_must_be_a_number(dataset, capsys):
    path = dataset / "manifests" / "train.jsonl"
    rec = json.loads(path.read_text())
    for key, value in (("start", "soon"), ("duration", None), ("start", -1.0),
                       ("duration", 0), ("source", "songs/song00/s00-piano.flac")):
        path.write_text(json.dumps({**rec, key: value}) + "\n")
        with pytest.raises(ManifestError, match=r"train.jsonl:1: "):
            read_manifest(path)
    path.write_text(json.dumps({**rec, "start": "soon"}) + "\n")
    code, err = run(["data", "stats", str(dataset)], capsys)
    one_line_error(code, err, "'start' must be a number")


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe",
                                     b'{"duration": 4.0, "stems": {"a": {"path": 3}}}',
                                     b'{"stems": {}}'])
def test_corrupt_song_json_in_val(dataset, capsys, content):
    (dataset / "songs" / "song02" / "song.json").write_bytes(content)  # song02 is val
    code, err = run(["data", "stats", str(dataset)], capsys)
    one_line_error(code, err, "song02")


def test_corrupt_val_split_is_not_skipped(dataset, tmp_path):
    """The classifier and chord trainers skip validation only when there is no val split."""
    from instructme.training.classifier import train_classifier

    assert has_split(dataset, "val") and not has_split(dataset, "dev")
    (dataset / "songs" / "song02" / "song.json").write_text("{not json")
    with pytest.raises(ManifestError, match="song02"):
        train_classifier(dataset, tmp_path / "run", preset="tiny", steps=1, log=lambda m: None)
    assert not (tmp_path / "run" / "model.safetensors").exists()


# -- item 10: a WAV whose data chunk is cut off -----------------------------------------------

def test_truncated_wav_is_refused(tmp_path, capsys, model):
    src = tones(tmp_path / "full.wav", seconds=1.5)
    data = src.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    assert sf.info(str(cut)).frames > 0  # libsndfile reads it silently
    with pytest.raises(AudioError, match=r"truncated WAV file \(its header declares 1.50 s"):
        probe(cut)
    with pytest.raises(AudioError, match="truncated"):
        load(cut)
    assert load(src)[0].shape == (int(1.5 * SR),)  # whole files still load
    code, err = run(edit_argv(cut, tmp_path / "o.wav", model), capsys)
    one_line_error(code, err, "truncated")
    assert not (tmp_path / "o.wav").exists()


# -- item 11: --part that cannot be written ----------------------------------------------------

def test_unwritable_part_writes_nothing(model, tmp_path, capsys):
    src = tones(tmp_path / "in.wav")
    out = tmp_path / "out.wav"
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, err = run(edit_argv(src, out, model, "--part", str(blocker / "part.wav")), capsys)
    one_line_error(code, err, "part.wav", "cannot write")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "in.wav"]


def test_save_all_writes_all_or_none(tmp_path, monkeypatch):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    save(a, np.zeros(100, np.float32), SR)
    old = a.read_bytes()
    real = sf.write

    def failing(file, data, *args, **kw):  # the second file fails like a full disk
        if ".b.wav." in str(file):
            raise sf.LibsndfileError(2, prefix="Error opening: ")
        real(file, data, *args, **kw)

    monkeypatch.setattr(sf, "write", failing)
    x = np.full(200, 0.25, np.float32)
    with pytest.raises(AudioError, match=r"b.wav: could not write"):
        save_all([(a, x), (b, x)], SR)
    assert a.read_bytes() == old and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


# -- item 12: a write killed mid-way leaves no temporary file for good --------------------------

def test_temp_file_of_a_killed_writer_is_removed_next_time(tmp_path):
    out = tmp_path / "out.wav"
    script = ("import time\nfrom instructme.fileio import atomic_path\n"
              f"with atomic_path({str(out)!r}) as tmp:\n"
              "    tmp.write_bytes(b'half')\n    print('writing', flush=True)\n"
              "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.wav.instructme-tmp-")
    with atomic_path(out) as live:  # a live writer's temp file is never removed
        live.write_bytes(b"x")
        assert remove_stale_temps(out) == [] and live.exists()
    save(out, np.zeros(100, np.float32), SR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


# -- item 13: stem paths stay inside the dataset folder -----------------------------------------

@pytest.mark.parametrize("bad", ["../../../../etc/passwd", "/etc/passwd", "songs/../../x.flac",
                                 ".."])
def test_stem_paths_outside_the_folder_are_refused(dataset, bad, capsys):
    path = dataset / "manifests" / "train.jsonl"
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "source": [bad]}) + "\n")
    with pytest.raises(ManifestError, match="outside the dataset folder"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="outside the dataset folder"):
        load_window(dataset, [bad], 0.0, 1.0)
    song_json = song_dir(dataset, "song00") / "song.json"
    song = json.loads(song_json.read_text())
    song["stems"]["s00-piano"]["path"] = bad
    song_json.write_text(json.dumps(song))
    with pytest.raises(ManifestError, match="outside the dataset folder"):
        read_song(dataset, "song00")
    code, err = run(["data", "stats", str(dataset)], capsys)
    one_line_error(code, err, "outside the dataset folder")


def test_song_ids_are_plain_names(dataset):
    for bad in ("../../etc", "..", "a/b", ""):
        with pytest.raises(ManifestError, match="bad song id"):
            read_song(dataset, bad)


# -- item 14: edit --help names no guidance number that can disagree with the folder -----------

def test_edit_help_states_no_default_numbers(capsys):
    from instructme.editing.folder import folder_defaults, read_pipeline_json

    with pytest.raises(SystemExit):
        cli.main(["edit", "--help"])
    options = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())
    for option in ("--steps STEPS", "--guidance GUIDANCE", "--sampler {", "--no-preserve"):
        entry = options.split(option, 1)[1].split(" --", 1)[0]
        assert "the model's" in entry, entry
        if option.startswith(("--guidance", "--steps")):
            assert not any(c.isdigit() for c in entry), entry
    shipped = REPO / "models" / "instructme-small"
    if (shipped / "pipeline.json").is_file():
        assert folder_defaults(read_pipeline_json(shipped), shipped).guidance == 1.5


def test_no_traceback_in_a_subprocess(model, tmp_path):
    src = tones(tmp_path / "in.wav")
    r = subprocess.run([sys.executable, "-m", "instructme.cli", "edit", str(src), "add a piano",
                        "-o", str(tmp_path / "o.wav"), "--device", "bogus", "--model", model],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: ")
