"""The models committed under models/ load and do their job on fresh audio."""

from __future__ import annotations

from pathlib import Path

import mir_eval
import numpy as np
import pytest

from instructme.checkpoint import load_model
from instructme.dataset.render import render_part
from instructme.models.chord import ChordRecognizer
from instructme.music.score import Note, Part

MODELS = Path(__file__).resolve().parents[1] / "models"
PROGRESSION = [("C:maj", (48, 60, 64, 67)), ("G:maj", (43, 59, 62, 67)),
               ("A:min", (45, 60, 64, 69)), ("F:maj", (41, 60, 65, 69))]


@pytest.mark.parametrize("soundfont", ["fluidr3", "timgm6mb"])
@pytest.mark.parametrize("name", ["chord-small", "chord-sevenths"])
def test_shipped_chord_model_reads_a_rendered_progression(name, soundfont):
    # Strings (not seen as this exact voicing in training) play C G Am F, 2 s each, with a
    # trained-on soundfont and with one no model here was trained on.
    from instructme.dataset.soundfonts import resolve_soundfont

    if not (MODELS / name).is_dir():
        pytest.skip(f"no shipped {name}")
    notes = [Note(p, 2.0 * i, 2.0 * i + 1.9, 85) for i, (_, ps) in enumerate(PROGRESSION)
             for p in ps]
    x = render_part(Part("pad", 48, "strings", "comp", notes), duration=8.0,
                    soundfont=resolve_soundfont(soundfont))
    model = load_model(ChordRecognizer, MODELS / name)
    segments = model.transcribe(x, 16_000)
    est_iv = np.array([[s, e] for s, e, _ in segments])
    ref_iv = np.array([[2.0 * i, 2.0 * i + 2.0] for i in range(4)])
    ref_labels = [label for label, _ in PROGRESSION]
    est_iv, est_labels = mir_eval.util.adjust_intervals(
        est_iv, [lab for _, _, lab in segments], 0.0, 8.0, "N", "N")
    iv, ref_l, est_l = mir_eval.util.merge_labeled_intervals(ref_iv, ref_labels, est_iv,
                                                             est_labels)
    score = mir_eval.chord.weighted_accuracy(mir_eval.chord.majmin(ref_l, est_l),
                                             mir_eval.util.intervals_to_durations(iv))
    assert score >= 0.8, segments


PIPELINE = MODELS / "instructme-small"
EXAMPLE = MODELS.parent / "examples" / "arr000-00026-country.flac"


def _percussive_fraction(y: np.ndarray) -> float:
    """Share of spectral energy in librosa's HPSS percussive part (drums score high)."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=1024, hop_length=256))
    H, P = librosa.decompose.hpss(S)
    return float((P**2).sum() / ((H**2).sum() + (P**2).sum()))


@pytest.mark.skipif(not (PIPELINE / "pipeline.json").is_file(), reason="no shipped pipeline")
def test_shipped_pipeline_edits_the_bundled_example():
    import librosa
    import soundfile as sf

    from instructme.editing.pipeline import EditPipeline

    # its chord recognizer is the shipped one, byte for byte; its VAE (the encoder the editor
    # was trained on, with a decoder grown and fine-tuned on its own) has vae-medium's
    # architecture
    assert ((PIPELINE / "chord" / "model.safetensors").read_bytes()
            == (MODELS / "chord-small" / "model.safetensors").read_bytes())
    import json

    def arch(folder: Path) -> dict:
        cfg = json.loads((folder / "config.json").read_text())
        return {k: v for k, v in cfg.items() if k not in ("_extra", "scaling_factor")}

    assert arch(PIPELINE / "vae") == arch(MODELS / "vae-medium")
    pipe = EditPipeline.from_pretrained(PIPELINE, device="cpu")
    x, sr = sf.read(EXAMPLE, dtype="float32")  # drums, bass, piano, strings
    result = pipe(x, sr, "remove the drums", steps=10, seed=0)
    no_drums = result.audio
    assert no_drums.shape == x.shape and np.isfinite(no_drums).all()
    assert 0 < np.abs(no_drums).max() <= 1.0
    np.testing.assert_array_equal(no_drums, pipe(x, sr, "remove the drums", steps=10).audio)
    # the drums are gone: the percussive share of the energy falls (0.31 -> 0.09 when shipped;
    # 0.06 for the generated mix, preserve=False), and the removed part is the drums (0.76)
    assert _percussive_fraction(no_drums) < 0.5 * _percussive_fraction(x)
    assert _percussive_fraction(result.part) > 2 * _percussive_fraction(x)
    # only the bass is left: the spectral centroid falls (~1975 Hz -> ~250 Hz when shipped)
    bass = pipe(x, sr, "extract the bass", steps=10, seed=0).audio

    def centroid(y: np.ndarray) -> float:
        return float(librosa.feature.spectral_centroid(y=y, sr=sr).mean())

    assert centroid(bass) < 0.3 * centroid(x)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_STEMS = {"arr000-00026-country": ("country", {"drums", "bass", "piano", "strings"}),
                 "arr000-00058-funk": ("funk", {"drums", "bass", "guitar", "synth_lead"}),
                 "arr000-00103-orchestral": ("orchestral", {"strings", "brass", "woodwinds"})}


@pytest.mark.parametrize("name", ["classifier-wide", "classifier-diverse"])
def test_shipped_classifier_names_the_stems_and_style_of_the_examples(name):
    """The bundled held-out songs: every stem found, the style right, and (with the calibrated
    thresholds) at most one class that does not play, over the three songs."""
    import soundfile as sf
    import torch

    from instructme.models.classifier import InstrumentClassifier

    if not (MODELS / name).is_dir():
        pytest.skip(f"no shipped {name}")
    model = load_model(InstrumentClassifier, MODELS / name).eval()
    assert model.config.thresholds is not None
    false_positives = 0
    for song, (style, stems) in EXAMPLE_STEMS.items():
        x, sr = sf.read(EXAMPLES / f"{song}.flac", dtype="float32")
        assert sr == model.config.sample_rate
        with torch.no_grad():
            pred = model.predict(torch.from_numpy(x)[None])
        probs = pred["instruments"][0].numpy()
        present = {n for n, p, t in zip(model.instrument_names, probs, model.thresholds)
                   if p >= t}
        assert stems <= present, (song, present)
        false_positives += len(present - stems)
        assert model.style_names[int(pred["style"][0].argmax())] == style
    assert false_positives <= 1


@pytest.mark.skipif(not (MODELS / "vae-medium").is_dir(), reason="no shipped medium VAE")
def test_shipped_vaes_round_trip_a_held_out_song() -> None:
    """Both shipped VAEs reconstruct a held-out rendered song (mel distance, lower is better);
    the medium one, grown from the small one and trained on, does not do worse."""
    import soundfile as sf
    import torch

    from instructme.metrics.codec import multiscale_mel_distance
    from instructme.models.vae import AudioVAE

    audio, sr = sf.read(str(EXAMPLE), dtype="float32", frames=10 * 16_000)
    dist = {}
    for name in ("vae-small", "vae-medium"):
        vae = load_model(AudioVAE, MODELS / name).eval()
        assert sr == vae.config.sample_rate
        with torch.no_grad():
            z = vae.encode_latents(torch.from_numpy(audio)[None])
            y = vae.decode_latents(z, length=len(audio))[0].numpy()
        assert z.shape == (1, 32, 313) and np.isfinite(y).all()
        dist[name] = multiscale_mel_distance(audio, y, sr)
    medium = load_model(AudioVAE, MODELS / "vae-medium")
    assert medium.config.decoder_frame_dim == 2 * medium.config.frame_dim
    assert dist["vae-small"] < 0.25 and dist["vae-medium"] < 0.25
    assert dist["vae-medium"] <= dist["vae-small"] + 0.005, dist


SEPARATOR = MODELS / "separator-small"


@pytest.mark.skipif(not (SEPARATOR / "config.json").is_file(), reason="no shipped separator")
def test_shipped_separator_hears_the_stems_of_the_examples() -> None:
    """The shipped pipeline's separator is ``separator-small``, byte for byte; on the bundled
    held-out songs it hears every class that plays, splits stems that sum to the input and
    extracts drums that are percussive and bass whose centroid is low."""
    import librosa
    import soundfile as sf

    from instructme.editing.separation import split_stems
    from instructme.editing.user_audio import UserAudio
    from instructme.models.separator import Separator

    assert ((PIPELINE / "separator" / "model.safetensors").read_bytes()
            == (SEPARATOR / "model.safetensors").read_bytes())
    model = load_model(Separator, SEPARATOR).eval()
    for name, (_, playing) in EXAMPLE_STEMS.items():
        x, sr = sf.read(EXAMPLES / f"{name}.flac", dtype="float32")
        source = UserAudio.from_user(x, sr, model.config.sample_rate)
        stems = split_stems(source, model)
        assert playing <= set(stems), (name, sorted(stems))
        total = sum(stems.values())
        np.testing.assert_allclose(total, source.audio, atol=1e-5)
        if "drums" in playing:
            drums = stems["drums"].mean(0)
            assert _percussive_fraction(drums) > 1.5 * _percussive_fraction(x), name
        if "bass" in playing:
            assert (librosa.feature.spectral_centroid(y=stems["bass"].mean(0), sr=sr).mean()
                    < 0.3 * librosa.feature.spectral_centroid(y=x, sr=sr).mean()), name
