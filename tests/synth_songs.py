"""Synthetic audio and a tiny dataset folder for the chord and classifier tests.

Harmonic tones stand in for instruments: no FluidSynth, a few seconds to build.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
ROOT_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "Bb": 10}


def tone(midi: float, n: int, rng: np.random.Generator, harmonics: int = 5,
         amp: float = 1.0) -> np.ndarray:
    """A harmonic tone (1/k partial amplitudes, random phases): float64 ``[n]``."""
    t = np.arange(n) / SR
    f = 440.0 * 2.0 ** ((midi - 69) / 12)
    x = np.zeros(n)
    for k in range(1, harmonics + 1):
        if k * f < SR / 2:
            x += amp / k * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi))
    return x


def triad(root: int, minor: bool, n: int, rng: np.random.Generator) -> np.ndarray:
    """Root-position-ish triad in a random octave plus a bass root: float32 ``[n]``."""
    pcs = [root, root + (3 if minor else 4), root + 7]
    base = 48 + int(rng.integers(0, 12))
    notes = [base + (p - base) % 12 for p in pcs] + [36 + root % 12]
    x = sum(tone(m, n, rng, amp=rng.uniform(0.5, 1.0)) for m in notes)
    return (0.2 * x / len(notes)).astype(np.float32)


def _chord_pitches(label: str) -> tuple[int, bool]:
    root, qual = label.split(":")
    return ROOT_PC[root], qual.startswith("min")


def make_dataset(root: Path, n_songs: int = 6, seconds: float = 8.0, seed: int = 0) -> Path:
    """A dataset folder like ``instructme data build`` writes (songs, activity, splits).

    Songs alternate styles ``pop`` (bright chord stem) / ``jazz`` (soft chord stem) / None;
    stems: ``s00-piano`` (chords), ``s01-bass`` (roots), ``s02-drums`` (noise hits, silent
    in the first half), and a variant ``s00-piano-as-strings``. Splits: last song test,
    one before it val, the rest train.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    labels = ["C:maj", "A:min", "F:maj", "G:7", "D:min", "E:min", "Bb:maj"]
    splits = {}
    for k in range(n_songs):
        sid = f"song{k:02d}"
        style = ("pop", "jazz", None)[k % 3]
        d = root / "songs" / sid
        d.mkdir(parents=True)
        chords, stems = [], {"s00-piano": np.zeros(n), "s01-bass": np.zeros(n),
                             "s00-piano-as-strings": np.zeros(n), "s02-drums": np.zeros(n)}
        seg = 2.0
        for j in range(int(seconds / seg)):
            label = labels[int(rng.integers(len(labels)))]
            chords.append({"start": j * seg, "end": (j + 1) * seg, "label": label})
            r, minor = _chord_pitches(label)
            a, b = int(j * seg * SR), int((j + 1) * seg * SR)
            env = np.minimum(1.0, np.linspace(0, 40, b - a)) * np.linspace(1, 0.6, b - a)
            for p in (r, r + (3 if minor else 4), r + 7):
                m = 60 + p % 12
                bright = 8 if style == "pop" else 3
                stems["s00-piano"][a:b] += 0.1 * env * tone(m, b - a, rng, harmonics=bright)
                stems["s00-piano-as-strings"][a:b] += 0.1 * env * tone(m, b - a, rng, 2)
            stems["s01-bass"][a:b] += 0.15 * env * tone(36 + r % 12, b - a, rng, 2)
        for beat in np.arange(seconds / 2, seconds, 0.5):
            a = int(beat * SR)
            hit = rng.standard_normal(1600) * np.exp(-np.arange(1600) / 300)
            stems["s02-drums"][a:a + 1600] += 0.3 * hit[: n - a]
        meta, acts = {}, {}
        for name, x in stems.items():
            sf.write(d / f"{name}.flac", x.astype(np.float32), SR, subtype="PCM_16")
            frames = x[: n // 1600 * 1600].reshape(-1, 1600)
            acts[name] = np.sqrt((frames ** 2).mean(1)) > 1e-3
            inst = name.split("-")[-1] if "-as-" in name else name.split("-")[1]
            meta[name] = {"path": f"songs/{sid}/{name}.flac", "instrument": inst,
                          "program": 0, "role": "comp", "part": name[:3],
                          "variant_of": "s00-piano" if "-as-" in name else None}
        np.savez_compressed(d / "activity.npz", **acts)
        song = {"song_id": sid, "source": "arranger" if style else "corpus", "group": sid,
                "tempo": 120.0, "key": "C", "duration": seconds, "parts": [],
                "chords": chords, "style": style, "meta": {}, "stems": meta,
                "activity_hz": 10.0, "sample_rate": SR}
        (d / "song.json").write_text(json.dumps(song))
        splits[sid] = "test" if k == n_songs - 1 else "val" if k == n_songs - 2 else "train"
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "splits.json").write_text(json.dumps(splits))
    (root / "build.json").write_text(json.dumps({"preset": "test", "seed": seed,
                                                 "sample_rate": SR, "config": {}}))
    return root
