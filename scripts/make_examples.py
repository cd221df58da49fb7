"""Write the bundled example clips (``examples/*.flac``) from a built dataset.

Each example is the full mix (every stem, no replace variants) of one held-out (test split)
song, over the ``--seconds`` window where its quietest stem is loudest, peak-normalised to
-3 dBFS. The shipped ones were made with::

    python scripts/make_examples.py --data runs/data-small --out examples \
        arr000-00026-country arr000-00058-funk arr000-00103-orchestral
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from instructme.audio import load, save
from instructme.dataset.folder import load_window, read_build_info


def best_window(data: Path, stems: list[str], seconds: float, sr: int) -> float:
    """Start (s) of the window whose quietest stem has the highest RMS (1 s grid)."""
    tracks = [load(data / p, sample_rate=sr)[0] for p in stems]
    n = min(len(t) for t in tracks)
    width = int(seconds * sr)
    starts = range(0, max(n - width, 0) + 1, sr)
    score = [min(float(np.sqrt(np.mean(t[s:s + width] ** 2))) for t in tracks) for s in starts]
    return float(starts[int(np.argmax(score))] / sr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("songs", nargs="+", help="song ids of the dataset (test split)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="examples")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    sr = int(read_build_info(data)["sample_rate"])
    splits = json.loads((data / "manifests" / "splits.json").read_text())
    for song in args.songs:
        if splits.get(song) != "test":
            raise SystemExit(f"error: {song} is not a test-split song")
        meta = json.loads((data / "songs" / song / "song.json").read_text())
        stems = [s["path"] for s in meta["stems"].values() if not s.get("variant_of")]
        start = best_window(data, stems, args.seconds, sr)
        x = load_window(data, stems, start, args.seconds, sr)
        x = 10 ** (-3 / 20) * x / max(float(np.abs(x).max()), 1e-9)
        path = save(out / f"{song}.flac", x, sr)
        names = [s["instrument"] for s in meta["stems"].values() if not s.get("variant_of")]
        print(f"{path}: {meta.get('style')}, {meta.get('tempo')} bpm, {', '.join(names)}, "
              f"{start:.0f}-{start + args.seconds:.0f} s")


if __name__ == "__main__":
    main()
