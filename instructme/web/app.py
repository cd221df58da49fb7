"""The studio's HTTP API and page (FastAPI): upload, instruct, listen and compare.

Endpoints (every error is JSON ``{"error": "<one line>"}`` with a 4xx/5xx status):

- ``GET /``: the page (``static/index.html``; its scripts and styles are local files).
- ``GET /api/info``: limits, accepted formats, suggested instructions per task (add, remove,
  extract, replace, remix, multi-round: InstructME, arXiv 2308.14360, Sec. 3.1), examples,
  the default edit settings (the pipeline folder's, and seed 0).
- ``POST /api/upload`` (multipart field ``file``) and ``POST /api/examples/{name}``: a clip,
  returned as ``{"id", "name", "seconds", "audio_url", "spectrogram_url", ...}``.
- ``GET /api/audio/{id}`` (WAV; ``?download=1`` as an attachment) and
  ``GET /api/audio/{id}/spectrogram.png``.
- ``POST /api/edit`` ``{"audio": id, "instruction", "steps", "guidance", "seed", "sampler",
  "preserve"}`` (``preserve``: source-preserving output, :mod:`instructme.editing.preserve`):
  checks the instruction and the settings (:class:`~instructme.editing.settings.EditSettings`;
  unset ones are the pipeline's) at once, then queues the edit -> ``{"job": id, ...status}``.
- ``GET /api/jobs/{id}``: ``state`` (queued/running/done/error), queue ``position``, sampler
  ``step``/``total``, the parsed ``task``/``args``, the ``result`` clip (and the edited
  ``part`` alone, when the output kept the source), ``notes`` (one-line notices) or the
  ``error``. A split request ("split this into stems",
  :func:`~instructme.instructions.split.parse_split`; needs the pipeline's stem separator,
  ``"split"`` in ``/api/info``) is a job of ``kind`` ``"split"`` whose ``stems`` are clips,
  each with its ``instrument``, that sum to the source.

Clips are named by ids only (:mod:`instructme.web.store`). Before any route runs
(:mod:`instructme.web.guard`): the ``Host`` must be one this server answers (400), a POST from
another site's page is refused (403), and bodies are capped (413: uploads at
``max_upload_mb``, every other request at ``max_json_kb``; by ``Content-Length`` before they
are read, and while they stream). Uploads are capped in seconds and in decoded size, the
store in clips and bytes (507 when it is full of clips edits still use).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from instructme.editing.settings import EditSettings
from instructme.errors import AudioError, InstructMEError
from instructme.web.guard import BodyLimit, HostCheck, OriginCheck, error, served_hosts
from instructme.web.jobs import EditWorker, Pipeline, QueueFull
from instructme.web.store import MAX_DECODED_BYTES, AudioItem, AudioStore, StoreFull, safe_name

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Audio formats listed as examples.
EXAMPLE_SUFFIXES = (".wav", ".flac", ".ogg")
#: ``examples/`` at the top of a source checkout (rendered example clips), if present.
DEFAULT_EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
#: File types :func:`instructme.audio.probe` (libsndfile) reads, as the page offers them.
UPLOAD_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".caf",
                   ".w64", ".rf64")
#: Multipart framing allowed on top of the file itself.
_MULTIPART_SLACK = 64 * 1024


@dataclass
class StudioSettings:
    """Limits of one studio (the ``instructme serve`` options); the edit settings'
    defaults are the pipeline's (:attr:`EditPipeline.defaults`)."""

    max_upload_mb: float = 50.0
    max_seconds: float = 60.0
    examples_dir: Path | None = None
    max_age_s: float = 3600.0
    sweep_every_s: float = 60.0
    max_queue: int = 16
    max_steps: int = 200
    model_name: str = ""
    demo: bool = False
    store_root: Path | None = None
    #: The address the server listens on: its name is a ``Host`` it answers (with loopback's).
    bound_host: str = "127.0.0.1"
    #: More ``Host`` names (``--allowed-host``): a deliberate exposure, e.g. behind a proxy.
    extra_hosts: tuple[str, ...] = ()
    max_json_kb: float = 64.0
    max_decoded_mb: float = MAX_DECODED_BYTES / 1e6
    max_clips: int = 500
    max_store_mb: float = 2048.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def allowed_hosts(self) -> list[str]:
        """Every ``Host`` name the studio answers."""
        return served_hosts(self.bound_host, self.extra_hosts)

    def body_limit(self, path: str) -> int:
        """Largest request body for ``path`` (bytes): an upload and its multipart framing, or
        a small JSON body."""
        if path == "/api/upload":
            return self.max_upload_bytes + _MULTIPART_SLACK
        return int(self.max_json_kb * 1024)

    def body_message(self, path: str, limit: int) -> str:
        """The 413 message for ``path``."""
        if path == "/api/upload":
            return f"upload too large: this server takes files up to {self.max_upload_mb:g} MB"
        return f"request body too large: at most {limit // 1024} KiB here"


class EditRequest(BaseModel):
    """``POST /api/edit``: JSON types only; the values are checked by
    :meth:`EditSettings.validate`."""

    audio: str = Field(max_length=64)
    instruction: str = Field(max_length=500)
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    sampler: str | None = Field(default=None, max_length=32)
    preserve: bool | None = None

    def settings(self) -> EditSettings:
        """The request's edit settings (unset: None), unchecked."""
        return EditSettings(steps=self.steps, guidance=self.guidance, sampler=self.sampler,
                            seed=self.seed, preserve=self.preserve)


def suggestions(seed: int = 0) -> dict[str, list[str]]:
    """Example instructions per task: canonical phrasings plus one paraphrase each."""
    from instructme.instructions import make_instruction, phrasings

    rng = np.random.default_rng(seed)
    choices: dict[str, list[dict[str, Any]]] = {
        "add": [{"instrument": "piano"}, {"instrument": "strings"}, {"instrument": "drums"}],
        "remove": [{"instrument": "drums"}, {"instrument": "bass"}, {"instrument": "guitar"}],
        "extract": [{"instrument": "bass"}, {"instrument": "piano"}, {"instrument": "drums"}],
        "replace": [{"instrument": "guitar", "new_instrument": "strings"},
                    {"instrument": "piano", "new_instrument": "organ"},
                    {"instrument": "strings", "new_instrument": "brass"}],
        "remix": [{"style": "jazz"}, {"style": "rock"}, {"style": "electronic"}],
    }
    out: dict[str, list[str]] = {}
    for task, arg_list in choices.items():
        texts = [phrasings(task, a)[0] for a in arg_list]
        texts.append(make_instruction(task, arg_list[0], rng))
        out[task] = list(dict.fromkeys(texts))
    out["multiround"] = ["remove the drums then add a piano",
                         "replace the guitar with strings, then remix it as jazz"]
    out["split"] = ["split this into stems", "split into drums, bass and the rest"]
    return out


def list_examples(folder: Path | None, max_seconds: float) -> dict[str, dict[str, Any]]:
    """WAV/FLAC/OGG files directly in ``folder`` (no links out of it, none over ``max_seconds``)
    -> ``{file name: {"name", "seconds", "path"}}``, sorted by name."""
    from instructme.audio import probe

    if folder is None or not folder.is_dir():
        return {}
    root = folder.resolve()
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(q for q in folder.iterdir() if q.suffix.lower() in EXAMPLE_SUFFIXES):
        try:
            real = p.resolve()
            if real.parent != root or not real.is_file():
                continue
            seconds = probe(real).seconds
        except (OSError, AudioError):
            continue
        if seconds <= max_seconds:
            out[p.name] = {"name": p.name, "seconds": round(seconds, 2), "path": real}
    return out


def create_app(pipeline: Pipeline, settings: StudioSettings | None = None) -> FastAPI:
    """The studio app editing with ``pipeline`` (an
    :class:`~instructme.editing.pipeline.EditPipeline` or anything called the same way). Its
    store and worker are ``app.state.store`` and ``app.state.worker``; both are closed
    (running edit cancelled, temporary folder removed) on shutdown."""
    cfg = settings or StudioSettings()
    allowed = cfg.allowed_hosts  # checked (ValueError) before the store's folder is made
    store = AudioStore(cfg.store_root, max_age_s=cfg.max_age_s, max_clips=cfg.max_clips,
                       max_bytes=int(cfg.max_store_mb * 1e6),
                       max_decoded_bytes=int(cfg.max_decoded_mb * 1e6))
    worker = EditWorker(pipeline, store, max_queue=cfg.max_queue, keep_finished_s=cfg.max_age_s)
    store.busy = worker.busy_audio

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                await asyncio.sleep(cfg.sweep_every_s)
                await run_in_threadpool(_sweep)

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            await run_in_threadpool(close_app, app)

    def _sweep() -> None:
        worker.forget_finished()
        store.sweep(keep=worker.busy_audio())

    app = FastAPI(title="instructme studio", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.store, app.state.worker, app.state.settings = store, worker, cfg
    # Added innermost first: a request meets HostCheck, then OriginCheck, then BodyLimit.
    app.add_middleware(BodyLimit, limit_of=cfg.body_limit, message=cfg.body_message)
    app.add_middleware(OriginCheck, extra_hosts=cfg.extra_hosts)
    app.add_middleware(HostCheck, allowed_hosts=allowed)
    _error_handlers(app)
    _page_routes(app, cfg, pipeline)
    _clip_routes(app, cfg, store)
    _edit_routes(app, cfg, pipeline, worker, store)
    return app


def close_app(app: FastAPI) -> None:
    """Stop the app's worker (cancelling its edit) and remove its store; safe to repeat."""
    app.state.worker.close()
    app.state.store.close()


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg"))
        return error(400, "; ".join(parts) or "bad request")


def _page_routes(app: FastAPI, cfg: StudioSettings, pipeline: Pipeline) -> None:
    tips = suggestions()
    can_split = getattr(pipeline, "separator", None) is not None

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        examples = list_examples(cfg.examples_dir, cfg.max_seconds)
        return {
            "model": cfg.model_name, "demo": cfg.demo,
            "limits": {"max_upload_mb": cfg.max_upload_mb, "max_seconds": cfg.max_seconds,
                       "max_steps": cfg.max_steps, "max_queue": cfg.max_queue,
                       "max_decoded_mb": cfg.max_decoded_mb, "max_clips": cfg.max_clips,
                       "max_store_mb": cfg.max_store_mb},
            "formats": list(UPLOAD_SUFFIXES),
            "defaults": {**pipeline.defaults.folder_defaults(), "seed": EditSettings().seed},
            "suggestions": tips if can_split else {k: v for k, v in tips.items()
                                                   if k != "split"},
            "split": can_split,
            "examples": [{"name": e["name"], "seconds": e["seconds"]}
                         for e in examples.values()],
        }

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)


def _kept(add: Callable[[], AudioItem]) -> dict[str, Any]:
    """``add()``'s clip as the API shows it; its refusals as HTTP errors."""
    try:
        return add().public()
    except StoreFull as e:
        raise HTTPException(507, str(e)) from None
    except AudioError as e:
        raise HTTPException(400, str(e)) from None


def _clip_routes(app: FastAPI, cfg: StudioSettings, store: AudioStore) -> None:
    def _ingest(upload: UploadFile) -> dict[str, Any]:
        name = safe_name(upload.filename or "upload")
        tmp = store.incoming_path()
        try:
            size = 0
            with open(tmp, "wb") as f:
                while chunk := upload.file.read(1 << 20):
                    size += len(chunk)
                    if size > cfg.max_upload_bytes:
                        raise HTTPException(413, cfg.body_message("/api/upload", 0))
                    f.write(chunk)
            if size == 0:
                raise HTTPException(400, f"{name}: the file is empty")
            return _kept(lambda: store.add_file(tmp, name, kind="upload",
                                                max_seconds=cfg.max_seconds))
        finally:
            tmp.unlink(missing_ok=True)

    @app.post("/api/upload")
    async def upload(request: Request) -> dict[str, Any]:
        async with request.form(max_files=1, max_fields=2, max_part_size=4096) as form:
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise HTTPException(400, "no file in the upload (multipart field 'file')")
            return await run_in_threadpool(_ingest, file)

    @app.post("/api/examples/{name}")
    def load_example(name: str) -> dict[str, Any]:
        found = list_examples(cfg.examples_dir, cfg.max_seconds).get(name)
        if found is None:
            raise HTTPException(404, f"no example named {safe_name(name)!r}")
        return _kept(lambda: store.add_file(found["path"], found["name"], kind="example",
                                            max_seconds=cfg.max_seconds))

    @app.get("/api/audio/{item_id}")
    def get_audio(item_id: str, download: bool = False) -> FileResponse:
        item = _item(store, item_id)
        name = item.name if item.name.lower().endswith(".wav") else f"{item.name}.wav"
        return FileResponse(item.path, media_type="audio/wav", filename=name,
                            content_disposition_type="attachment" if download else "inline")

    @app.get("/api/audio/{item_id}/spectrogram.png")
    def get_spectrogram(item_id: str) -> FileResponse:
        _item(store, item_id)
        try:
            png = store.spectrogram(item_id)
        except KeyError:
            raise HTTPException(404, "unknown or expired audio id") from None
        return FileResponse(png, media_type="image/png")


def _item(store: AudioStore, item_id: str) -> AudioItem:
    try:
        return store.get(item_id)
    except KeyError:
        raise HTTPException(404, "unknown or expired audio id") from None


def _edit_routes(app: FastAPI, cfg: StudioSettings, pipeline: Pipeline, worker: EditWorker,
                 store: AudioStore) -> None:
    from instructme.editing.pipeline import plan_rounds
    from instructme.instructions import parse_split

    @app.post("/api/edit")
    def submit(req: EditRequest) -> dict[str, Any]:
        _item(store, req.audio)
        try:
            settings = req.settings().validate("{}:").resolve(pipeline.defaults)
        except InstructMEError as e:
            raise HTTPException(400, str(e)) from None
        if (settings.steps or 0) > cfg.max_steps:
            raise HTTPException(400, f"steps: at most {cfg.max_steps} on this server")
        try:
            split = parse_split(req.instruction)
            if split is None:
                plan_rounds(req.instruction)
        except InstructMEError as e:
            raise HTTPException(400, str(e)) from None
        if split is not None and getattr(pipeline, "separator", None) is None:
            raise HTTPException(400, "this model has no stem separator, so it cannot split "
                                "into stems (start the studio with a pipeline that has one)")
        try:
            job = worker.submit(req.audio, req.instruction.strip(), settings, split)
        except QueueFull as e:
            raise HTTPException(503, str(e)) from None
        return {"job": job.id, **worker.status(job.id)}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        try:
            return worker.status(job_id)
        except KeyError:
            raise HTTPException(404, "unknown or expired job id") from None

def open_pipeline(model: str | os.PathLike[str] | None, demo: bool = False) -> tuple[Any, str]:
    """``(pipeline, label)`` for ``instructme serve``: the model folder (default as for
    ``instructme edit``), or with ``demo`` an untrained tiny pipeline (noise out) made in a
    temporary folder."""
    import tempfile

    from instructme.editing.folder import default_model_dir
    from instructme.editing.pipeline import build_tiny_pipeline, load_pipeline

    if demo:
        folder = Path(tempfile.mkdtemp(prefix="instructme-demo-"))
        build_tiny_pipeline(folder)
        try:
            return load_pipeline(folder), "untrained tiny demo model (its output is noise)"
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    directory = Path(model) if model is not None else default_model_dir()
    return load_pipeline(model), str(directory)
