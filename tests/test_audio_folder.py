"""Recorded music for the VAE: folder import (resample, mono, split, skips), crops drawn from
it, warm-starting a VAE run from a model folder, and the held-out set in ``eval vae``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from test_train_vae import SR, make_dataset

from instructme.checkpoint import load_model
from instructme.cli import main
from instructme.dataset.audio_folder import (
    LISTING,
    import_audio_folder,
    load_audio_folder,
    split_of,
)
from instructme.errors import ManifestError
from instructme.metrics.vae_eval import evaluate_vae
from instructme.models.vae import AudioVAE
from instructme.training.vae import train_vae
from instructme.training.vae_data import CropSampler, file_clips, load_split


def make_recordings(root: Path, n: int = 12, seconds: float = 3.0) -> Path:
    """``n`` stereo 44.1 kHz OGG/WAV "recordings" (a chord), one too short, one corrupt."""
    t = np.arange(int(seconds * 44_100)) / 44_100
    (root / "album").mkdir(parents=True)
    for i in range(n):
        f0 = 110.0 * 2 ** (i / 12)
        left = 0.3 * np.sin(2 * np.pi * f0 * t)
        right = 0.1 * np.sin(2 * np.pi * 1.5 * f0 * t)
        ext = "ogg" if i % 2 else "wav"
        sf.write(str(root / "album" / f"track{i:02d}.{ext}"), np.stack([left, right], 1),
                 44_100)
    sf.write(str(root / "sting.wav"), np.zeros(4_410), 44_100)  # 0.1 s: not music
    (root / "broken.ogg").write_bytes(b"OggS not really")
    (root / "notes.txt").write_text("not audio")
    return root


@pytest.fixture()
def recordings(tmp_path: Path) -> Path:
    out = tmp_path / "real"
    import_audio_folder([make_recordings(tmp_path / "src")], out, min_seconds=1.0, quiet=True)
    return out


def test_import_resamples_splits_and_skips(tmp_path: Path, recordings: Path) -> None:
    listing = json.loads((recordings / LISTING).read_text())
    assert len(listing["files"]) == 12
    reasons = {Path(s["source"]).name: s["reason"] for s in listing["skipped"]}
    assert set(reasons) == {"sting.wav", "broken.ogg"} and "shorter" in reasons["sting.wav"]
    assert {f["split"] for f in listing["files"]} <= {"train", "val"}
    assert all(f["split"] == split_of(f["name"]) for f in listing["files"])
    first = recordings / "audio" / f"{listing['files'][0]['name']}.flac"
    info = sf.info(str(first))
    assert (info.samplerate, info.channels) == (SR, 1)
    assert info.duration == pytest.approx(3.0, abs=0.01)
    # resumable: a second import keeps the converted files and gives the same listing
    before = first.stat().st_mtime_ns
    again = import_audio_folder([tmp_path / "src"], recordings, min_seconds=1.0, quiet=True)
    assert first.stat().st_mtime_ns == before and again["files"] == listing["files"]
    # an output folder inside a source folder is never imported into itself
    nested = tmp_path / "src" / "imported"
    import_audio_folder([tmp_path / "src"], nested, min_seconds=1.0, quiet=True)
    twice = import_audio_folder([tmp_path / "src"], nested, min_seconds=1.0, quiet=True)
    assert len(twice["files"]) == 12
    splits = sorted({f["split"] for f in listing["files"]})
    files = [f for s in splits for f in load_audio_folder(recordings, s, SR)]
    assert len(files) == 12 and all(f.frames == 3 * SR for f in files)
    with pytest.raises(ManifestError, match="expects 22050"):
        load_audio_folder(recordings, "train", 22_050)
    with pytest.raises(ManifestError, match="import-audio"):
        load_audio_folder(tmp_path, "train", SR)
    with pytest.raises(ManifestError, match="usable"):
        import_audio_folder([tmp_path / "src" / "notes.txt"], tmp_path / "x", quiet=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / LISTING).write_text("{not json")
    with pytest.raises(ManifestError, match="not an audio folder listing"):
        import_audio_folder([tmp_path / "src"], tmp_path / "bad", quiet=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no audio files"):
        import_audio_folder([tmp_path / "empty"], tmp_path / "x", quiet=True)


def test_split_is_about_one_in_ten_and_stable() -> None:
    names = [f"track-{i}" for i in range(2000)]
    val = sum(split_of(n) == "val" for n in names)
    assert 150 < val < 250
    assert [split_of(n) for n in names[:50]] == [split_of(n) for n in names[:50]]


def test_crops_come_from_recordings_with_p_extra(tmp_path: Path, recordings: Path) -> None:
    songs = load_split(make_dataset(tmp_path / "data"), "train", SR)
    extra = load_audio_folder(recordings, "train", SR)
    only_real = CropSampler(songs, 4_000, seed=3, extra=extra, p_extra=1.0)
    never = CropSampler(songs, 4_000, seed=3, extra=extra, p_extra=0.0)
    plain = CropSampler(songs, 4_000, seed=3)

    def peak_hz(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x))
        return float(np.argmax(spec) * SR / len(x))

    # the recordings peak at 110-196 Hz; the synthetic songs play 220 Hz and noise
    assert all(peak_hz(only_real.crop()) < 200 for _ in range(6))
    np.testing.assert_array_equal(never.batch(3), plain.batch(3))  # no extra draws at 0
    with pytest.raises(ValueError):
        CropSampler(songs, 4_000, extra=extra, p_extra=1.5)
    clips = file_clips(extra, 2, 1.0)
    assert len(clips) == 2 and all(len(x) == SR for _, x in clips)


def test_warm_start_with_recordings_and_held_out_eval(tmp_path: Path, recordings: Path,
                                                      capsys) -> None:
    data = make_dataset(tmp_path / "data")
    base = tmp_path / "base"
    train_vae(data, base, preset="tiny", steps=2, quiet=True)
    start = load_file(str(base / "model.safetensors"))

    warm = tmp_path / "warm"
    assert main(["train", "vae", "--data", str(data), "--out", str(warm), "--preset", "tiny",
                 "--steps", "1", "--lr", "1e-12", "--init", str(base), "--extra-audio",
                 str(recordings), "--quiet"]) == 0
    saved = json.loads((warm / "state" / "train_config.json").read_text())
    assert (saved["init"], saved["extra_audio"], saved["p_extra"]) == (
        str(base), str(recordings), 0.5)
    got = load_file(str(warm / "model.safetensors"))
    assert all(torch.allclose(got[k], start[k], atol=1e-5) for k in start)
    moved = tmp_path / "moved"
    train_vae(data, moved, preset="tiny", steps=2, quiet=True, init=str(base), lr=1e-2)
    after = load_file(str(moved / "model.safetensors"))
    assert any(not torch.allclose(after[k], start[k]) for k in start)
    assert load_model(AudioVAE, moved).config.latent_channels == 8

    # the recordings' val files are scored as their own set (two held out here: the hash
    # split of 12 files in temporary folders may hold out any number)
    listing = json.loads((recordings / LISTING).read_text())
    for i, f in enumerate(listing["files"]):
        f["split"] = "val" if i < 2 else "train"
    (recordings / LISTING).write_text(json.dumps(listing))
    r = evaluate_vae(warm, None, clips=2, seconds=1.0, real=[], quiet=True,
                     extra_audio=recordings)
    assert set(r["sets"]) == {"recorded music (held out)"}
    assert len(r["sets"]["recorded music (held out)"]["clips"]) == 2
    assert np.isfinite(r["sets"]["recorded music (held out)"]["vae"]["mel"])

    # one-line errors
    for argv, msg in ((["--p-extra", "0.3"], "--extra-audio"),
                      (["--extra-audio", str(recordings), "--p-extra", "2"], "between"),
                      (["--extra-audio", str(tmp_path)], "import-audio"),
                      (["--init", str(tmp_path / "missing")], "")):
        assert main(["train", "vae", "--data", str(data), "--out", str(tmp_path / "e"),
                     "--preset", "tiny", "--steps", "1", "--quiet", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1 and msg in err
