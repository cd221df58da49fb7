"""Audio the studio holds: uploads, examples and edit results, in one temporary folder.

Every clip is decoded once (:func:`instructme.audio.load`, mono, the file's own rate) and
kept as a 16-bit WAV named by a random id. Clients only ever name clips by id: an id is
checked against ``[0-9a-f]{32}`` and looked up in a table, so no path a client sends is ever
joined onto the folder (no path traversal). Clips unused for ``max_age_s`` are swept; the
whole folder is removed by :meth:`AudioStore.close` (the server calls it on exit), and a
folder left behind by a killed server is removed by the next one to start.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instructme import audio
from instructme.errors import AudioError

_ID_RE = re.compile(r"[0-9a-f]{32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


ROOT_PREFIX = "instructme-web-"
OWNER_FILE = "owner.pid"


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
    kind: str  # upload | example | result | part
    created: float
    last_used: float
    parent: str | None = None
    instruction: str | None = None
    origin: str | None = None  # name of the upload/example a chain of edits started from

    def public(self) -> dict[str, Any]:
        """What the API shows (never the path)."""
        return {"id": self.id, "name": self.name, "sample_rate": self.sample_rate,
                "seconds": round(self.seconds, 3), "kind": self.kind, "parent": self.parent,
                "instruction": self.instruction, "origin": self.origin or self.name,
                "audio_url": f"/api/audio/{self.id}",
                "spectrogram_url": f"/api/audio/{self.id}/spectrogram.png"}


class AudioStore:
    """Thread-safe table of clips in a private temporary folder."""

    def __init__(self, root: str | os.PathLike[str] | None = None, max_age_s: float = 3600.0):
        if root is None:
            remove_stale_roots()
            self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
            (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = float(max_age_s)
        self._items: dict[str, AudioItem] = {}
        self._lock = threading.Lock()
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
        not audio, is empty, or is longer than ``max_seconds``.
        """
        shown = safe_name(name)
        try:
            info = audio.probe(src)
            if max_seconds is not None and info.seconds > max_seconds:
                raise AudioError(f"{src}: clip is {info.seconds:.1f} s long; this server takes "
                                 f"at most {max_seconds:g} s")
            x, sr = audio.load(src, sample_rate=None, mono=True)
        except AudioError as e:
            raise AudioError(str(e).replace(os.fspath(src), shown)) from None
        return self.add_array(x, sr, shown, kind=kind)

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
        now = time.time()
        item = AudioItem(item_id, safe_name(name), path, int(sample_rate),
                         x.size / float(sample_rate), kind, now, now, parent, instruction,
                         origin)
        with self._lock:
            self._check_open()
            self._items[item_id] = item
        return item

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
        if not png.exists():
            x, sr = audio.load(item.path, sample_rate=None, mono=True)
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
            item.path.unlink(missing_ok=True)
            item.path.with_suffix(".png").unlink(missing_ok=True)
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
