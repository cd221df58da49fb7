"""``instructme eval vae``: VAE round-trip fidelity against Opus at 6, 12 and 24 kbps.

Fidelity budget (``docs/ARCHITECTURE.md``): the latent space InstructME edits in (arXiv
2308.14360, VAE E/D) must be much better than Opus 12 kbps on the multi-scale log-mel
distance (aim: Opus 24 kbps). This runs the VAE (latent means, one pass per clip) and Opus
on the same clips — held-out test mixes and stems of a dataset folder, plus real recordings
— and reports multi-scale mel distance, multi-resolution STFT distance and SI-SDR side by
side (Markdown) and as JSON, plus how well each codec keeps held notes at their pitch
(:mod:`instructme.metrics.tones`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import torch
from tqdm import tqdm

from instructme.audio import load
from instructme.checkpoint import load_model
from instructme.dataset.audio_folder import load_audio_folder
from instructme.dataset.packaged_audio import (
    STEMPEG_EXAMPLE,
    music21_test_audio,
    packaged_multitrack,
)
from instructme.errors import AudioError
from instructme.fileio import atomic_write_json
from instructme.metrics.codec import codec_metrics, mel_distance_by_band, opus_roundtrip
from instructme.metrics.tones import held_tone_scores
from instructme.models.vae import AudioVAE
from instructme.training.vae_data import file_clips, fixed_clips, load_split

OPUS_KBPS: tuple[int, ...] = (6, 12, 24)
METRICS = ("mel", "mrstft", "si_sdr", "bass_if")


def default_real_recordings() -> list[Path]:
    """Real recordings shipped by installed packages (not made by this project) that
    libsndfile reads: music21's 20 s instrument recording
    (:func:`instructme.dataset.packaged_audio.music21_test_audio`)."""
    path = music21_test_audio()
    return [path] if path is not None else []


def packaged_band_clips(sample_rate: int) -> tuple[list[tuple[str, np.ndarray]],
                                                   list[tuple[str, np.ndarray]]]:
    """stempeg's real band excerpt (6 s, MUSDB18): ``([mix], [drums, bass, other, vocals])``
    as named mono clips, or two empty lists when stempeg is not installed."""
    tracks = packaged_multitrack(sample_rate)
    if tracks is None:
        return [], []
    stem = STEMPEG_EXAMPLE.split(".")[0].replace(" ", "_")
    named = [(f"{stem}-{k}", x) for k, x in tracks.items()
             if float(np.sqrt(np.mean(x**2))) > 1e-4]
    return named[:1], named[1:]


def real_clips(paths: list[Path], seconds: float, sample_rate: int, limit: int
               ) -> list[tuple[str, np.ndarray]]:
    """Cut the recordings (resampled, mono) into consecutive clips of ``seconds`` and take
    up to ``limit`` of them round-robin: every file's first clip, then every file's second,
    and so on (so a folder of many recordings is sampled across all of them, not from the
    first file alone). Silent clips are skipped."""
    frames = int(round(seconds * sample_rate))
    per_file: list[list[tuple[str, np.ndarray]]] = []
    for p in paths:
        x, _ = load(p, sample_rate=sample_rate)
        segs = [(f"{p.stem}-{i}", x[i * frames:(i + 1) * frames])
                for i in range(max(1, len(x) // frames))]
        per_file.append([(n, seg) for n, seg in segs if float(np.sqrt(np.mean(seg**2))) > 1e-4])
    clips: list[tuple[str, np.ndarray]] = []
    for i in range(max((len(c) for c in per_file), default=0)):
        clips += [c[i] for c in per_file if i < len(c)]
    return clips[:limit]


def evaluate_vae(model_dir: str | Path, data_dir: str | Path | None, clips: int = 8,
                 seconds: float = 10.0, real: list[Path] | None = None,
                 bitrates: tuple[int, ...] = OPUS_KBPS, out_json: str | Path | None = None,
                 quiet: bool = False, extra_audio: str | Path | None = None
                 ) -> dict[str, Any]:
    """Score the VAE and Opus on each clip set; returns (and optionally writes) the report.

    Per set and codec: mel distance, MR-STFT, SI-SDR, and ``mel_by_band`` (the mel distance
    split into frequency bands: where a codec loses detail).

    ``extra_audio``: an imported folder of recorded music; its val files (never trained on)
    make the "recorded music (held out)" set, one clip per file.
    """
    vae = load_model(AudioVAE, model_dir).eval()
    cfg = vae.config
    sr = cfg.sample_rate
    sets: dict[str, list[tuple[str, np.ndarray]]] = {}
    if data_dir is not None:
        test = load_split(data_dir, "test", sr)
        both = fixed_clips(test, clips, seconds, sr, stems_too=True)
        sets["test mixes"] = [c for c in both if c[0].endswith("-mix")]
        sets["test stems"] = [c for c in both if not c[0].endswith("-mix")]
    band_mix: list[tuple[str, np.ndarray]] = []
    band_stems: list[tuple[str, np.ndarray]] = []
    if real is None:  # packaged recordings: music21's instrument, stempeg's band excerpt
        real = default_real_recordings()
        band_mix, band_stems = packaged_band_clips(sr)
    if real or band_mix:
        sets["real recordings"] = real_clips(real, seconds, sr, clips) + band_mix
    if band_stems:
        sets["real stems"] = band_stems
    if extra_audio is not None:
        held_out = load_audio_folder(extra_audio, "val", sr)
        sets["recorded music (held out)"] = file_clips(held_out, clips, seconds)
    sets = {k: v for k, v in sets.items() if v}
    if not sets:
        raise AudioError("nothing to evaluate: give --data and/or --real recordings")

    codecs = ["vae"] + [f"opus{k}" for k in bitrates]

    def vae_codec(x: np.ndarray) -> np.ndarray:
        """One round trip through the VAE (latent means): ``[N] -> [N]``."""
        with torch.inference_mode():
            return vae(torch.from_numpy(x)[None], sample=False)[0][0, 0].numpy()

    results: dict[str, Any] = {}
    vae_seconds = audio_seconds = 0.0
    bar = tqdm(total=sum(len(v) for v in sets.values()), desc="scoring clips", unit="clip",
               disable=quiet)
    for set_name, items in sets.items():
        per_codec: dict[str, list[dict[str, float]]] = {c: [] for c in codecs}
        for _name, x in items:
            t0 = time.perf_counter()
            y = vae_codec(x)
            vae_seconds += time.perf_counter() - t0
            audio_seconds += len(x) / sr
            outputs = {"vae": y, **{f"opus{k}": opus_roundtrip(x, sr, k) for k in bitrates}}
            for c, est in outputs.items():
                per_codec[c].append({**codec_metrics(x, est, sr),
                                     "bands": mel_distance_by_band(x, est, sr)})
            bar.update()
        results[set_name] = {
            "clips": [n for n, _ in items],
            "seconds": float(np.mean([len(x) / sr for _, x in items])),
            **{c: {**{m: float(np.mean([r[m] for r in rs])) for m in METRICS},
                   "mel_median": float(np.median([r["mel"] for r in rs])),
                   "mel_per_clip": [r["mel"] for r in rs],
                   "mel_by_band": {b: float(np.mean([r["bands"][b] for r in rs]))
                                   for b in rs[0]["bands"]}}
               for c, rs in per_codec.items()},
        }
    bar.close()
    held_tones = {"vae": held_tone_scores(vae_codec, sr)}
    for k in bitrates:
        held_tones[f"opus{k}"] = held_tone_scores(lambda x, k=k: opus_roundtrip(x, sr, k), sr)
    values_per_s = cfg.latent_channels * cfg.latent_rate
    report = {
        "model": str(model_dir),
        "data": None if data_dir is None else str(data_dir),
        "extra_audio": None if extra_audio is None else str(extra_audio),
        "real_recordings": [str(p) for p in real] + [n for n, _ in band_mix + band_stems],
        "sample_rate": sr,
        "latent": {"channels": cfg.latent_channels, "frames_per_s": cfg.latent_rate,
                   "values_per_s": values_per_s,
                   "compression_ratio": sr / values_per_s,
                   "kbps_at_float16": values_per_s * 16 / 1000},
        "vae_x_realtime": audio_seconds / max(vae_seconds, 1e-9),
        "sets": results,
        "held_tones": held_tones,
    }
    if out_json is not None:
        atomic_write_json(out_json, report)
    if not quiet:
        print(format_report(report, codecs))
    return report


def format_report(report: dict[str, Any], codecs: list[str]) -> str:
    """Markdown: one table per clip set (rows: codecs; columns: metrics)."""
    lat = report["latent"]
    lines = [
        f"Latent: {lat['channels']} ch x {lat['frames_per_s']:.2f} Hz = "
        f"{lat['values_per_s']:.0f} values/s ({lat['compression_ratio']:.1f} audio samples per "
        f"latent value; {lat['kbps_at_float16']:.1f} kbps as float16). "
        f"VAE round trip: {report['vae_x_realtime']:.0f}x real time.",
    ]
    for set_name, r in report["sets"].items():
        lines += ["", f"**{set_name}** ({len(r['clips'])} clips, {r['seconds']:.1f} s on "
                  "average)", "",
                  "| codec | mel distance (lower) | MR-STFT (lower) | SI-SDR dB (higher) "
                  "| bass IF (lower) |",
                  "|---|---|---|---|---|"]
        for c in codecs:
            m = r[c]
            lines.append(f"| {c} | {m['mel']:.3f} | {m['mrstft']:.3f} | {m['si_sdr']:.2f} "
                         f"| {m['bass_if']:.3f} |")
        ours = np.asarray(r["vae"]["mel_per_clip"])
        lines += ["", "per clip, the VAE's mel distance is lower than "
                  + ", ".join(f"{c}'s on {int((ours < np.asarray(r[c]['mel_per_clip'])).sum())}"
                              for c in codecs if c != "vae")
                  + f" of {len(ours)} clips (median mel distance: "
                  + ", ".join(f"{c} {r[c]['mel_median']:.3f}" for c in codecs) + ")"]
        bands = list(r[codecs[0]]["mel_by_band"])
        lines += ["", "mel distance by frequency band (Hz):", "",
                  "| codec | " + " | ".join(bands) + " |", "|---" * (len(bands) + 1) + "|"]
        for c in codecs:
            lines.append(f"| {c} | " + " | ".join(f"{r[c]['mel_by_band'][b]:.3f}"
                                                   for b in bands) + " |")
    if "held_tones" in report:
        tones = report["held_tones"]
        notes = list(tones[codecs[0]]["per_note"])
        names = [pretty_midi.note_number_to_name(int(n)) for n in notes]
        lines += ["", "**held tones in tune** (fraction of a held harmonic tone's energy within "
                  "a quarter tone of its partials; higher is better, 1 = in tune)", "",
                  "| codec | mean | " + " | ".join(names) + " |",
                  "|---" * (len(notes) + 2) + "|"]
        for c in codecs:
            per = tones[c]["per_note"]
            lines.append(f"| {c} | {tones[c]['in_tune']:.2f} | "
                         + " | ".join(f"{per[n]:.2f}" for n in notes) + " |")
    return "\n".join(lines)
