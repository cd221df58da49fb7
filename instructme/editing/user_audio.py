"""The user's audio in and out of the editing pipeline (:class:`UserAudio`), for clips and
whole songs.

InstructME (arXiv 2308.14360, Method: "Chunk Transformer") edits a whole song in one pass:
the chunked attention of the U-Net is linear in length, and here every other stage is too
(the VAE is fully convolutional and the chord recognizer a CNN + GRU), so no hard cuts are
made anywhere. This module converts between what a user hands in (any sample rate, mono or
up to 8 channels, any level) and what the models take (mono ``[N]`` at the model rate, at
the level of the training mixes), and back.

**Level.** Training mixes are sums of balanced stems with the song's peak at -3 dBFS
(:data:`instructme.dataset.render.MIX_PEAK_DB`); the input is scaled to that same peak before
editing, and the output is scaled back by the inverse gain (so it keeps the input's level),
then made peak-safe.

**Channels.** The models are mono. Stereo (or multichannel) input is edited as its mono
downmix and the edit is returned on every channel: keeping the side signal (mid/side) would
leave a hard-panned instrument the user asked to remove or replace audible in the output, and
an extracted part would carry the rest of the mix in its side signal. So the output has the
input's channel count and layout but no stereo image.

**Layout.** A 1-D array is mono ``[N]``. A 2-D array is channels-first ``[C, N]`` (as
:func:`instructme.audio.load` with ``mono=False`` gives) when ``C <= 8``, otherwise
channels-last ``[N, C]`` (as ``soundfile.read`` gives); the output has the same layout.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from instructme.audio import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, peak_safe, resample
from instructme.errors import AudioError

#: Peak of the model's input mixes (dBFS), as in the training data (``MIX_PEAK_DB``).
MODEL_PEAK_DB = -3.0
#: An input whose peak is below this (dBFS) is treated as silence and refused.
SILENCE_DB = -80.0
#: Shortest input edited (seconds): below it there is no music to edit.
MIN_SECONDS = 0.5
#: Longest input edited in one pass (seconds).
MAX_SECONDS = 20 * 60.0


def _as_channels_first(audio: np.ndarray) -> tuple[np.ndarray, str]:
    """``audio`` -> ``([C, N], layout)``; see the module docstring for the rules."""
    x = np.asarray(audio)
    if x.ndim == 1:
        return x[None], "mono"
    if x.ndim != 2:
        raise AudioError(f"audio must be [N], [C, N] or [N, C], got shape {x.shape}")
    if x.shape[0] <= MAX_CHANNELS:
        return x, "cn"
    if x.shape[1] <= MAX_CHANNELS:
        return x.T, "nc"
    raise AudioError(f"audio has {min(x.shape)} channels (at most {MAX_CHANNELS} are supported)")


def check(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, str]:
    """Validate user audio; returns ``(float32 [C, N], layout)``.

    Raises :class:`~instructme.errors.AudioError` (one line) for a bad rate, shape, dtype,
    NaN/inf samples, too short or too long input, or silence.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioError(f"sample rate must be an integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"absurd sample rate {sample_rate} Hz "
                         f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})")
    arr = np.asarray(audio)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise AudioError(f"audio must be numeric samples, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):  # PCM integers -> [-1, 1]
        arr = arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    x, layout = _as_channels_first(arr)
    n = x.shape[1]
    if n == 0:
        raise AudioError("audio is empty (zero samples)")
    seconds = n / sample_rate
    if seconds < MIN_SECONDS:
        raise AudioError(f"audio is too short ({seconds:.2f} s; at least {MIN_SECONDS} s)")
    if seconds > MAX_SECONDS:
        raise AudioError(f"audio is too long ({seconds / 60:.1f} min; at most "
                         f"{MAX_SECONDS / 60:.0f} min in one pass): cut it into parts")
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    x = x.astype(np.float32, copy=False)
    if float(np.abs(x.mean(axis=0)).max()) < 10.0 ** (SILENCE_DB / 20.0):
        raise AudioError(f"audio is silent (peak below {SILENCE_DB:.0f} dBFS): nothing to edit")
    return x, layout


def limit_source(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Scale a model-side mix ``x: [N']`` down (never up) to the training peak before it is
    edited again (multi-round); returns ``(x, scale)``."""
    limit = 10.0 ** (MODEL_PEAK_DB / 20.0)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak <= limit:
        return x, 1.0
    scale = limit / peak
    return (x * np.float32(scale)).astype(np.float32), scale


@dataclass(frozen=True)
class UserAudio:
    """The user's audio as the source of one edit round, and the way to the models and back.

    ``audio``: float32 ``[C, N]`` at ``sample_rate`` and the user's level (round 1: the
    checked input; later rounds: the previous round's output). ``model``: what the models
    edit, mono float32 ``[N']`` at ``model_rate``, at ``gain`` times the user's level (the
    training level). ``layout``: the input's array layout (module docstring), given back.
    """

    audio: np.ndarray
    sample_rate: int
    layout: str  # "mono" ([N]), "cn" ([C, N]) or "nc" ([N, C])
    model: np.ndarray
    model_rate: int
    gain: float

    @classmethod
    def from_user(cls, audio: np.ndarray, sample_rate: int, model_rate: int) -> UserAudio:
        """:func:`check` the input (``[N]``, ``[C, N]`` or ``[N, C]``) and make its model
        side: the mono downmix scaled to the training peak, resampled to ``model_rate``."""
        x, layout = check(audio, sample_rate)
        mono = x.mean(axis=0)
        gain = 10.0 ** (MODEL_PEAK_DB / 20.0) / float(np.abs(mono).max())
        mono = resample(mono * np.float32(gain), int(sample_rate), model_rate)
        return cls(x, int(sample_rate), layout, np.ascontiguousarray(mono, dtype=np.float32),
                   int(model_rate), gain)

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[1])

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def from_model(self, y: np.ndarray) -> np.ndarray:
        """Model output ``y: [N']`` (model rate and level) -> the user's rate and level on
        every channel, exactly the source's length: ``[C, N]`` float32 (not yet peak-safe)."""
        out = resample(np.asarray(y, dtype=np.float32) / np.float32(self.gain),
                       self.model_rate, self.sample_rate)
        n = self.num_samples
        out = out[:n] if out.shape[0] >= n else np.pad(out, (0, n - out.shape[0]))
        return np.repeat(out[None], self.channels, axis=0)

    def to_layout(self, audio: np.ndarray, safe: bool = True) -> np.ndarray:
        """User-rate audio ``[C, N]`` -> the input's layout (``[N]``, ``[C, N]`` or
        ``[N, C]``), float32, non-finite samples zeroed and (``safe``) made peak-safe."""
        out = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0, posinf=0.0,
                            neginf=0.0)
        if safe:
            out = peak_safe(out)
        if self.layout == "mono":
            return np.ascontiguousarray(out[0], dtype=np.float32)
        return np.ascontiguousarray(out if self.layout == "cn" else out.T, dtype=np.float32)

    def next_round(self, output: np.ndarray, generated: np.ndarray | None) -> UserAudio:
        """The next round's source: ``output`` (``[C, N]``, this round's result at the
        user's rate and level). Its model side is ``generated`` (``[N']``, when the output is
        the generated mix) or else the output's downmix brought to the model's rate and level;
        either is limited to the training peak (:func:`limit_source`)."""
        y = generated
        if y is None:
            y = resample(output.mean(axis=0), self.sample_rate, self.model_rate) * self.gain
        x, scale = limit_source(y)
        return dataclasses.replace(self, audio=output, model=x, gain=self.gain * scale)
