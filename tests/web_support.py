"""Helpers for the web studio tests: a tiny pipeline, clips, raw HTTP on loopback."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf


def tiny_pipeline(folder: Path, steps: int = 3, separator: bool = False) -> Any:
    """An untrained tiny :class:`EditPipeline` on CPU (built in a second or two) whose
    folder's default is ``steps`` sampler steps; with ``separator`` a random tiny stem
    separator whose masks depend on the input."""
    import torch

    from instructme.checkpoint import save_model
    from instructme.editing.pipeline import EditPipeline, build_tiny_pipeline
    from instructme.editing.settings import EditSettings
    from instructme.models.separator import Separator, SeparatorConfig

    build_tiny_pipeline(folder, seed=0, defaults=EditSettings(steps=steps))
    if separator:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sep = Separator(SeparatorConfig.preset("tiny"))
            with torch.no_grad():  # untrained masks are ~0.5 everywhere
                for p in sep.parameters():
                    if p.dim() > 1:
                        p.normal_(0.0, 0.3)
        save_model(sep, folder / "separator")
    return EditPipeline.from_pretrained(folder, device="cpu")


class GatedPipeline:
    """Calls the wrapped pipeline once ``gate`` is set (to hold edits in the queue)."""

    def __init__(self, pipe: Any):
        self.pipe = pipe
        self.defaults = pipe.defaults
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[str] = []
        self.separator = getattr(pipe, "separator", None)

    def __call__(self, audio: np.ndarray, sample_rate: int, instruction: str, **kw: Any) -> Any:
        self.calls.append(instruction)
        if not self.gate.wait(60):
            raise RuntimeError("test gate never opened")
        return self.pipe(audio, sample_rate, instruction, **kw)

    def split(self, audio: np.ndarray, sample_rate: int, instruments: Any = None) -> Any:
        self.calls.append("split")
        if not self.gate.wait(60):
            raise RuntimeError("test gate never opened")
        return self.pipe.split(audio, sample_rate, instruments)


def clip(seconds: float, sample_rate: int = 16000, channels: int = 1, seed: int = 0
         ) -> np.ndarray:
    """A chord of three partials plus a little noise: ``[N]`` or ``[N, C]`` float32."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    x = x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def wav_bytes(seconds: float, sample_rate: int = 16000, channels: int = 1,
              fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, clip(seconds, sample_rate, channels), sample_rate, format=fmt)
    return buf.getvalue()


def write_wav(path: Path, seconds: float, sample_rate: int = 16000) -> Path:
    sf.write(str(path), clip(seconds, sample_rate), sample_rate)
    return path


def multipart(data: bytes, filename: str, field: str = "file") -> tuple[bytes, str]:
    boundary = "----instructme-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Client:
    """Raw HTTP to the test server: paths are sent exactly as given (no normalisation)."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, chunked: bool = False
                ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            if chunked:
                assert body is not None
                pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
                conn.request(method, path, body=pieces, headers=headers or {},
                             encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else None

    def upload(self, data: bytes, filename: str, chunked: bool = False) -> tuple[int, Any]:
        body, ctype = multipart(data, filename)
        status, _, out = self.request("POST", "/api/upload", body, {"Content-Type": ctype},
                                      chunked=chunked)
        return status, json.loads(out) if out else None

    def wait_job(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.json("GET", f"/api/jobs/{job_id}")
            assert status == 200, job
            if job["state"] in ("done", "error"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")
