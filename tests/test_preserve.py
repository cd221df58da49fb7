"""Source-preserving output (instructme.editing.preserve): gains from a generated mix applied to the
user's audio, on synthetic two-instrument cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.editing.preserve import (
    ADD_TOLERANCE,
    N_FFT,
    apply_keep,
    compose,
    guide,
    keep_gains_at,
    user_n_fft,
)

SR = 16_000


def sine(freq: float, seconds: float = 2.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def band_db(x: np.ndarray, freq: float, sr: int = SR) -> float:
    """Level (dB) of the spectrum of ``x: [N]`` within 3 % of ``freq``."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1])))
    f = np.fft.rfftfreq(x.shape[-1], 1 / sr)
    return 20 * np.log10(spec[np.abs(f - freq) < 0.03 * freq].max() + 1e-9)


def test_remove_keeps_the_rest_and_returns_the_removed_part():
    low, high = sine(330), sine(2000)
    src = low + high
    g = guide(src, low, SR, "remove")  # the edit took the 2 kHz "instrument" away
    out, part = compose(src[None], SR, g, "remove", gain=1.0)
    assert out.shape == part.shape == (1, src.shape[0])
    assert band_db(out[0], 2000) < band_db(src, 2000) - 25  # removed
    assert abs(band_db(out[0], 330) - band_db(src, 330)) < 0.5  # kept as it was
    np.testing.assert_allclose(out + part, src[None], atol=1e-5)  # nothing is lost
    assert band_db(part[0], 2000) > band_db(part[0], 330) + 25


def test_extract_output_is_the_part():
    low, high = sine(330), sine(2000)
    g = guide(low + high, high, SR, "extract")
    out, part = compose((low + high)[None], SR, g, "extract", gain=1.0)
    assert np.array_equal(out, part)
    assert band_db(out[0], 330) < band_db(low, 330) - 25
    assert abs(band_db(out[0], 2000) - band_db(high, 2000)) < 0.5


def test_add_leaves_the_source_intact_and_adds_the_new_part():
    src, new = sine(330), sine(1200, amp=0.2)
    g = guide(src, src + new, SR, "add")
    assert np.all(g.keep == 1.0)
    out, part = compose(src[None], SR, g, "add", gain=2.0)
    np.testing.assert_allclose(out - part, src[None], atol=1e-6)  # the source, bit for bit
    # the added part is the new tone, at the user's level (model level / gain)
    assert abs(band_db(part[0], 1200) - band_db(new / 2.0, 1200)) < 1.0
    # where the generated mix only repeats the source, 1 - ADD_TOLERANCE of it is added
    expect = 20 * np.log10(1 - ADD_TOLERANCE) + band_db(src / 2.0, 330)
    assert abs(band_db(part[0], 330) - expect) < 1.5


def test_replace_swaps_one_tone_for_another():
    keep, old, new = sine(220), sine(2000), sine(900)
    g = guide(keep + old, keep + new, SR, "replace")
    out, part = compose((keep + old)[None], SR, g, "replace", gain=1.0)
    assert band_db(out[0], 2000) < band_db(old, 2000) - 20
    assert abs(band_db(out[0], 900) - band_db(new, 900)) < 1.5
    # kept, plus 1 - ADD_TOLERANCE of the generated copy (here in phase: at most +2.3 dB)
    assert 0 <= band_db(out[0], 220) - band_db(keep, 220) < 20 * np.log10(2 - ADD_TOLERANCE) + 0.1
    assert band_db(part[0], 900) > band_db(part[0], 220) + 8


def test_gains_on_another_rate_and_channels():
    """A 44.1 kHz stereo source: each channel is masked with the model-rate gains, and bins
    above the model's band take the gain of the top octave it sees."""
    sr = 44_100
    low, mid = sine(330), sine(2000)
    g = guide(low + mid, low, SR, "remove")  # at the model rate
    user = np.stack([sine(330, sr=sr) + sine(2000, sr=sr),
                     0.5 * sine(330, sr=sr) + sine(12_000, sr=sr)])
    out = apply_keep(user, sr, g)
    assert out.shape == user.shape
    assert band_db(out[0], 2000, sr) < band_db(user[0], 2000, sr) - 20
    assert abs(band_db(out[0], 330, sr) - band_db(user[0], 330, sr)) < 0.5
    assert abs(band_db(out[1], 330, sr) - band_db(user[1], 330, sr)) < 0.5  # its own level
    # nothing happened in the model's top octave (4-7 kHz), so 12 kHz is kept
    assert abs(band_db(out[1], 12_000, sr) - band_db(user[1], 12_000, sr)) < 1.0


def test_keep_gains_on_the_model_grid_are_unchanged():
    g = guide(sine(330) + sine(2000), sine(330), SR, "remove")
    k = keep_gains_at(g, SR, N_FFT, g.keep.shape[1])
    trusted = np.arange(k.shape[0]) * SR / N_FFT <= 0.875 * SR / 2
    np.testing.assert_allclose(k[trusted], g.keep[trusted], atol=1e-6)
    assert user_n_fft(SR, SR) == N_FFT


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000,
                                  7_999, 44_101])
def test_user_stft_sizes_last_as_long_and_are_fast(rate: int) -> None:
    n = user_n_fft(rate, SR)
    assert n % 4 == 0 and abs(n / rate - N_FFT / SR) / (N_FFT / SR) < 0.05
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    assert n == 1  # no prime factor above 5
    assert user_n_fft(44_100, SR) == 2880


def test_remix_has_no_preserving_output():
    with pytest.raises(ValueError, match="remix"):
        guide(sine(330), sine(440), SR, "remix")


def test_generated_shorter_than_source_is_padded():
    g = guide(sine(330, 2.0), sine(330, 1.5), SR, "remove")
    out, _ = compose(sine(330, 2.0)[None], SR, g, "remove", gain=1.0)
    assert out.shape == (1, 2 * SR) and np.isfinite(out).all()
    # where the generated mix is silent the source is removed
    assert np.abs(out[0, int(1.7 * SR):int(1.95 * SR)]).max() < 0.02 * np.abs(out[0, :SR]).max()
