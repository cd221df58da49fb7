"""Peak memory of the studio server under requests that are small to send but were costly to
serve. Starts ``instructme serve --demo`` in a subprocess and, one attack at a time, prints
the status codes and the server's peak RSS (``VmHWM``, reset before each attack through
``/proc/PID/clear_refs``; polled RSS where that is not allowed). Asserts nothing.

    .venv/bin/python benchmarks/web_limits.py [--code DIR] [--skip-clips]

``--code DIR`` runs the server from another checkout (e.g. the code before the limits) to
compare. Attacks:

- ``json-300mb``: a 300 MB body to ``/api/edit`` with its ``Content-Length``;
- ``json-300mb-chunked``: the same body chunked (no ``Content-Length``);
- ``flac-8ch-384k``: a 60 s FLAC declaring 8 channels at 384 kHz (a few MB on the wire);
- ``flac-8ch-384k-x3``: three of those at once;
- ``flac-2ch-384k+spectrograms-x3``: a 60 s stereo 384 kHz clip (it fits the decoded-size
  limit) uploaded, then its spectrogram asked for three times at once;
- ``clips-600``: 600 small uploads (the store holds at most ``--max-clips``, 500).

Measured 2026-11-26 on the 2-core CPU box (peak RSS of the server; idle ~455 MB; the 8-channel
FLAC is 40 MB, under the 50 MB upload cap), before the limits -> after:

| attack | status before | peak before | status after | peak after |
| --- | --- | --- | --- | --- |
| json-300mb | 400 | 1355 MB | 413 | 457 MB |
| json-300mb-chunked | 400 | 1532 MB | 413 | 457 MB |
| flac-8ch-384k | 200 | 1558 MB | 400 | 462 MB |
| flac-8ch-384k-x3 | 200 x3 | 3375 MB | 400 x3 | 468 MB |
| flac-2ch-384k+spectrograms-x3 | 200 x4 | 4230 MB | 200 x4 | 693 MB |
| clips-600 | 200 (no cap: 600 kept) | no growth | 200 (500 kept, oldest evicted) | no growth |

SIGTERM: exit -15 before, 0 after. The 693 MB left is drawing one minute at 48 kHz (the
picture's STFT and matplotlib, ~130 MB, one picture at a time) on top of the upload.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

SERVE = "import sys; from instructme.cli import main; sys.exit(main())"
BOUNDARY = "----instructme-bench"


class Server:
    """``instructme serve --demo --port 0`` in a subprocess (cwd ``code``)."""

    def __init__(self, code: Path, tmp: Path):
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--demo", "--port",
                                      "0", "--quiet"], cwd=code, env=env,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            found = re.search(r"http://([\d.]+):(\d+)/", line)
            if found:
                self.host, self.port = found.group(1), int(found.group(2))
                break
        else:
            raise RuntimeError("the server did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        time.sleep(1.0)

    def status_file(self, field: str) -> int:
        """A ``/proc/PID/status`` field in bytes (``VmHWM``, ``VmRSS``)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) * 1024

    def peak_during(self, attack: Callable[[], list[int]]) -> tuple[list[int], int, int]:
        """``(status codes, RSS before, peak RSS during attack)``."""
        before = self.status_file("VmRSS")
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            polled = None
        except OSError:
            polled = [before]
        done = threading.Event()

        def poll() -> None:
            while polled is not None and not done.is_set():
                polled.append(self.status_file("VmRSS"))
                time.sleep(0.01)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        codes = attack()
        time.sleep(0.5)
        done.set()
        poller.join()
        peak = max(polled) if polled is not None else self.status_file("VmHWM")
        return codes, before, peak

    def request(self, method: str, path: str, body: bytes | Iterator[bytes] | None,
                headers: dict[str, str]) -> int:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            conn.request(method, path, body=body, headers=headers,
                         encode_chunked="Content-Length" not in headers and body is not None)
            return conn.getresponse().status
        except (BrokenPipeError, ConnectionResetError):
            try:
                return conn.getresponse().status
            except Exception:
                return -1  # the server closed the connection without an answer
        finally:
            conn.close()

    def upload(self, data: bytes, name: str) -> tuple[int, dict]:
        body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            conn.request("POST", "/api/upload", body=body, headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def json_300mb(size: int = 300_000_000) -> Iterator[bytes]:
    """A JSON body of ``size`` bytes, streamed in 1 MB pieces."""
    head, tail = b'{"audio": "', b'", "instruction": "add a piano"}'
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        n = min(left, 1 << 20)
        yield b"a" * n
        left -= n
    yield tail


def flac(path: Path, seconds: float, sample_rate: int, channels: int) -> bytes:
    """A quiet sine (compresses well) written block by block; cached at ``path``."""
    if not path.exists():
        block = 1 << 18
        t0 = 0
        total = int(seconds * sample_rate)
        with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels,
                          format="FLAC", subtype="PCM_16") as f:
            while t0 < total:
                t = (np.arange(t0, min(total, t0 + block)) / sample_rate)[:, None]
                f.write((0.01 * np.sin(2 * np.pi * 440.0 * t) * np.ones(channels))
                        .astype(np.float32))
                t0 += block
    return path.read_bytes()


def at_once(jobs: list[Callable[[], int]]) -> list[int]:
    out = [0] * len(jobs)

    def run(k: int) -> None:
        out[k] = jobs[k]()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def attacks(server: Server, cache: Path, skip_clips: bool) -> dict[str, Callable[[], list[int]]]:
    wide = flac(cache / "wide-8ch-384k-60s.flac", 60.0, 384_000, 8)
    stereo = flac(cache / "stereo-2ch-384k-60s.flac", 60.0, 384_000, 2)
    print(f"FLAC sizes: 8ch {len(wide) / 1e6:.1f} MB, 2ch {len(stereo) / 1e6:.1f} MB",
          flush=True)
    json_headers = {"Content-Type": "application/json"}

    def spectrograms() -> list[int]:
        status, item = server.upload(stereo, "stereo.flac")
        if status != 200:
            return [status]
        url = item["spectrogram_url"]
        return [status, *at_once([lambda: server.request("GET", url, None, {})] * 3)]

    def clips() -> list[int]:
        small = io.BytesIO()
        sf.write(small, np.zeros(1600, np.float32), 16000, format="WAV")
        codes = [server.upload(small.getvalue(), "s.wav")[0] for _ in range(600)]
        return sorted(set(codes))

    out: dict[str, Callable[[], list[int]]] = {
        "json-300mb": lambda: [server.request("POST", "/api/edit", json_300mb(), {
            **json_headers, "Content-Length": str(300_000_000)})],
        "json-300mb-chunked": lambda: [server.request("POST", "/api/edit", json_300mb(),
                                                      json_headers)],
        "flac-8ch-384k": lambda: [server.upload(wide, "wide.flac")[0]],
        "flac-8ch-384k-x3": lambda: at_once([lambda: server.upload(wide, "wide.flac")[0]] * 3),
        "flac-2ch-384k+spectrograms-x3": spectrograms,
    }
    if not skip_clips:
        out["clips-600"] = clips
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout to run the server from (default: this one)")
    parser.add_argument("--skip-clips", action="store_true", help="skip the 600 uploads")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir())
                        / "instructme-bench-web", help="where the test FLACs are kept")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(args.code, Path(tmp))
        try:
            cases = attacks(server, args.cache, args.skip_clips)
            print(f"server from {args.code}, idle RSS "
                  f"{server.status_file('VmRSS') / 1e6:.0f} MB")
            print(f"{'attack':32s} {'status codes':24s} {'RSS before':>11s} {'peak RSS':>9s}")
            for name, attack in cases.items():
                codes, before, peak = server.peak_during(attack)
                print(f"{name:32s} {str(codes):24s} {before / 1e6:9.0f} MB "
                      f"{peak / 1e6:6.0f} MB", flush=True)
        finally:
            rc = server.stop()
            left = sorted(p.name for p in Path(tmp).glob("instructme-web-*"))
            print(f"server exit code on SIGTERM: {rc}; studio folders left: {left or 'none'}")


if __name__ == "__main__":
    main()
