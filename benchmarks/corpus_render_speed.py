"""Corpus loading and stem rendering speed on one core.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/corpus_render_speed.py [--pieces 30]

Prints seconds per piece for ``load_corpus_song`` (music21 parse + notes + chord slices + key)
and, for reference, for music21's parse alone and its ``chordify`` (which the loader no longer
calls: it slices the notes itself, ~2x faster overall with identical labels), for Bach chorales
and for other corpus works; then rendered
stem-seconds per wall-second for ``render_part`` (fresh synth per stem, float output) and, on
the same parts, for pretty_midi's ``Instrument.fluidsynth`` (also a fresh synth per stem).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _time_loads(paths: list[str], max_seconds: float) -> tuple[float, float, float, list]:
    from music21 import corpus

    from instructme.music.corpus import load_corpus_song

    t_parse = t_chordify = t_total = 0.0
    songs = []
    for i, p in enumerate(paths):
        t0 = time.perf_counter()
        score = corpus.parse(p, forceSource=True)
        t1 = time.perf_counter()
        score.chordify()
        t2 = time.perf_counter()
        songs.append(load_corpus_song(p, seed=i, max_seconds=max_seconds))
        t3 = time.perf_counter()
        t_parse += t1 - t0
        t_chordify += t2 - t1
        t_total += t3 - t2
    n = max(1, len(paths))
    return t_parse / n, t_chordify / n, t_total / n, songs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=30, help="chorales (and other works) to time")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    args = ap.parse_args()

    from instructme.dataset.render import DEFAULT_SOUNDFONT, render_part
    from instructme.music.corpus import list_corpus_pieces

    t0 = time.perf_counter()
    pieces = list_corpus_pieces(seed=0)
    print(f"list_corpus_pieces: {len(pieces)} pieces in {time.perf_counter() - t0:.2f} s "
          "(first call, metadata only)")
    chorales = [p for p in pieces if p.startswith("bach/")][: args.pieces]
    others = [p for p in pieces if not p.startswith("bach/")][: max(1, args.pieces // 3)]
    _time_loads(chorales[:1], args.max_seconds)  # warm-up: imports
    for label, paths in (("chorales", chorales), ("other works", others)):
        parse, chordify, total, songs = _time_loads(paths, args.max_seconds)
        music = sum(s.duration for s in songs)
        print(f"{label:12s} n={len(paths):3d}: load_corpus_song {total:.3f} s per piece "
              f"(music21 parse alone {parse:.3f} s, chordify {chordify:.3f} s) "
              f"({music / max(total * len(paths), 1e-9):.0f} s of music per second)")

    _, _, _, chorale_songs = _time_loads(chorales[:6], args.max_seconds)
    parts = [(p, s.duration) for s in chorale_songs for p in s.parts]
    stem_seconds = sum(d for _, d in parts)

    t0 = time.perf_counter()
    ours = [render_part(p, d) for p, d in parts]
    t_ours = time.perf_counter() - t0
    print(f"render_part:            {stem_seconds:7.0f} stem-s in {t_ours:6.2f} s = "
          f"{stem_seconds / t_ours:7.1f} stem-s per wall-s ({len(parts)} stems)")

    t0 = time.perf_counter()
    theirs = []
    for p, d in parts:
        y = p.to_pretty_midi().fluidsynth(fs=16_000, synthesizer=DEFAULT_SOUNDFONT)
        n = round(d * 16_000)
        y = np.pad(y, (0, max(0, n - len(y))))[:n] / 32768.0  # int16-scale floats
        theirs.append(y.astype(np.float32))
    t_pm = time.perf_counter() - t0
    print(f"pretty_midi.fluidsynth: {stem_seconds:7.0f} stem-s in {t_pm:6.2f} s = "
          f"{stem_seconds / t_pm:7.1f} stem-s per wall-s")
    same = np.mean([np.array_equal(a, render_part(p, d)) for a, (p, d) in zip(ours[:4], parts)])
    print(f"render_part bit-identical on re-render: {same:.0%}")


if __name__ == "__main__":
    main()
