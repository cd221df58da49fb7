"""FluidSynth stem rendering, stem balance and activity masks (instructme.dataset.render)."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.dataset.render import (
    DEFAULT_SOUNDFONT,
    active_rms,
    activity,
    balance_stems,
    check_synth,
    match_level,
    render_part,
)
from instructme.errors import DependencyError, InstructMEError
from instructme.music.score import Note, Part

SR = 16_000

pytestmark = pytest.mark.skipif(
    not __import__("os").path.isfile(DEFAULT_SOUNDFONT), reason="GM soundfont not installed")


def _part(program: int = 0, notes=None, is_drum: bool = False, role: str = "voice") -> Part:
    if notes is None:
        notes = [Note(69, 0.1, 0.6, 100)]
    return Part("p", program, "piano", role, list(notes), is_drum)


def test_exact_length_and_deterministic():
    part = _part(73, [Note(60, 0.0, 0.4), Note(64, 0.3, 0.9), Note(67, 0.5, 1.3)])
    for duration in (1.0, 1.23456, 0.5):
        a = render_part(part, duration)
        assert a.dtype == np.float32 and a.shape == (round(duration * SR),)
    a, b = render_part(part, 1.5), render_part(part, 1.5)
    assert np.array_equal(a, b)  # bit-identical, fresh synth each time


def test_note_sounds_at_its_pitch_and_time():
    x = render_part(_part(0, [Note(69, 0.5, 1.0, 100)]), 2.0)
    assert np.abs(x[: int(0.49 * SR)]).max() < 1e-5  # silent before the note-on
    seg = x[int(0.55 * SR): int(0.95 * SR)].astype(np.float64)
    assert np.sqrt(np.mean(seg ** 2)) > 1e-3
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    f0 = np.fft.rfftfreq(len(seg), 1 / SR)[np.argmax(spec)]
    assert abs(f0 - 440.0) < 10.0 or abs(f0 - 880.0) < 20.0
    assert np.abs(x[-10:]).max() < np.abs(seg).max() * 0.05  # decayed + end fade


def test_empty_part_is_silent_and_drums_render():
    assert not render_part(_part(notes=[]), 1.0).any()
    kit = [Note(36, 0.0, 0.1), Note(38, 0.25, 0.35), Note(42, 0.5, 0.55)]
    d = render_part(Part("drums", 0, "drums", "drums", kit, is_drum=True), 1.0)
    assert np.abs(d).max() > 1e-3
    # channel 9 is a kit: a bass drum and a snare differ from a piano playing keys 36 and 38
    p = render_part(Part("piano", 0, "piano", "comp", kit), 1.0)
    assert not np.allclose(d, p, atol=1e-3)


def test_notes_past_duration_are_cut_and_bad_args():
    x = render_part(_part(notes=[Note(60, 0.0, 5.0), Note(62, 3.0, 4.0)]), 1.0)
    assert x.shape == (SR,)
    with pytest.raises(InstructMEError):
        render_part(_part(), 0.0)
    with pytest.raises(InstructMEError):
        render_part(_part(), 1.0, sample_rate=100)


def test_missing_soundfont_is_dependency_error(tmp_path):
    with pytest.raises(DependencyError, match="apt-get install fluidsynth"):
        check_synth(str(tmp_path / "missing.sf2"))
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(DependencyError, match="is not a valid SoundFont .*sf2 or .sf3"):
        check_synth(str(bad))
    with pytest.raises(DependencyError):
        render_part(_part(), 1.0, soundfont=str(tmp_path / "missing.sf2"))
    check_synth(DEFAULT_SOUNDFONT)


def _stems(rng, n=16_000):
    t = np.arange(n) / SR
    return {
        "drums": (0.5 * np.sign(np.sin(2 * np.pi * 2 * t)) * (rng.random(n) < 0.3)),
        "bass": 0.9 * np.sin(2 * np.pi * 55 * t),
        "pad": 0.01 * np.sin(2 * np.pi * 330 * t),
        "melody": np.where(t < 0.25, 0.2 * np.sin(2 * np.pi * 660 * t), 0.0),
        "silent": np.zeros(n),
    }


def test_balance_keeps_mix_and_headroom():
    rng = np.random.default_rng(0)
    stems = {k: v.astype(np.float32) for k, v in _stems(rng).items()}
    roles = {"drums": "drums", "bass": "bass", "pad": "pad", "melody": "melody",
             "silent": "voice"}
    out = balance_stems(stems, roles, np.random.default_rng(1))
    assert set(out) == set(stems) and all(x.dtype == np.float32 for x in out.values())
    mix = np.sum(list(out.values()), axis=0, dtype=np.float32)
    peak_db = 20 * np.log10(np.abs(mix).max())
    assert -3.5 < peak_db <= -3.0
    assert not out["silent"].any()
    lv = {k: 20 * np.log10(active_rms(out[k], SR)) for k in ("drums", "bass", "pad", "melody")}
    assert lv["pad"] < lv["bass"] - 3 and lv["pad"] < lv["melody"] - 3  # roles, not inputs
    assert abs(lv["melody"] - lv["bass"]) < 3.5  # short melody is not quieter for being short
    again = balance_stems(stems, roles, np.random.default_rng(1))
    assert all(np.array_equal(again[k], out[k]) for k in out)
    assert stems["bass"].max() == pytest.approx(0.9, abs=1e-6)  # inputs untouched


def test_match_level_and_length_mismatch():
    rng = np.random.default_rng(0)
    ref = (0.3 * rng.standard_normal(8000)).astype(np.float32)
    x = (0.01 * rng.standard_normal(8000)).astype(np.float32)
    y = match_level(x, ref)
    assert active_rms(y) == pytest.approx(active_rms(ref), rel=1e-4)
    with pytest.raises(InstructMEError):
        balance_stems({"a": np.zeros(10), "b": np.zeros(11)}, {}, rng)


def test_activity_mask():
    x = np.zeros(int(2.05 * SR), dtype=np.float32)
    x[int(0.5 * SR): SR] = 0.1 * np.sin(np.arange(SR // 2) * 0.3)
    x[int(1.5 * SR): int(1.6 * SR)] = 1e-4  # -80 dBFS: not sounding
    m = activity(x, SR, hop_seconds=0.1)
    assert m.dtype == bool and m.shape == (21,)
    assert m[5:10].all() and not m[:5].any() and not m[10:].any()
    assert activity(x, SR, threshold_db=-90.0)[15]
    with pytest.raises(InstructMEError):
        activity(np.zeros((2, 10)), SR)


def test_rendered_chorale_matches_its_chord_labels():
    """Integration: the chord tones of every labelled beat carry more energy in the rendered
    mix than the other pitch classes (times in the score and in the audio agree)."""
    import mir_eval

    from instructme.music.corpus import load_corpus_song

    song = load_corpus_song("bach/bwv269", seed=1, max_seconds=12.0)
    stems = {p.name: render_part(p, song.duration) for p in song.parts}
    out = balance_stems(stems, {p.name: p.role for p in song.parts}, np.random.default_rng(0))
    mix = np.sum(list(out.values()), axis=0)
    n, hop = 4096, 1024
    frames = np.lib.stride_tricks.sliding_window_view(mix, n)[::hop] * np.hanning(n)
    spec = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    band = (freqs > 60) & (freqs < 2000)
    pcs = np.round(12 * np.log2(freqs[band] / 440.0) + 9).astype(int) % 12
    chroma = np.stack([spec[:, band][:, pcs == k].sum(1) for k in range(12)], axis=1)
    times = (np.arange(len(spec)) * hop + n / 2) / SR
    checked = 0
    for seg in song.chords:
        inside = (times >= seg.start) & (times < seg.end)
        if seg.label == "N" or not inside.any():
            continue
        root, bits, _ = mir_eval.chord.encode(seg.label)
        tones = np.roll(bits, root) > 0
        c = chroma[inside].mean(0)
        assert c[tones].mean() > c[~tones].mean(), seg
        checked += 1
    assert checked >= 8
