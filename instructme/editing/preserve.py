"""Source-preserving output: keep what the edit did not touch out of the VAE.

A VAE round trip is about as lossy as a low-bitrate codec, which would eat most of what an
add/remove edit changes (the fidelity budget of ``docs/ARCHITECTURE.md``); so untouched
material need not pass through the VAE, and the edited part can be returned on its own.
InstructME (arXiv 2308.14360) generates the whole target mix; here the generated mix is used
as a *time-frequency guide* for the source instead of as the output.

With ``R = STFT(reference)`` and ``G = STFT(generated)`` (model rate, mono ``[N']``, Hann
window of ``n_fft`` with hop ``n_fft / 4``: ``[F, T]``) and ``P_X`` the power ``|X|^2``
smoothed over :data:`SMOOTH` bins and frames (:func:`scipy.ndimage.uniform_filter`)::

    keep  K = clip(sqrt(P_G / P_R), 0, 1)            # where the edit took energy away
    add   A = clip(1 - a * sqrt(P_R / P_G), 0, 1)    # the part of G that is new energy

The reference is the VAE's own round trip of the source, not the source itself: the
generated mix has been through the VAE's decoder, so comparing it with the source would
read the VAE's smearing (weaker harmonics, noisy bass) as an edit and attenuate untouched
instruments. ``a`` = :data:`ADD_TOLERANCE` (< 1) also keeps a little of the generated mix
where it overlaps the source, so that an added instrument is heard where it shares bands
with the music. :class:`~instructme.editing.pipeline.EditPipeline` keeps the source only for
:data:`PRESERVING_TASKS` (an extract returns the generated mix); :func:`guide` also does
extract. Per task (``S``: the source's STFT; the ``part`` is what the edit removed,
extracted or added):

=========  =====================================  ======================================
task       output                                 part
=========  =====================================  ======================================
add        source + iSTFT(A * G)                  iSTFT(A * G)
remove     iSTFT(K * S)                           source - output
extract    iSTFT(K * S)                           output
replace    iSTFT(K * S) + iSTFT(A * G)            iSTFT(A * G) (the new instrument)
remix      generated (everything changes)         none
=========  =====================================  ======================================

``K`` is applied to the user's own audio ``[C, N]`` at its own rate, on every channel (one
at a time, to bound memory): the gains are interpolated (linearly, in time and frequency)
from the model's grid onto each channel's STFT, and above the model's band (:data:`TRUST` x
its Nyquist frequency) every bin takes the mean gain of the top octave the model sees. So a
kept instrument keeps its waveform, its stereo image and its high frequencies; only the
added part (mono, model rate) comes from the VAE, resampled and put on every channel.

The measurements behind these choices (reference, tolerance, which tasks keep the source)
and the cost on a whole song are in the model card, ``models/instructme-small/README.md``
("Editing pipeline measurements").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import uniform_filter

from instructme.audio import resample

#: Tasks whose pipeline output keeps the source (see the module docstring for extract).
PRESERVING_TASKS = ("add", "remove", "replace")
#: Tasks :func:`guide` can do.
GUIDED_TASKS = ("add", "remove", "extract", "replace")
#: STFT size (samples at the model rate; 64 ms at 16 kHz), smoothing (bins, frames) and the
#: tolerance ``a`` of the added part (module docstring).
N_FFT = 1024
SMOOTH = (9, 9)
ADD_TOLERANCE = 0.7
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


def guide(reference: np.ndarray, generated: np.ndarray, sample_rate: int, task: str,
          n_fft: int = N_FFT) -> Guide:
    """Gains of an edit from ``reference`` (the VAE's round trip of the source) and
    ``generated`` (mono ``[N]``, model rate and level).

    ``task``: one of :data:`GUIDED_TASKS` (``add`` keeps the source whole: ``K = 1``;
    ``remove``/``extract`` add nothing).
    """
    if task not in GUIDED_TASKS:
        raise ValueError(f"no source-preserving output for task {task!r}")
    n = reference.shape[-1]
    gen = generated[:n] if generated.shape[-1] >= n else np.pad(generated,
                                                                (0, n - generated.shape[-1]))
    s, g = _stft(reference, n_fft), _stft(gen, n_fft)
    ps, pg = _smoothed_power(s), _smoothed_power(g)
    floor = 1e-10 + 1e-7 * float(max(ps.max(), pg.max()))  # ~ -70 dB below the loudest bin
    keep = np.clip(np.sqrt((pg + floor) / (ps + floor)), 0.0, 1.0)
    if task == "add":
        keep = np.ones_like(keep)
    added = np.zeros(n, dtype=np.float32)
    if task in ("add", "replace"):
        frac = np.clip(1.0 - ADD_TOLERANCE * np.sqrt((ps + floor) / (pg + floor)), 0.0, 1.0)
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


def _smooth(n: int) -> bool:
    """Whether ``n`` has no prime factor above 5 (FFT sizes that pocketfft runs fast)."""
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def user_n_fft(sample_rate: int, model_rate: int, n_fft: int = N_FFT) -> int:
    """The STFT size at ``sample_rate`` closest to the duration of ``n_fft`` at the model
    rate among multiples of 4 without prime factors above 5 (44.1 kHz: 2880, not 2824 =
    8 x 353, whose FFT is twice as slow)."""
    exact = n_fft * sample_rate / model_rate
    base = max(4, int(round(exact / 4)) * 4)
    for step in range(0, base, 4):
        for cand in (base - step, base + step):
            if cand >= 16 and _smooth(cand):
                return cand
    return max(16, base)


def apply_keep(audio: np.ndarray, sample_rate: int, g: Guide) -> np.ndarray:
    """``K * audio`` for user audio ``[C, N]`` at ``sample_rate``: ``[C, N]`` float32."""
    n_fft = user_n_fft(sample_rate, g.sample_rate, g.n_fft)
    n = audio.shape[-1]
    k = torch.from_numpy(keep_gains_at(g, sample_rate, n_fft, n // (n_fft // 4) + 1))
    out = np.empty_like(audio, dtype=np.float32)
    for c in range(audio.shape[0]):  # one channel at a time: a long song's STFT is large
        spec = _stft(audio[c], n_fft)  # [F, T]
        spec *= k
        out[c] = _istft(spec, n_fft, n)
    return out


def compose(audio: np.ndarray, sample_rate: int, g: Guide, task: str, gain: float,
            kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The source-preserving output and the edited part (see the module table).

    ``audio``: the user's source ``[C, N]`` at ``sample_rate`` and its own level; ``gain``:
    model level / user level (the added part is divided by it); ``kept``: what stays of the
    source ``[C, N]`` when something better than ``K * audio`` has it (a replace whose old
    instrument the stem separator removed). Returns ``(output, part)``, both ``[C, N]``
    float32 at the user's rate and level.
    """
    c, n = audio.shape
    added = np.zeros((c, n), dtype=np.float32)
    if task in ("add", "replace"):
        a = resample(g.added / np.float32(gain), g.sample_rate, sample_rate)
        a = a[:n] if a.shape[0] >= n else np.pad(a, (0, n - a.shape[0]))
        added = np.repeat(a[None].astype(np.float32), c, axis=0)
    if task == "add":
        return (audio + added).astype(np.float32), added
    if kept is None:
        kept = apply_keep(audio, sample_rate, g)
    if task == "remove":
        return kept, (audio - kept).astype(np.float32)
    if task == "extract":
        return kept, kept
    return (kept + added).astype(np.float32), added
