"""Seeded per-stem processing and a mix-bus limiter with Spotify's ``pedalboard``.

Rendered stems have no production: every FluidSynth piano sounds the same in every song.
A timbre-diverse build draws, per stem, a small chain (EQ; often compression; mild
saturation on guitars and bass; some room reverb) and occasionally limits the mix bus. The
chains are JSON specs (recorded in ``song.json``) built into a ``pedalboard.Pedalboard``.

Every target stays exact: each stem is processed alone, and the limiter's gain curve,
derived from pedalboard's ``Limiter`` on the mix, multiplies every stem, so the mix is
still the sum of the processed stems.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pedalboard
from scipy.ndimage import uniform_filter1d

from instructme.dataset.render import active_rms

#: Level every stem is brought to before its chain, so thresholds and drive mean the same.
PROCESS_LEVEL_DB = -20.0
SATURATED = ("guitar", "bass")

_PLUGINS = {
    "highpass": pedalboard.HighpassFilter, "lowshelf": pedalboard.LowShelfFilter,
    "highshelf": pedalboard.HighShelfFilter, "peak": pedalboard.PeakFilter,
    "compressor": pedalboard.Compressor, "distortion": pedalboard.Distortion,
    "reverb": pedalboard.Reverb,
}


def draw_chain(instrument: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """A seeded chain for one stem of ``instrument``: a list of ``{"kind": ..., **params}``."""
    u = rng.uniform
    chain: list[dict[str, Any]] = []
    if instrument not in ("bass", "drums"):
        chain.append({"kind": "highpass", "cutoff_frequency_hz": float(u(40, 160))})
    chain += [
        {"kind": "lowshelf", "cutoff_frequency_hz": float(u(100, 300)), "gain_db": float(u(-4, 4))},
        {"kind": "peak", "cutoff_frequency_hz": float(np.exp(u(np.log(300), np.log(4000)))),
         "gain_db": float(u(-5, 5)), "q": float(u(0.5, 2.0))},
        {"kind": "highshelf", "cutoff_frequency_hz": float(u(3000, 7000)),
         "gain_db": float(u(-6, 4))},
    ]
    if rng.random() < 0.6:
        chain.append({"kind": "compressor", "threshold_db": float(u(-30, -12)),
                      "ratio": float(u(1.5, 4.0)), "attack_ms": float(u(2, 30)),
                      "release_ms": float(u(50, 250))})
    if instrument in SATURATED and rng.random() < 0.5:
        chain.append({"kind": "distortion", "drive_db": float(u(2, 10))})
    if instrument != "bass" and rng.random() < 0.5:
        chain.append({"kind": "reverb", "room_size": float(u(0.1, 0.6)),
                      "damping": float(u(0.3, 0.8)), "wet_level": float(u(0.05, 0.25)),
                      "dry_level": 1.0, "width": 0.0})
    return chain


def build_board(chain: list[dict[str, Any]]) -> pedalboard.Pedalboard:
    """The ``Pedalboard`` of a chain spec (see :func:`draw_chain`)."""
    return pedalboard.Pedalboard([_PLUGINS[s["kind"]](**{k: v for k, v in s.items()
                                                         if k != "kind"}) for s in chain])


def process_stem(x: np.ndarray, sample_rate: int, chain: list[dict[str, Any]]) -> np.ndarray:
    """``x: float32 [N]`` through ``chain`` at :data:`PROCESS_LEVEL_DB` active RMS; returns
    float32 ``[N]`` at that level (the build balances levels afterwards). Silence stays."""
    rms = active_rms(x, sample_rate)
    if rms <= 0 or not chain:
        return np.asarray(x, dtype=np.float32)
    scaled = (np.asarray(x, dtype=np.float64) * (10 ** (PROCESS_LEVEL_DB / 20) / rms))
    y = build_board(chain)(scaled.astype(np.float32), float(sample_rate), reset=True)
    return np.nan_to_num(np.asarray(y, dtype=np.float32)[: len(x)])


def draw_limiter(rng: np.random.Generator) -> dict[str, float]:
    """Seeded limiter settings: how far under the mix peak it starts, and its release."""
    return {"depth_db": float(rng.uniform(2.0, 8.0)), "release_ms": float(rng.uniform(30, 200))}


def limiter_gain(mix: np.ndarray, sample_rate: int, depth_db: float, release_ms: float,
                 window_seconds: float = 0.01) -> np.ndarray:
    """The gain curve ``g: float64 [N]`` in ``(0, 1]`` of pedalboard's ``Limiter`` on
    ``mix: [N]`` (threshold ``depth_db`` under its peak): the ratio of the limited to the
    unlimited signal's short-time RMS, divided by its value where nothing is limited (the
    limiter's make-up gain; its 99th percentile over the sounding frames)."""
    mix = np.asarray(mix, dtype=np.float32)
    peak = float(np.abs(mix).max())
    if peak <= 0:
        return np.ones(len(mix))
    threshold = 20 * np.log10(peak) - depth_db
    limited = pedalboard.Limiter(threshold_db=threshold, release_ms=release_ms)(
        mix, float(sample_rate), reset=True)
    win = max(1, int(window_seconds * sample_rate))
    e_in = np.sqrt(uniform_filter1d(np.square(mix, dtype=np.float64), win))
    e_out = np.sqrt(uniform_filter1d(np.square(np.asarray(limited, np.float64)), win))
    sounding = e_in > 1e-3 * peak
    ratio = np.where(sounding, e_out / np.maximum(e_in, 1e-12), 0.0)
    makeup = float(np.percentile(ratio[sounding], 99)) if sounding.any() else 1.0
    gain = np.where(sounding, ratio / max(makeup, 1e-12), 1.0)
    return uniform_filter1d(np.clip(gain, 1e-3, 1.0), win)
