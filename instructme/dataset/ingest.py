"""Users' own multitrack stems (Slakh2100, MUSDB18, ``SONG/STEM.wav``) as dataset songs.

:func:`instructme.dataset.stems.load_stems` lists the stems; here each song's stems are read,
resampled to the dataset rate and downmixed (:func:`instructme.audio.load`), padded to one
length, given one common gain (never a boost) so that the full mix keeps -1 dBFS of headroom,
and written like a rendered song: ``songs/<id>/<stem>.flac``, ``activity.npz``, ``song.json``.
Such songs have no score, so no chords, tempo or style; stems whose instrument is unknown
(MUSDB's "other") are kept in every mix but never named in an instruction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from instructme import audio
from instructme.config import DataConfig
from instructme.dataset.folder import safe_name
from instructme.dataset.render import activity
from instructme.dataset.stems import StemSong
from instructme.fileio import atomic_path, atomic_write_json
from instructme.music.score import Song
from instructme.vocab import UNNAMED as OTHER

HEADROOM_PEAK = 0.891  # -1 dBFS


def stem_song_job(song: StemSong) -> dict[str, Any]:
    """A picklable description of a user's song for a build job."""
    return {
        "song_id": safe_name(song.song_id),
        "stems": [{"name": s.name, "path": str(s.path), "instrument": s.instrument or OTHER,
                   "program": -1 if s.program is None else int(s.program)} for s in song.stems],
    }


def ingest_song(job: dict[str, Any], root: Path, cfg: DataConfig,
                activity_hz: float) -> dict[str, Any]:
    """Read, resample, level and write one user song; returns its ``song.json`` dict."""
    sr = cfg.sample_rate
    song_id = job["song_id"]
    loaded = []
    for i, s in enumerate(job["stems"]):
        x, _ = audio.load(s["path"], sample_rate=sr)
        loaded.append((f"s{i:02d}-{s['instrument']}", x, s))
    n = max(len(x) for _, x, _ in loaded)
    stems = {name: np.pad(x, (0, n - len(x))) for name, x, _ in loaded}
    peak = float(np.max(np.abs(sum(stems.values()))))
    gain = min(1.0, HEADROOM_PEAK / peak) if peak > 0 else 1.0

    song_dir = root / "songs" / song_id
    song_dir.mkdir(parents=True, exist_ok=True)
    meta, acts = {}, {}
    for name, _, s in loaded:
        x = (stems[name] * gain).astype(np.float32)
        rel = f"songs/{song_id}/{name}.flac"
        audio.save(root / rel, np.clip(x, -1.0, 1.0), sr)
        meta[name] = {"instrument": s["instrument"], "program": s["program"], "role": "stem",
                      "part": s["name"], "variant_of": None, "path": rel}
        acts[name] = activity(x, sr, hop_seconds=1.0 / activity_hz)
    with atomic_path(song_dir / "activity.npz") as tmp:
        np.savez_compressed(tmp, **acts)
    song = Song(song_id=song_id, source="stems", group=song_id, tempo=0.0, key="N",
                duration=n / sr, parts=[], chords=[], style=None,
                meta={"origin": str(Path(job["stems"][0]["path"]).parent)})
    d = song.to_dict()
    d.update(stems=meta, activity_hz=activity_hz, sample_rate=sr)
    atomic_write_json(song_dir / "song.json", d)
    return d
