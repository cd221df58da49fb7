"""Audio crops for VAE training and evaluation, read straight from a dataset folder.

The VAE (InstructME's latent space, arXiv 2308.14360, VAE E/D) must represent both full mixes
(the editor's sources and targets) and single stems (what "extract" produces), so training
crops are drawn from both. A song's mix is the sum of its non-variant stems (exact by
construction of ``instructme data build``). Splits follow the manifests: a song belongs to the
split whose ``manifests/<split>.jsonl`` names it, so train and test songs never overlap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from instructme.dataset.audio_folder import AudioFile
from instructme.dataset.folder import SPLITS, read_song, read_text, song_dir, stem_path
from instructme.errors import ManifestError


@dataclass
class SongStems:
    """Where one song's audio lives: ``mix`` stems (non-variant) and ``stems`` (all of them)."""

    song_id: str
    mix: list[Path]
    stems: list[Path]
    frames: int
    sample_rate: int


def split_songs(data_dir: str | Path, split: str) -> list[str]:
    """Song ids named by ``manifests/<split>.jsonl`` (sorted, unique)."""
    if split not in SPLITS:
        raise ManifestError(f"unknown split {split!r} (use one of {', '.join(SPLITS)})")
    path = Path(data_dir) / "manifests" / f"{split}.jsonl"
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (is {data_dir} a dataset folder?)")
    songs: set[str] = set()
    for i, line in enumerate(read_text(path, "manifest").splitlines(), 1):
        if not line.strip():
            continue
        try:
            songs.add(str(json.loads(line)["song"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ManifestError(f"{path}:{i}: not a triplet record with a 'song'") from None
    return sorted(songs)


def load_song(data_dir: str | Path, song_id: str) -> SongStems:
    """Read ``songs/<id>/song.json`` (:func:`~instructme.dataset.folder.read_song`) and check
    its stems exist."""
    root = Path(data_dir)
    path = song_dir(root, song_id) / "song.json"
    mix, everything = [], []
    for name, info in sorted(read_song(root, song_id).stems.items()):
        p = stem_path(root, info.path, path)
        if not p.is_file():
            raise ManifestError(f"{path}: stem {name!r} file {p} is missing")
        everything.append(p)
        if not info.variant_of:
            mix.append(p)
    if not mix:
        raise ManifestError(f"{path}: song has no stems")
    info0 = sf.info(str(mix[0]))
    return SongStems(song_id, mix, everything, info0.frames, info0.samplerate)


def load_split(data_dir: str | Path, split: str, sample_rate: int) -> list[SongStems]:
    """All songs of a split, checked to be at ``sample_rate``."""
    songs = [load_song(data_dir, s) for s in split_songs(data_dir, split)]
    for s in songs:
        if s.sample_rate != sample_rate:
            raise ManifestError(f"song {s.song_id} is at {s.sample_rate} Hz; the model "
                                f"expects {sample_rate} Hz")
    return songs


def read_sum(paths: list[Path], start: int, frames: int) -> np.ndarray:
    """Sum of the given mono stems over ``[start, start + frames)``, zero-padded: ``[frames]``."""
    out = np.zeros(frames, dtype=np.float32)
    for p in paths:
        x, _ = sf.read(str(p), start=start, stop=start + frames, dtype="float32",
                       always_2d=True)
        x = x.mean(axis=1)
        out[: len(x)] += x
    return out


class CropSampler:
    """Random training crops ``[B, N]``: mixes with probability ``p_mix``, else single stems;
    with ``extra`` (imported recorded music), a crop of it with probability ``p_extra``.

    Near-silent crops are redrawn; each crop is scaled to a random RMS level in
    ``rms_db_range`` (then limited to peak 0.99), so the model sees a range of loudness.
    ``state()``/``set_state()`` make the stream resumable.
    """

    def __init__(self, songs: list[SongStems], segment: int, p_mix: float = 0.5,
                 rms_db_range: tuple[float, float] = (-30.0, -12.0), seed: int = 0,
                 extra: list[AudioFile] | None = None, p_extra: float = 0.0) -> None:
        if not songs:
            raise ManifestError("no songs to train on (empty split)")
        if extra is not None and not 0.0 <= p_extra <= 1.0:
            raise ValueError("p_extra must be between 0 and 1")
        self.songs = songs
        self.segment = segment
        self.p_mix = p_mix
        self.rms_db_range = rms_db_range
        self.rng = np.random.default_rng(seed)
        self.extra = extra or []
        self.p_extra = p_extra

    def _source(self) -> tuple[list[Path], int]:
        """Files to sum for one crop and their length in frames."""
        if self.extra and self.p_extra > 0 and self.rng.random() < self.p_extra:  # recorded
            f = self.extra[int(self.rng.integers(len(self.extra)))]
            return [f.path], f.frames
        song = self.songs[int(self.rng.integers(len(self.songs)))]
        if self.rng.random() < self.p_mix:
            return song.mix, song.frames
        return [song.stems[int(self.rng.integers(len(song.stems)))]], song.frames

    def crop(self) -> np.ndarray:
        x = np.zeros(self.segment, dtype=np.float32)
        for _ in range(8):  # redraw near-silent crops
            paths, frames = self._source()
            start = int(self.rng.integers(max(1, frames - self.segment + 1)))
            x = read_sum(paths, start, self.segment)
            rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
            if rms > 10 ** (-50 / 20):
                break
        else:
            return x
        level = self.rng.uniform(*self.rms_db_range)
        x = x * (10 ** (level / 20) / rms)
        peak = float(np.abs(x).max())
        return (x * (0.99 / peak) if peak > 0.99 else x).astype(np.float32)

    def batch(self, size: int) -> np.ndarray:
        return np.stack([self.crop() for _ in range(size)])

    def state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def fixed_clips(songs: list[SongStems], n: int, seconds: float, sample_rate: int,
                stems_too: bool = False) -> list[tuple[str, np.ndarray]]:
    """Deterministic evaluation clips: ``n`` mixes (one per song, from 30% into the song).

    With ``stems_too``, each song also gives its loudest stem over the same window.
    Returns ``[(name, x[N])]`` at the dataset's own level (no normalisation).
    """
    frames = int(round(seconds * sample_rate))
    clips: list[tuple[str, np.ndarray]] = []
    for song in songs[:n]:
        start = max(0, min(int(0.3 * song.frames), song.frames - frames))
        clips.append((f"{song.song_id}-mix", read_sum(song.mix, start, frames)))
        if stems_too:
            stems = [(p.stem, read_sum([p], start, frames)) for p in song.mix]
            name, x = max(stems, key=lambda s: float(np.square(s[1]).mean()))
            clips.append((f"{song.song_id}-{name}", x))
    return clips


def file_clips(files: list[AudioFile], n: int, seconds: float) -> list[tuple[str, np.ndarray]]:
    """Deterministic clips of imported recordings: one per file (``n`` files spread evenly
    over the list, so every source folder is heard), ``seconds`` long from 30% into the
    file, at the file's own level."""
    clips: list[tuple[str, np.ndarray]] = []
    picks = np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int))
    for f in (files[int(i)] for i in picks):
        frames = int(round(seconds * f.sample_rate))
        start = max(0, min(int(0.3 * f.frames), f.frames - frames))
        clips.append((f.name, read_sum([f.path], start, frames)))
    return clips
