"""The studio's edit queue: one worker thread runs one edit at a time, in arrival order.

A diffusion edit (InstructME, arXiv 2308.14360, Sec. 3) takes seconds to minutes and most of
the machine, so a process never runs two at once: requests wait in a FIFO queue and can see
their place in it. The pipeline's ``progress(step, total)`` callback (one call per sampler
step) is stored on the job for the page to poll. Each job carries its complete
:class:`~instructme.editing.settings.EditSettings`. When the server stops (Ctrl-C, SIGTERM),
:meth:`EditWorker.close` fails the waiting jobs and cancels the running one at its next
sampler step (the callback raises :class:`Cancelled`), then joins the worker thread, so no
edit outlives the server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from instructme.editing.settings import EditSettings
from instructme.errors import InstructMEError
from instructme.web.store import AudioStore, new_id, safe_name

log = logging.getLogger(__name__)


class EditResultLike(Protocol):
    audio: np.ndarray
    sample_rate: int
    task: str
    args: dict[str, Any]
    seconds: float


class Pipeline(Protocol):
    """What the studio needs of :class:`instructme.editing.pipeline.EditPipeline`: its
    folder's default settings, a call that edits ``audio`` (``[N]`` or ``[N, C]``), and its
    stem separator (None: no splits) with ``split``."""

    defaults: EditSettings
    separator: Any

    def __call__(self, audio: np.ndarray, sample_rate: int, instruction: str, *,
                 settings: EditSettings,
                 progress: Callable[[int, int], None] | None) -> EditResultLike: ...

    def split(self, audio: np.ndarray, sample_rate: int,
              instruments: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...


class QueueFull(InstructMEError):
    """Too many edits are waiting."""


class Cancelled(InstructMEError):
    """The studio stopped while this edit ran."""


@dataclass
class Job:
    """One requested edit of clip ``audio_id``; with ``split`` (the classes; empty: all) a
    split into stems (:func:`instructme.instructions.split.parse_split`)."""

    id: str
    audio_id: str
    instruction: str
    settings: EditSettings
    state: str = "queued"  # queued | running | done | error
    step: int = 0
    total: int = 0
    error: str | None = None
    result_id: str | None = None
    part_id: str | None = None
    task: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    split: tuple[str, ...] | None = None
    stem_ids: list[tuple[str, str]] = field(default_factory=list)  # (class, clip id)
    notes: list[str] = field(default_factory=list)  # one-line notices of the edit


class EditWorker:
    """FIFO of :class:`Job` run by one daemon thread against ``pipeline``."""

    def __init__(self, pipeline: Pipeline, store: AudioStore, max_queue: int = 16,
                 keep_finished_s: float = 3600.0):
        self.pipeline = pipeline
        self.store = store
        self.max_queue = int(max_queue)
        self.keep_finished_s = float(keep_finished_s)
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="instructme-edit-worker",
                                        daemon=True)
        self._thread.start()

    def submit(self, audio_id: str, instruction: str, settings: EditSettings,
               split: tuple[str, ...] | None = None) -> Job:
        """Queue an edit with complete ``settings`` (with ``split``: a split into those
        stems); raises :class:`QueueFull` when ``max_queue`` edits already wait."""
        job = Job(new_id(), audio_id, instruction, settings, split=split)
        with self._cond:
            if self._stop:
                raise QueueFull("the studio is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} edits are already waiting; "
                                "try again in a minute")
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's state as the API shows it; ``KeyError`` for an unknown id.

        ``position`` is the job's place in the waiting line (1 = next), 0 once it runs;
        ``ahead`` counts the edits that will finish before it starts.
        """
        with self._cond:
            job = self._jobs[job_id]
            position = 0
            ahead = 0
            if job.state == "queued":
                position = next(i for i, j in enumerate(self._waiting, 1) if j is job)
                ahead = position - 1 + (self._running is not None)
            out: dict[str, Any] = {
                "id": job.id, "state": job.state, "position": position, "ahead": ahead,
                "step": job.step, "total": job.total, "instruction": job.instruction,
                "source": job.audio_id, "steps": job.settings.steps,
                "guidance": job.settings.guidance, "seed": job.settings.seed,
                "sampler": job.settings.sampler, "preserve": job.settings.preserve,
                "error": job.error,
                "task": job.task, "args": job.args,
                "seconds": job.seconds, "result": None, "part": None,
                "kind": "edit" if job.split is None else "split", "stems": None,
                "notes": list(job.notes),
            }
            result_id, part_id, stem_ids = job.result_id, job.part_id, list(job.stem_ids)
        if result_id is not None:
            try:
                out["result"] = self.store.get(result_id).public()
            except KeyError:
                out["error"] = "the result has expired; run the edit again"
        if part_id is not None:
            with contextlib.suppress(KeyError):
                out["part"] = self.store.get(part_id).public()
        if stem_ids:
            try:
                out["stems"] = [{"instrument": name, **self.store.get(i).public()}
                                for name, i in stem_ids]
            except KeyError:
                out["error"] = "the stems have expired; split again"
        return out

    def busy_audio(self) -> set[str]:
        """Clip ids that waiting or running edits still need (not to be swept)."""
        with self._cond:
            jobs = list(self._waiting) + ([self._running] if self._running else [])
            return {j.audio_id for j in jobs}

    def forget_finished(self, now: float | None = None) -> int:
        """Drop finished jobs older than ``keep_finished_s``; returns how many."""
        now = time.time() if now is None else now
        with self._cond:
            old = [k for k, j in self._jobs.items()
                   if j.finished is not None and now - j.finished > self.keep_finished_s]
            for k in old:
                del self._jobs[k]
        return len(old)

    def close(self, timeout: float = 120.0) -> None:
        """Stop taking jobs; waiting ones fail; the running one is cancelled at its next
        sampler step. Waits up to ``timeout`` s for the worker thread (a stage between steps,
        such as decoding a long clip, runs to its end)."""
        with self._cond:
            self._stop = True
            for job in self._waiting:
                job.state, job.error, job.finished = "error", "the studio shut down", time.time()
            self._waiting.clear()
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the running edit did not stop within %g s", timeout)

    # -- worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job = self._waiting.popleft()
                job.state = "running"
                self._running = job
            try:
                self._attempt(job)
            finally:
                with self._cond:
                    self._running = None
                    job.finished = time.time()

    def _attempt(self, job: Job) -> None:
        """Run ``job`` (an edit or a split); any failure becomes its one-line ``error``."""
        try:
            self._split(job) if job.split is not None else self._edit(job)
        except KeyError:
            job.state, job.error = "error", "the source clip has expired; upload it again"
        except InstructMEError as e:
            job.state, job.error = "error", str(e)
        except Exception as e:  # a bug: keep serving, say so, log the traceback
            log.exception("job %s failed", job.id)
            job.state, job.error = "error", f"internal error: {type(e).__name__}: {e}"
        else:
            job.state = "done"

    def _split(self, job: Job) -> None:
        """A split: one stored clip per stem that sounds, plus ``other``."""
        x, sr = self.store.load(job.audio_id)
        t0 = time.perf_counter()
        stems = self.pipeline.split(x, sr, job.split or None)
        source = self.store.get(job.audio_id)
        origin = source.origin or source.name
        for name, stem in stems.items():
            item = self.store.add_array(
                np.asarray(stem, dtype=np.float32).reshape(-1), sr,
                safe_name(f"{origin.rsplit('.', 1)[0]} - {name}.wav"), kind="stem",
                parent=job.audio_id, instruction=job.instruction, origin=origin)
            job.stem_ids.append((name, item.id))
        job.task, job.args = "split", {"instruments": list(job.split or ())}
        job.seconds = time.perf_counter() - t0

    def _edit(self, job: Job) -> None:
        """An edit: the result clip and, when the output kept the source, the part alone."""

        def progress(step: int, total: int) -> None:
            job.step, job.total = int(step), int(total)
            if self._stop:
                raise Cancelled("the studio shut down during this edit")

        x, sr = self.store.load(job.audio_id)
        res = self.pipeline(x, sr, job.instruction, settings=job.settings, progress=progress)
        source = self.store.get(job.audio_id)
        origin = source.origin or source.name
        name = safe_name(f"{origin.rsplit('.', 1)[0]} - {job.instruction[:40]}.wav")
        item = self.store.add_array(np.asarray(res.audio, dtype=np.float32).reshape(-1),
                                    res.sample_rate, name, kind="result", parent=job.audio_id,
                                    instruction=job.instruction, origin=origin)
        part = getattr(res, "part", None)  # the edited part alone (source-preserving)
        if part is not None:
            job.part_id = self.store.add_array(
                np.asarray(part, dtype=np.float32).reshape(-1), res.sample_rate,
                safe_name(f"{name[:-4]} - part.wav"), kind="part", parent=job.audio_id,
                instruction=job.instruction, origin=origin).id
        job.notes = list(getattr(res, "notes", []))
        job.task, job.args = res.task, dict(res.args)
        job.seconds = float(res.seconds)
        job.result_id = item.id
