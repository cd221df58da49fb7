"""Real recordings that installed packages ship (none made by this project), for evaluation.

- ``music21/audioSearch/test_audio.wav`` (music21): 20 s of a real monophonic instrument.
- ``stempeg/data/The Easton Ellises - Falcon 69.stem.mp4`` (the ``stempeg`` package, a
  MUSDB18 excerpt): 6 s of a real band recording as a mix plus its drums, bass, other and
  vocals stems (AAC in an MP4 container, decoded with the ``ffmpeg`` program). Its stems give
  exact targets for real-music edits: "remove the drums" -> mix - drums, "extract the bass"
  -> bass (``benchmarks/real_edits.py``).

Nothing here downloads anything: a recording whose package is not installed is skipped.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np

from instructme.errors import AudioError

#: Streams of a stem file, in order (NI Stems / MUSDB18 layout).
STEM_NAMES = ("mix", "drums", "bass", "other", "vocals")
STEMPEG_EXAMPLE = "The Easton Ellises - Falcon 69.stem.mp4"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def music21_test_audio() -> Path | None:
    """music21's real instrument recording, if music21 is installed."""
    root = _package_dir("music21")
    path = root / "audioSearch" / "test_audio.wav" if root else None
    return path if path is not None and path.is_file() else None


def stempeg_example() -> Path | None:
    """stempeg's real multitrack excerpt (MUSDB18 stem file), if stempeg is installed."""
    root = _package_dir("stempeg")
    path = root / "data" / STEMPEG_EXAMPLE if root else None
    return path if path is not None and path.is_file() else None


def decode_stream(path: Path, stream: int, sample_rate: int) -> np.ndarray:
    """Audio stream ``stream`` of a media file, mono float32 ``[N]`` at ``sample_rate``
    (``ffmpeg`` decodes, downmixes and resamples)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError("ffmpeg not found: install it (scripts/setup.sh does) to decode "
                         f"{path.name}")
    cmd = [exe, "-v", "error", "-nostdin", "-i", str(path), "-map", f"0:a:{stream}", "-ac", "1",
           "-ar", str(int(sample_rate)), "-f", "f32le", "pipe:1"]
    res = subprocess.run(cmd, capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        msg = res.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path.name}: ffmpeg could not decode stream {stream} "
                         f"({msg[-1] if msg else 'no audio'})")
    return np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)


def packaged_multitrack(sample_rate: int) -> dict[str, np.ndarray] | None:
    """stempeg's excerpt as ``{"mix", "drums", "bass", "other", "vocals"}`` -> mono ``[N]``
    (all the same length), or None when stempeg is not installed."""
    path = stempeg_example()
    if path is None:
        return None
    tracks = {name: decode_stream(path, k, sample_rate) for k, name in enumerate(STEM_NAMES)}
    n = min(len(x) for x in tracks.values())
    return {name: x[:n] for name, x in tracks.items()}
