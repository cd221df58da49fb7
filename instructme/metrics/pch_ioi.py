"""Pitch-class histogram (PCH) and inter-onset-interval (IOI) similarity.

InstructME (arXiv 2308.14360, Sec. 5) compares the musical content of edited and target
music with the pitch-class and inter-onset-interval distributions, scored by their
OVERLAPPING AREA. Definitions used here (audio, 16 kHz mono, librosa):

- **PCH** ``p: [12]`` (C, C#, ..., B): the CQT power ``|CQT(x)|^2`` (``librosa.cqt``, 36
  bins/octave over 7 octaves from C1 = 32.7 Hz, hop 512, tuning fixed at A440) is folded
  into 12 pitch classes by ``librosa.feature.chroma_cqt(C=power, norm=None)`` ->
  ``chroma: [12, T]``; then ``p_c = sum_t chroma[c, t] / sum_{c,t} chroma[c, t]``. Frames
  are NOT normalised one by one, so each pitch class is weighted by its energy. Sums to 1
  (all zeros for digital silence).
- **IOI** ``q: [B]``: onset times from ``librosa.onset.onset_detect`` (spectral-flux onset
  strength, hop 160 = 10 ms, peak picking, ``units="time"``); IOIs are the differences of
  consecutive onsets; IOIs in ``[IOI_MIN, IOI_MAX) = [0.05 s, 2 s)`` are counted in
  ``IOI_BINS`` = 24 bins with log-spaced edges (``np.geomspace(0.05, 2.0, 25)``: each bin
  is ~16.6 % wide, so tempo-relative jitter moves counts by at most one bin); ``q`` is the
  counts normalised to sum 1 (all zeros when fewer than two onsets).
- **Overlapping area** ``OA(p, q) = sum_i min(p_i, q_i)`` in ``[0, 1]``: 1 for identical
  histograms, 0 for disjoint support. Two empty histograms count as identical (1); one
  empty and one not as disjoint (0).
"""

from __future__ import annotations

import warnings

import librosa
import numpy as np

from instructme.errors import InstructMEError

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
IOI_MIN = 0.05
IOI_MAX = 2.0
IOI_BINS = 24
#: Log-spaced IOI bin edges in seconds, ``[IOI_BINS + 1]``.
IOI_EDGES = np.geomspace(IOI_MIN, IOI_MAX, IOI_BINS + 1)
CHROMA_HOP = 512
ONSET_HOP = 160
#: Below this peak level the clip is treated as digital silence.
SILENCE = 1e-5


def pitch_class_histogram(x: np.ndarray, sr: int) -> np.ndarray:
    """``x: [N]`` mono audio -> energy-weighted pitch-class histogram ``[12]`` (see module doc)."""
    x = _check(x)
    if np.max(np.abs(x)) < SILENCE:
        return np.zeros(12)
    n_octaves = 7
    # Keep the top CQT bin below Nyquist (C1 * 2^7 = 4186 Hz fits 16 kHz audio).
    while n_octaves > 1 and librosa.note_to_hz("C1") * 2.0 ** n_octaves >= sr / 2:
        n_octaves -= 1
    with warnings.catch_warnings():  # short clips: librosa warns about its low-octave FFTs
        warnings.simplefilter("ignore", UserWarning)
        cqt = np.abs(librosa.cqt(x, sr=sr, hop_length=CHROMA_HOP, fmin=librosa.note_to_hz("C1"),
                                 n_bins=n_octaves * 36, bins_per_octave=36, tuning=0.0))
    chroma = librosa.feature.chroma_cqt(C=cqt ** 2, sr=sr, hop_length=CHROMA_HOP, norm=None,
                                        n_octaves=n_octaves, bins_per_octave=36)
    p = chroma.sum(axis=1).astype(np.float64)
    total = p.sum()
    return p / total if total > 0 else np.zeros(12)


def onset_times(x: np.ndarray, sr: int) -> np.ndarray:
    """Onset times in seconds ``[M]`` (librosa spectral-flux onsets, 10 ms hop)."""
    x = _check(x)
    if np.max(np.abs(x)) < SILENCE:
        return np.zeros(0)
    hop = max(1, int(round(ONSET_HOP * sr / 16000)))
    return np.asarray(librosa.onset.onset_detect(y=x, sr=sr, hop_length=hop, units="time",
                                                 backtrack=False), dtype=np.float64)


def ioi_histogram_from_onsets(onsets: np.ndarray) -> np.ndarray:
    """Onset times ``[M]`` -> normalised IOI histogram ``[IOI_BINS]`` on :data:`IOI_EDGES`."""
    onsets = np.sort(np.asarray(onsets, dtype=np.float64))
    iois = np.diff(onsets)
    iois = iois[(iois >= IOI_MIN) & (iois < IOI_MAX)]
    counts, _ = np.histogram(iois, bins=IOI_EDGES)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(IOI_BINS)


def ioi_histogram(x: np.ndarray, sr: int) -> np.ndarray:
    """``x: [N]`` mono audio -> inter-onset-interval histogram ``[IOI_BINS]`` (see module doc)."""
    return ioi_histogram_from_onsets(onset_times(x, sr))


def ioi_bin_centers() -> np.ndarray:
    """Geometric centres of the IOI bins in seconds ``[IOI_BINS]``."""
    return np.sqrt(IOI_EDGES[:-1] * IOI_EDGES[1:])


def overlap_area(p: np.ndarray, q: np.ndarray) -> float:
    """``sum_i min(p_i, q_i)`` of two histograms on the same bins (each sums to 1 or is all 0)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise InstructMEError(f"overlap area: histogram shapes differ ({p.shape} vs {q.shape})")
    if (p < 0).any() or (q < 0).any():
        raise InstructMEError("overlap area: histograms must be non-negative")
    sp, sq = p.sum(), q.sum()
    if sp == 0 and sq == 0:
        return 1.0
    if sp == 0 or sq == 0:
        return 0.0
    return float(np.minimum(p / sp, q / sq).sum())


def pch_similarity(output: np.ndarray, reference: np.ndarray, sr: int) -> float:
    """Overlapping area of the pitch-class histograms of two clips ``[N]``."""
    return overlap_area(pitch_class_histogram(output, sr), pitch_class_histogram(reference, sr))


def ioi_similarity(output: np.ndarray, reference: np.ndarray, sr: int) -> float:
    """Overlapping area of the IOI histograms of two clips ``[N]``."""
    return overlap_area(ioi_histogram(output, sr), ioi_histogram(reference, sr))


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise InstructMEError(f"PCH/IOI expect mono audio [N], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InstructMEError("PCH/IOI: audio contains NaN or infinite samples")
    return x
