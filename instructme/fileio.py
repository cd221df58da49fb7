"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash mid-write never leaves a half-written checkpoint, manifest or audio file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: Marker in the names of :func:`atomic_path`'s temporary files:
#: ``.<name>.instructme-tmp-<pid>-<random><suffix>``.
TMP_MARK = "instructme-tmp"


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{TMP_MARK}-"


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a permission error means it does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left next to ``path`` when its process
    was killed (SIGKILL, power loss) mid-write: those of this naming whose writer process is
    gone. A live writer's file is left alone. Returns the removed paths."""
    path = Path(path)
    prefix = _tmp_prefix(path)
    removed = []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        pid_text = p.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)) or not p.is_file():
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def writable_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be written by :func:`atomic_path` (a folder; a file where a folder
    is needed; a folder that refuses new files), or None. Probes by creating and removing a
    temporary file in the nearest existing folder, so it holds for root and read-only mounts
    alike; writes nothing that stays."""
    p = Path(path)
    if p.is_dir():
        return "is a folder"
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        return f"cannot create files in {parent} ({e.strerror or e})"
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    ``suffix`` defaults to the target's suffix so that libraries that infer the format from
    the file name (soundfile, matplotlib) keep working. The temporary file is named
    ``.<name>.instructme-tmp-<pid>-<random><suffix>``; one left by a killed process is removed
    by the next write to ``path`` (:func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_tmp_prefix(path)}{os.getpid()}-",
        suffix=suffix if suffix is not None else path.suffix, dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes owner-only files; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line atomically; returns the number of records."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
            n += 1
    return n


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Move the finished folder ``src`` onto ``dst`` (e.g. a training state written beside it).

    The old ``dst`` is renamed aside first and removed last, so a crash leaves either the old
    or the new folder in place, never a half-written one.
    """
    import shutil

    src, dst = Path(src), Path(dst)
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
