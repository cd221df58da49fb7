"""Held-tone pitch fidelity ("held tones in tune" in ``instructme eval vae``).

A music codec must keep a held note at its pitch. Mel and STFT distances hardly see a wrong
pitch in the bass, where one mel band spans several semitones of a 512-point STFT and a
partial that moved a semitone still lands in a nearby band. This test sends harmonic tones
(six partials, amplitude ``1/k``) at notes from A1 (55 Hz) to A5 (880 Hz) through a codec and
measures, on the middle of each tone, the fraction of the output's energy between 20 Hz and
the top partial plus half a harmonic spacing that lies within ``cents`` (50: a quarter tone
either side, i.e. "heard as the right note") of one of the input's partials. 1 for a
faithful codec (measured values: ``models/vae-medium/README.md``).

Why it exists: the project's VAE decoders are convolutional and the encoder sees only STFT
magnitudes, which do not move while a note is held; the latent then repeats, every latent
frame decodes to the same samples, and the audio repeats every ``hop_length`` samples. A
periodic signal holds only multiples of the frame rate (31.25 Hz), so a held 110 Hz tone
comes back as partials at 62.5, 93.75 and 125 Hz and none at 110. Above ~200 Hz the grid is
finer than a quarter tone and the error is small; in the bass it is a wrong note.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pretty_midi

#: MIDI notes A1, E2, A2, E3, A3, E4, A4, E5, A5 (55-880 Hz).
HELD_TONE_NOTES: tuple[int, ...] = (33, 40, 45, 52, 57, 64, 69, 76, 81)


def harmonic_tone(f0: float, seconds: float, sample_rate: int, partials: int = 6,
                  amplitude: float = 0.3) -> np.ndarray:
    """A held tone ``[N]`` float32: partials ``k f0`` (below Nyquist) with amplitude
    ``1/k``, peak-normalised to ``amplitude``, 20 ms fades at both ends."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, partials + 1)
            if k * f0 < sample_rate / 2)
    x = np.asarray(x, dtype=np.float64)
    fade = min(len(x) // 2, int(0.02 * sample_rate))
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[len(x) - fade:] *= ramp[::-1]
    return (amplitude * x / max(float(np.abs(x).max()), 1e-12)).astype(np.float32)


def in_tune_fraction(est: np.ndarray, f0: float, sample_rate: int, partials: int = 6,
                     cents: float = 50.0, middle: float = 2.0) -> float:
    """Fraction of ``est``'s energy (middle ``middle`` seconds, Hann window) between 20 Hz and
    ``(partials + 0.5) f0`` that lies within ``cents`` of a partial ``k f0``; 0 if silent."""
    n = min(len(est), int(round(middle * sample_rate)))
    start = (len(est) - n) // 2
    seg = np.asarray(est[start:start + n], dtype=np.float64) * np.hanning(n)
    power = np.abs(np.fft.rfft(seg)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    scope = (freqs >= 20.0) & (freqs <= min((partials + 0.5) * f0, sample_rate / 2))
    total = float(power[scope].sum())
    if total <= 0:
        return 0.0
    ratio = 2.0 ** (cents / 1200)
    near = np.zeros_like(scope)
    for k in range(1, partials + 1):
        near |= (freqs >= k * f0 / ratio) & (freqs <= k * f0 * ratio)
    return float(power[scope & near].sum() / total)


def held_tone_scores(codec: Callable[[np.ndarray], np.ndarray], sample_rate: int,
                     notes: Sequence[int] = HELD_TONE_NOTES, seconds: float = 3.0
                     ) -> dict[str, object]:
    """Run each note's tone ``[N]`` through ``codec`` (``[N] -> [N]``); returns
    ``{"in_tune": mean fraction, "per_note": {midi note: fraction}}``."""
    per_note = {}
    for note in notes:
        f0 = float(pretty_midi.note_number_to_hz(note))
        per_note[int(note)] = in_tune_fraction(codec(harmonic_tone(f0, seconds, sample_rate)),
                                               f0, sample_rate)
    return {"in_tune": float(np.mean(list(per_note.values()))), "per_note": per_note}
