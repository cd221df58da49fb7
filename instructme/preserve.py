"""Source-preserving output: keep what the edit did not touch out of the VAE.

The design's fidelity budget (``DESIGN.md``: a VAE round trip as lossy as a 12 kbps codec
eats most of what an add/remove edit changes) asks that untouched material need not pass
through the VAE, and that the edited part can be returned on its own. InstructME
(arXiv 2308.14360) generates the whole target mix; here the generated mix is used as a
*time-frequency guide* for the source instead of as the output:

With ``S = STFT(source)`` and ``G = STFT(generated)`` (model rate, mono, Hann window of
``n_fft`` with hop ``n_fft / 4``) and ``P_X`` the power ``|X|^2`` smoothed over a few
bins and frames (:func:`scipy.ndimage.uniform_filter`)::

    keep  K = clip(sqrt(P_G / P_S), 0, 1)        # where the edit took energy away
    add   A = clip(1 - sqrt(P_S / P_G), 0, 1)    # the part of G that is new energy

and per task (the ``part`` is what the edit removed, extracted or added):

=========  =====================================  ======================================
task       output                                 part
=========  =====================================  ======================================
add        source + iSTFT(A * G)                  iSTFT(A * G)
remove     iSTFT(K * S)                           source - output
extract    iSTFT(K * S)                           output
replace    iSTFT(K * S) + iSTFT(A * G)            iSTFT(A * G) (the new instrument)
remix      generated (everything changes)         none
=========  =====================================  ======================================

``K`` is applied to the user's own audio at its own rate, on every channel: the gains are
interpolated (linearly, in time and frequency) from the model's grid onto each channel's
STFT, and above the model's band (``trust`` x its Nyquist frequency) every bin takes the
mean gain of the top octave the model sees. So a kept instrument keeps its waveform, its
stereo image and its high frequencies; only the added part (mono, model rate) comes from
the VAE, resampled and put on every channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import uniform_filter

from instructme.audio import resample

#: Tasks whose output keeps the source (all but ``remix``).
PRESERVING_TASKS = ("add", "remove", "extract", "replace")
#: STFT size (samples at the model rate; 64 ms at 16 kHz) and smoothing (bins, frames).
N_FFT = 1024
SMOOTH = (3, 5)
#: Model-rate bins above this fraction of the Nyquist frequency are not trusted (resampling
#: filters leave them nearly empty); user bins above it take the top octave's mean gain.
TRUST = 0.875


@dataclass
class Guide:
    """The gains of one edit on the model's grid.

    ``keep``: ``K [F, T]`` (0..1) for the source; ``added``: the new part, mono ``[N]`` at the
    model rate and level (zeros for remove/extract); ``sample_rate``: the model rate.
    """

    keep: np.ndarray
    added: np.ndarray
    sample_rate: int
    n_fft: int = N_FFT

    @property
    def hop(self) -> int:
        return self.n_fft // 4


def _stft(x: np.ndarray, n_fft: int) -> torch.Tensor:
    """``x: [..., N]`` -> complex ``[..., F, T]`` (Hann, hop ``n_fft / 4``, centred)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.stft(t, n_fft, n_fft // 4, window=torch.hann_window(n_fft), center=True,
                      return_complex=True)


def _istft(spec: torch.Tensor, n_fft: int, length: int) -> np.ndarray:
    out = torch.istft(spec, n_fft, n_fft // 4, window=torch.hann_window(n_fft), center=True,
                      length=length)
    return out.numpy().astype(np.float32)


def _smoothed_power(spec: torch.Tensor) -> np.ndarray:
    return uniform_filter(spec.abs().square().numpy().astype(np.float64), size=SMOOTH,
                          mode="nearest")


def guide(source: np.ndarray, generated: np.ndarray, sample_rate: int, task: str,
          n_fft: int = N_FFT) -> Guide:
    """Gains of an edit from ``source`` and ``generated`` (mono ``[N]``, model rate and level).

    ``task``: one of :data:`PRESERVING_TASKS` (``add`` keeps the source whole: ``K = 1``;
    ``remove``/``extract`` add nothing).
    """
    if task not in PRESERVING_TASKS:
        raise ValueError(f"no source-preserving output for task {task!r}")
    n = source.shape[-1]
    gen = generated[:n] if generated.shape[-1] >= n else np.pad(generated,
                                                                (0, n - generated.shape[-1]))
    s, g = _stft(source, n_fft), _stft(gen, n_fft)
    ps, pg = _smoothed_power(s), _smoothed_power(g)
    floor = 1e-10 + 1e-7 * float(max(ps.max(), pg.max()))  # ~ -70 dB below the loudest bin
    keep = np.clip(np.sqrt((pg + floor) / (ps + floor)), 0.0, 1.0)
    if task == "add":
        keep = np.ones_like(keep)
    added = np.zeros(n, dtype=np.float32)
    if task in ("add", "replace"):
        frac = np.clip(1.0 - np.sqrt((ps + floor) / (pg + floor)), 0.0, 1.0)
        added = _istft(g * torch.from_numpy(frac.astype(np.float32)), n_fft, n)
    return Guide(keep.astype(np.float32), added, int(sample_rate), n_fft)


def _interp_axis(values: np.ndarray, src: np.ndarray, dst: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` from positions ``src`` to ``dst``
    (constant beyond the ends)."""
    idx = np.clip(np.searchsorted(src, dst, side="right") - 1, 0, len(src) - 1)
    nxt = np.minimum(idx + 1, len(src) - 1)
    span = np.where(nxt > idx, src[nxt] - src[idx], 1.0)
    w = np.clip((dst - src[idx]) / span, 0.0, 1.0).astype(np.float32)
    a, b = np.take(values, idx, axis=axis), np.take(values, nxt, axis=axis)
    shape = [1] * values.ndim
    shape[axis] = -1
    return a + (b - a) * w.reshape(shape)


def keep_gains_at(g: Guide, sample_rate: int, n_fft: int, frames: int) -> np.ndarray:
    """``K`` resampled onto another STFT grid (``sample_rate``, ``n_fft``, hop ``n_fft/4``,
    ``frames`` centred frames): ``[n_fft // 2 + 1, frames]``."""
    k = g.keep
    f_src = np.arange(k.shape[0]) * g.sample_rate / g.n_fft
    t_src = np.arange(k.shape[1]) * g.hop / g.sample_rate
    f_dst = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    t_dst = np.arange(frames) * (n_fft // 4) / sample_rate
    top = TRUST * g.sample_rate / 2
    trusted = f_src <= top
    k_t = _interp_axis(k[trusted], t_src, t_dst, axis=1)  # [F_trusted, frames]
    out = _interp_axis(k_t, f_src[trusted], f_dst, axis=0)  # [F_dst, frames]
    octave = f_src[trusted] >= top / 2
    out[f_dst > top] = k_t[octave].mean(axis=0)
    return out


def user_n_fft(sample_rate: int, model_rate: int, n_fft: int = N_FFT) -> int:
    """The STFT size at ``sample_rate`` with the same duration as ``n_fft`` at the model
    rate (a multiple of 4)."""
    return max(16, int(round(n_fft * sample_rate / model_rate / 4)) * 4)


def apply_keep(audio: np.ndarray, sample_rate: int, g: Guide) -> np.ndarray:
    """``K * audio`` for user audio ``[C, N]`` at ``sample_rate``: ``[C, N]`` float32."""
    n_fft = user_n_fft(sample_rate, g.sample_rate, g.n_fft)
    n = audio.shape[-1]
    spec = _stft(audio, n_fft)  # [C, F, T]
    k = keep_gains_at(g, sample_rate, n_fft, spec.shape[-1])
    return _istft(spec * torch.from_numpy(k)[None], n_fft, n)


def compose(audio: np.ndarray, sample_rate: int, g: Guide, task: str, gain: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """The source-preserving output and the edited part (see the module table).

    ``audio``: the user's source ``[C, N]`` at ``sample_rate`` and its own level; ``gain``:
    model level / user level (the added part is divided by it). Returns ``(output, part)``,
    both ``[C, N]`` float32 at the user's rate and level.
    """
    c, n = audio.shape
    added = np.zeros((c, n), dtype=np.float32)
    if task in ("add", "replace"):
        a = resample(g.added / np.float32(gain), g.sample_rate, sample_rate)
        a = a[:n] if a.shape[0] >= n else np.pad(a, (0, n - a.shape[0]))
        added = np.repeat(a[None].astype(np.float32), c, axis=0)
    if task == "add":
        return (audio + added).astype(np.float32), added
    kept = apply_keep(audio, sample_rate, g)
    if task == "remove":
        return kept, (audio - kept).astype(np.float32)
    if task == "extract":
        return kept, kept
    return (kept + added).astype(np.float32), added
