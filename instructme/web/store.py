"""Audio the studio holds: uploads, examples and edit results, in one temporary folder.

Every clip is decoded once (mono, the file's own rate, in blocks of
:data:`BLOCK_FRAMES` frames straight into the stored file, so decoding takes a few MB whatever
the file declares) and kept as a 16-bit WAV named by a random id. A file whose decoded size
(frames x channels x 4 bytes of float32) is over ``max_decoded_bytes`` is refused from its
header, before decoding. The store holds at most ``max_clips`` clips and ``max_bytes`` bytes
of WAV: adding one past either evicts the least recently used clips that no edit needs, and
when every clip is needed it is refused (:class:`StoreFull`).

Clients only ever name clips by id: an id is checked against ``[0-9a-f]{32}`` and looked up
in a table, so no path a client sends is ever joined onto the folder (no path traversal).
Clips unused for ``max_age_s`` are swept; the whole folder is removed by
:meth:`AudioStore.close` (the server calls it on exit), and a folder left behind by a killed
server is removed by the next one to start.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from instructme import audio
from instructme.errors import AudioError, InstructMEError

_ID_RE = re.compile(r"[0-9a-f]{32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


ROOT_PREFIX = "instructme-web-"
OWNER_FILE = "owner.pid"
#: Largest decoded size of an upload (float32 frames x channels): 10 min of 48 kHz stereo.
MAX_DECODED_BYTES = 10 * 60 * 48_000 * 2 * 4  # 230.4 MB
#: Frames decoded at a time (8 channels: 2 MB of float32).
BLOCK_FRAMES = 1 << 16


class StoreFull(InstructMEError):
    """The store is at its clip or byte cap and every clip is in use."""


def remove_stale_roots(parent: str | os.PathLike[str] | None = None) -> int:
    """Remove studio folders (``instructme-web-*`` in the temporary directory) whose owning
    process is gone (a server that was killed and could not clean up); returns how many."""
    base = Path(parent if parent is not None else tempfile.gettempdir())
    removed = 0
    for d in base.glob(ROOT_PREFIX + "*"):
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            pid = int((d / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_id() -> str:
    """A fresh random id (32 hex digits)."""
    return secrets.token_hex(16)


def is_id(value: str) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def safe_name(name: str, default: str = "audio") -> str:
    """A display/download name with no path parts and only harmless characters."""
    base = os.path.basename(str(name).replace("\\", "/")).strip()
    base = _UNSAFE.sub("_", base).strip(" .")[:80]
    return base or default


@dataclass
class AudioItem:
    """One clip: ``path`` holds ``x: [N]`` at ``sample_rate`` as 16-bit WAV."""

    id: str
    name: str
    path: Path
    sample_rate: int
    seconds: float
    kind: str  # upload | example | result | part | stem
    created: float
    last_used: float
    parent: str | None = None
    instruction: str | None = None
    origin: str | None = None  # name of the upload/example a chain of edits started from
    size: int = 0  # bytes of the WAV

    def public(self) -> dict[str, Any]:
        """What the API shows (never the path)."""
        return {"id": self.id, "name": self.name, "sample_rate": self.sample_rate,
                "seconds": round(self.seconds, 3), "kind": self.kind, "parent": self.parent,
                "instruction": self.instruction, "origin": self.origin or self.name,
                "audio_url": f"/api/audio/{self.id}",
                "spectrogram_url": f"/api/audio/{self.id}/spectrogram.png"}


class AudioStore:
    """Thread-safe table of clips in a private temporary folder.

    ``busy()`` names the clips that may not be evicted (the server sets it to the edits'
    sources); ``max_clips`` and ``max_bytes`` cap what is held, ``max_decoded_bytes`` what
    one file may decode to.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, max_age_s: float = 3600.0,
                 max_clips: int = 500, max_bytes: int = 2 << 30,
                 max_decoded_bytes: int = MAX_DECODED_BYTES):
        if root is None:
            remove_stale_roots()
            self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
            (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = float(max_age_s)
        self.max_clips, self.max_bytes = int(max_clips), int(max_bytes)
        self.max_decoded_bytes = int(max_decoded_bytes)
        self.busy: Callable[[], set[str]] = set
        self._items: dict[str, AudioItem] = {}
        self._lock = threading.Lock()
        self._render = threading.Lock()  # one spectrogram at a time (each takes memory)
        self._closed = False
        (self.root / "incoming").mkdir(exist_ok=True)

    # -- adding ------------------------------------------------------------------------------
    def incoming_path(self) -> Path:
        """A fresh path for an upload being received (delete it when done)."""
        return self.root / "incoming" / new_id()

    def add_file(self, src: str | os.PathLike[str], name: str, kind: str = "upload",
                 max_seconds: float | None = None) -> AudioItem:
        """Decode ``src`` (any format :func:`instructme.audio.probe` accepts) and keep it.

        Raises :class:`AudioError` naming ``name`` (never the server's path) when the file is
        not audio, is empty, is longer than ``max_seconds`` or decodes to more than
        ``max_decoded_bytes``; :class:`StoreFull` when there is no room.
        """
        shown = safe_name(name)
        try:
            info = audio.probe(src)
        except AudioError as e:
            raise AudioError(str(e).replace(os.fspath(src), shown)) from None
        if max_seconds is not None and info.seconds > max_seconds:
            raise AudioError(f"{shown}: clip is {info.seconds:.1f} s long; this server takes "
                             f"at most {max_seconds:g} s")
        decoded = info.frames * info.channels * 4
        if decoded > self.max_decoded_bytes:
            raise AudioError(
                f"{shown}: {info.channels} channels at {info.sample_rate} Hz for "
                f"{info.seconds:.1f} s decode to {decoded / 1e6:.0f} MB; this server decodes at "
                f"most {self.max_decoded_bytes / 1e6:.0f} MB per file")
        most = self.max_decoded_bytes // (4 * info.channels)
        if max_seconds is not None:
            most = min(most, int(max_seconds * info.sample_rate) + info.sample_rate)
        item_id = new_id()
        path = self.root / f"{item_id}.wav"
        frames = _transcode(src, shown, path, info.sample_rate, most)
        return self._keep(AudioItem(item_id, shown, path, info.sample_rate,
                                    frames / float(info.sample_rate), kind, 0.0, 0.0))

    def add_array(self, x: np.ndarray, sample_rate: int, name: str, kind: str,
                  parent: str | None = None, instruction: str | None = None,
                  origin: str | None = None) -> AudioItem:
        """Keep ``x: [N]`` (float, mono) as a new clip."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise AudioError(f"{name}: expected non-empty mono audio, got shape {x.shape}")
        item_id = new_id()
        path = self.root / f"{item_id}.wav"
        audio.save(path, np.clip(x, -1.0, 1.0), int(sample_rate))
        return self._keep(AudioItem(item_id, safe_name(name), path, int(sample_rate),
                                    x.size / float(sample_rate), kind, 0.0, 0.0, parent,
                                    instruction, origin))

    def _keep(self, item: AudioItem) -> AudioItem:
        """Register the clip just written to ``item.path``, evicting the least recently used
        clips no edit needs when a cap would be passed; :class:`StoreFull` if none can go."""
        item.size = item.path.stat().st_size
        item.created = item.last_used = time.time()
        busy = self.busy()
        evicted: list[AudioItem] = []
        with self._lock:
            try:
                self._check_open()
                evicted = self._make_room(item.size, busy)
            except InstructMEError:
                item.path.unlink(missing_ok=True)
                raise
            self._items[item.id] = item
        for old in evicted:
            _delete(old)
        return item

    def _make_room(self, size: int, busy: set[str]) -> list[AudioItem]:
        """(Lock held.) Forget clips, oldest use first, until one of ``size`` bytes fits."""
        held = sum(i.size for i in self._items.values())
        count = len(self._items)
        if count + 1 <= self.max_clips and held + size <= self.max_bytes:
            return []
        out: list[AudioItem] = []
        for old in sorted(self._items.values(), key=lambda i: i.last_used):
            if count + 1 <= self.max_clips and held + size <= self.max_bytes:
                break
            if old.id in busy:
                continue
            out.append(old)
            count, held = count - 1, held - old.size
        if count + 1 > self.max_clips or held + size > self.max_bytes:
            raise StoreFull(f"the studio holds as much audio as it may ({self.max_clips} "
                            f"clips, {self.max_bytes / 1e6:.0f} MB) and edits still use "
                            "all of it; try again when they finish")
        for old in out:
            del self._items[old.id]
        return out

    # -- reading -----------------------------------------------------------------------------
    def get(self, item_id: str) -> AudioItem:
        """The clip with this id; ``KeyError`` for a malformed or unknown (or swept) id."""
        if not is_id(item_id):
            raise KeyError(item_id)
        with self._lock:
            item = self._items[item_id]
            item.last_used = time.time()
            return item

    def load(self, item_id: str) -> tuple[np.ndarray, int]:
        """``(x [N] float32, sample_rate)`` of a clip."""
        item = self.get(item_id)
        return audio.load(item.path, sample_rate=None, mono=True)

    def spectrogram(self, item_id: str) -> Path:
        """Path of the clip's spectrogram PNG (rendered on first use)."""
        from instructme.web.spectrogram import render_png

        item = self.get(item_id)
        png = item.path.with_suffix(".png")
        with self._render:
            if not png.exists():
                x, sr = _picture_audio(item.path)
                tmp = png.with_name(f".{new_id()}.png")
                render_png(x, sr, tmp)
                os.replace(tmp, png)
        return png

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # -- cleaning ----------------------------------------------------------------------------
    def sweep(self, keep: set[str] | frozenset[str] = frozenset(),
              now: float | None = None) -> int:
        """Forget and delete clips unused for ``max_age_s`` (except ``keep``); returns count.

        Stray files in ``incoming/`` older than ``max_age_s`` (an upload cut off mid-way) go
        too.
        """
        now = time.time() if now is None else now
        with self._lock:
            old = [i for i in self._items.values()
                   if now - i.last_used > self.max_age_s and i.id not in keep]
            for item in old:
                del self._items[item.id]
        for item in old:
            _delete(item)
        incoming = self.root / "incoming"
        for p in incoming.iterdir() if incoming.is_dir() else ():
            try:
                if now - p.stat().st_mtime > self.max_age_s:
                    p.unlink()
            except FileNotFoundError:
                pass
        return len(old)

    def close(self) -> None:
        """Forget every clip and remove the folder."""
        with self._lock:
            self._closed = True
            self._items.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise AudioError("the studio is shutting down")


def _delete(item: AudioItem) -> None:
    item.path.unlink(missing_ok=True)
    item.path.with_suffix(".png").unlink(missing_ok=True)


def _picture_audio(path: Path) -> tuple[np.ndarray, int]:
    """A stored clip read block by block for its picture, resampled as it is read to at most
    :data:`~instructme.web.spectrogram.MAX_DRAW_RATE` (so a minute at 384 kHz takes ~12 MB,
    not the ~1 GB its STFT would)."""
    import soxr

    from instructme.web.spectrogram import MAX_DRAW_RATE

    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        out_rate = min(rate, MAX_DRAW_RATE)
        stream = (soxr.ResampleStream(rate, out_rate, 1, dtype="float32", quality="HQ")
                  if out_rate != rate else None)
        parts = []
        for block in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
            mono = block[:, 0]
            parts.append(stream.resample_chunk(mono) if stream is not None else mono)
        if stream is not None:
            parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32), out_rate


def _transcode(src: str | os.PathLike[str], shown: str, dst: Path, sample_rate: int,
               most: int) -> int:
    """Decode ``src`` block by block (:data:`BLOCK_FRAMES`) to mono 16-bit WAV ``dst`` (as
    :func:`instructme.audio.load` + :func:`instructme.audio.save` would, clipped to [-1, 1])
    and return its frames; :class:`AudioError` (naming ``shown``) for undecodable, empty or
    non-finite audio, or audio running past ``most`` frames (a header that lies)."""
    tmp = dst.with_name(f".{dst.name}")
    frames = 0
    try:
        with sf.SoundFile(str(src)) as f, \
                sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=1,
                             format="WAV", subtype="PCM_16") as out:
            for block in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioError(f"{shown}: audio contains NaN or infinite samples")
                frames += block.shape[0]
                if frames > most:
                    raise AudioError(f"{shown}: the audio runs past what its header declares "
                                     "and this server takes")
                out.write(np.clip(block.mean(axis=1), -1.0, 1.0))
        if frames == 0:
            raise AudioError(f"{shown}: audio is empty (zero length)")
        os.replace(tmp, dst)
    except AudioError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError
        tmp.unlink(missing_ok=True)
        first = (str(e).replace(os.fspath(src), shown).strip().splitlines()
                 or [type(e).__name__])[0]
        raise AudioError(f"{shown}: could not decode audio ({first})") from None
    return frames
