"""Spectrogram PNGs for the studio page (source and result side by side).

The power spectrogram is drawn on a fixed dBFS scale (a full-scale sine is about -3 dB), so
that the source's and the result's pictures can be compared by eye: an instrument that an
edit removes leaves a visibly darker band. Rendered with matplotlib's object API (no pyplot
state), so it is safe to call from several threads.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy.signal import spectrogram

from instructme.audio import resample

#: Colour scale of every picture, in dB relative to full scale.
DB_RANGE = (-100.0, -5.0)
#: Lowest frequency drawn (the axis is logarithmic).
MIN_HZ = 30.0
#: Audio above this rate is resampled to it before drawing (the axis then ends at 24 kHz):
#: the STFT of a minute at 384 kHz would take over a GB.
MAX_DRAW_RATE = 48_000


def power_db(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x: [N]`` -> ``(freqs [F], times [T], power_db [F, T])`` with ~64 ms Hann windows."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio [N], got shape {tuple(x.shape)}")
    n_fft = int(2 ** round(np.log2(max(sample_rate * 0.064, 64))))
    if x.size < n_fft:  # a very short clip: pad so that there is one frame
        x = np.pad(x, (0, n_fft - x.size))
    f, t, s = spectrogram(x, fs=sample_rate, window="hann", nperseg=n_fft,
                          noverlap=n_fft * 3 // 4, scaling="spectrum", mode="psd")
    return f, t, 10.0 * np.log10(np.maximum(s, 1e-12))


def log_frequency_image(f: np.ndarray, db: np.ndarray, rows: int = 256, max_cols: int = 1200
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``db: [F, T]`` (bins at ``f: [F]`` Hz) onto ``rows`` log-spaced bands from
    :data:`MIN_HZ` to the top bin, taking the loudest bin of each band, and max-pool time to
    at most ``max_cols`` columns -> ``(band edges [rows + 1] Hz, image [rows, T'])``."""
    edges = np.geomspace(MIN_HZ, f[-1], rows + 1)
    first = np.searchsorted(f, edges[:-1]).clip(max=len(f) - 1)  # [rows], non-decreasing
    # Band i is max(db[first[i]:first[i+1]]) (the last runs to the top); a band with no bin
    # of its own (low frequencies) repeats the bin above it.
    image = np.maximum.reduceat(db, first, axis=0)
    hop = int(np.ceil(image.shape[1] / max_cols))
    if hop > 1:
        pad = (-image.shape[1]) % hop
        image = np.pad(image, ((0, 0), (0, pad)), mode="edge")
        image = image.reshape(rows, -1, hop).max(axis=2)
    return edges, image


def _draw(ax: Any, x: np.ndarray, sample_rate: int) -> None:
    """Draw the log-frequency spectrogram of ``x: [N]`` into matplotlib axes ``ax`` (at most
    :data:`MAX_DRAW_RATE`)."""
    if sample_rate > MAX_DRAW_RATE:
        x, sample_rate = resample(np.asarray(x, dtype=np.float32), sample_rate,
                                  MAX_DRAW_RATE), MAX_DRAW_RATE
    f, _, db = power_db(x, sample_rate)
    edges, image = log_frequency_image(f, db)
    seconds = max(len(x) / sample_rate, 1e-3)
    lo, hi = np.log10(edges[0]), np.log10(edges[-1])
    ax.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=DB_RANGE[0],
              vmax=DB_RANGE[1], extent=(0.0, seconds, lo, hi), interpolation="nearest")
    ticks = [t for t in (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if t < edges[-1]]
    ax.set_yticks(np.log10(ticks), [f"{t // 1000}k" if t >= 1000 else str(t) for t in ticks])
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("Hz", fontsize=8)
    ax.tick_params(labelsize=7)


def render_png(x: np.ndarray, sample_rate: int, path: str | os.PathLike[str],
               width_px: int = 720, height_px: int = 220) -> None:
    """Write the spectrogram of ``x: [N]`` (mono, ``sample_rate`` Hz) as a PNG at ``path``
    (log-frequency axis from :data:`MIN_HZ`, fixed dBFS colour scale :data:`DB_RANGE`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    _draw(fig.add_axes((0.08, 0.2, 0.91, 0.76)), x, sample_rate)
    fig.savefig(os.fspath(path), format="png", dpi=dpi)


def render_comparison_png(panels: list[tuple[str, np.ndarray]], sample_rate: int,
                          path: str | os.PathLike[str], title: str = "",
                          width_px: int = 900, panel_px: int = 220) -> None:
    """Stack the spectrograms of ``panels`` (``(label, x: [N])``, e.g. before / after) in
    one PNG at ``path``, all on the same dBFS scale and time axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("nothing to draw")
    dpi = 100
    head = 30 if title else 0
    fig = Figure(figsize=(width_px / dpi, (panel_px * len(panels) + head) / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=10)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (label, x) in zip(axes, panels):
        _draw(ax, x, sample_rate)
        ax.set_title(label, fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", dpi=dpi)
