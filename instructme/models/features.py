"""Fixed spectral front ends for the analysis models (chord recognizer, instrument classifier).

Both are a magnitude STFT (``torch.stft``) followed by a fixed, non-trainable filter matrix
and log compression, so they run on any device and are part of the model's forward pass:

- :class:`LogFrequencySpectrogram` — triangular filters centred on equal-tempered pitches
  (``bins_per_semitone`` per semitone), a CQT-like log-frequency spectrogram. It is the input
  of the chord recognizer (InstructME, method: chord conditioning; the chord probability
  matrix comes from a recognizer on the source audio). A transposition by ``k`` semitones is a
  shift of ``k * bins_per_semitone`` rows, which the chord trainer uses for pitch-shift
  augmentation (the filter bank is built ``margin_semitones`` wider on both sides).
- :class:`LogMelSpectrogram` — an HTK mel filter bank (``librosa.filters.mel``) and a
  plain ``log(mel + floor)`` for the instrument/style classifier.

Frame ``i`` is centred on sample ``i * hop`` (``center=True``), so a clip of ``N`` samples
gives ``N // hop + 1`` frames.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
from torch import nn


def log_frequency_filterbank(sample_rate: int, n_fft: int, fmin_midi: float, n_bins: int,
                             bins_per_semitone: int) -> np.ndarray:
    """Triangular filters on a pitch axis: ``[n_fft // 2 + 1, n_bins]`` (float32).

    Filter ``j`` is centred on MIDI pitch ``fmin_midi + j / bins_per_semitone`` and falls to
    zero at its neighbours' centres. Where that is narrower than an FFT bin (low pitches)
    the filter linearly interpolates the two nearest FFT bins instead, so no filter is empty.
    Each filter sums to one.
    """
    n_freq = n_fft // 2 + 1
    fft_hz = np.arange(n_freq) * sample_rate / n_fft
    step = 1.0 / bins_per_semitone
    centres = fmin_midi + np.arange(n_bins) * step
    lo, mid, hi = (librosa.midi_to_hz(c) for c in (centres - step, centres, centres + step))
    if hi[-1] >= sample_rate / 2:
        raise ValueError(f"log-frequency bins reach {hi[-1]:.0f} Hz, above Nyquist")
    up = (fft_hz[:, None] - lo[None]) / (mid - lo)[None]
    down = (hi[None] - fft_hz[:, None]) / (hi - mid)[None]
    fb = np.clip(np.minimum(up, down), 0.0, None)
    for j in np.flatnonzero(fb.sum(axis=0) <= 1e-9):
        pos = mid[j] * n_fft / sample_rate
        k = int(np.floor(pos))
        fb[k, j] += 1.0 - (pos - k)
        if k + 1 < n_freq:
            fb[k + 1, j] += pos - k
    fb /= fb.sum(axis=0, keepdims=True)
    return fb.astype(np.float32)


class _STFTFrontEnd(nn.Module):
    """Magnitude STFT (Hann window) then a fixed ``[F_stft, F_out]`` matrix and ``log1p``."""

    def __init__(self, n_fft: int, hop: int, matrix: np.ndarray, log_gain: float,
                 log_floor: float | None = None) -> None:
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop = int(hop)
        self.log_gain = float(log_gain)
        self.log_floor = log_floor
        # Buffers are derived from the config, so they are not saved in checkpoints.
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("matrix", torch.from_numpy(matrix), persistent=False)

    @property
    def n_out(self) -> int:
        return int(self.matrix.shape[1])

    def num_frames(self, n_samples: int) -> int:
        return n_samples // self.hop + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` float audio -> ``[B, F_out, T]`` with ``T = N // hop + 1``."""
        if x.dim() != 2:
            raise ValueError(f"expected audio of shape [B, N], got {tuple(x.shape)}")
        x = x.float()
        if x.shape[-1] <= self.n_fft // 2:  # reflect padding needs N > n_fft / 2
            x = nn.functional.pad(x, (0, self.n_fft // 2 + 1 - x.shape[-1]))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs()  # [B, F_stft, T]
        out = torch.einsum("bft,fk->bkt", spec, self.matrix)
        if self.log_floor is not None:  # a plain log: a gain is an additive offset
            return torch.log(out + self.log_floor)
        return torch.log1p(self.log_gain * out)


class LogFrequencySpectrogram(_STFTFrontEnd):
    """CQT-like log-frequency spectrogram: ``[B, N] -> [B, n_bins, T]``.

    Covers MIDI pitches ``fmin_midi - margin .. fmin_midi + n_semitones + margin`` (semitones);
    :meth:`crop` selects the central ``n_semitones`` span, optionally shifted.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop: int, fmin_midi: float,
                 n_semitones: int, bins_per_semitone: int, margin_semitones: int = 0,
                 log_gain: float = 100.0) -> None:
        self.bins_per_semitone = int(bins_per_semitone)
        self.margin = int(margin_semitones)
        self.n_core = int(n_semitones) * self.bins_per_semitone
        n_bins = (int(n_semitones) + 2 * self.margin) * self.bins_per_semitone
        fb = log_frequency_filterbank(sample_rate, n_fft, fmin_midi - self.margin, n_bins,
                                      self.bins_per_semitone)
        super().__init__(n_fft, hop, fb, log_gain)

    def crop(self, spec: torch.Tensor, shift_semitones: int = 0) -> torch.Tensor:
        """``[B, n_bins, T] -> [B, n_core, T]``: the pitch window moved up by ``shift``.

        Taking the window ``k`` semitones higher makes the content look ``k`` semitones
        lower (a transposition down by ``k``).
        """
        if abs(shift_semitones) > self.margin:
            raise ValueError(f"shift {shift_semitones} exceeds the margin of {self.margin}")
        start = (self.margin + shift_semitones) * self.bins_per_semitone
        return spec[:, start:start + self.n_core]


class LogMelSpectrogram(_STFTFrontEnd):
    """Log-mel spectrogram (HTK mel scale): ``[B, N] -> [B, n_mels, T]``."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, fmin: float,
                 fmax: float, log_floor: float = 1e-4) -> None:
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                                 fmax=fmax, htk=True, norm="slaney", dtype=np.float64)
        super().__init__(n_fft, hop, np.ascontiguousarray(fb.T, dtype=np.float32), 1.0,
                         log_floor)
