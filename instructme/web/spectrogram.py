"""Spectrogram PNGs for the studio page (source and result side by side).

The power spectrogram is drawn on a fixed dBFS scale (a full-scale sine is about -3 dB), so
that the source's and the result's pictures can be compared by eye: an instrument that an
edit removes leaves a visibly darker band. Rendered with matplotlib's object API (no pyplot
state), so it is safe to call from several threads.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.signal import spectrogram

#: Colour scale of every picture, in dB relative to full scale.
DB_RANGE = (-100.0, -5.0)


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


def render_png(x: np.ndarray, sample_rate: int, path: str | os.PathLike[str],
               width_px: int = 720, height_px: int = 220) -> None:
    """Write the spectrogram of ``x: [N]`` (mono, ``sample_rate`` Hz) as a PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    f, t, db = power_db(x, sample_rate)
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.07, 0.2, 0.92, 0.76))
    seconds = len(x) / sample_rate
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=DB_RANGE[0],
              vmax=DB_RANGE[1], extent=(0.0, max(seconds, 1e-3), 0.0, f[-1] / 1000.0),
              interpolation="nearest")
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("kHz", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.savefig(os.fspath(path), format="png", dpi=dpi)
