"""``instructme serve`` as a process: Ctrl-C or SIGTERM during an edit cancels it, removes the
studio's temporary folder and exits 130 / 0; a port that cannot be bound is a one-line error
that leaves no folder behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from web_support import Client, wav_bytes

SERVE = [sys.executable, "-c", "import sys; from instructme.cli import main; sys.exit(main())",
         "serve"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from instructme.editing.pipeline import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("serve") / "tiny"
    build_tiny_pipeline(folder, seed=0)
    return folder


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}


def _studio_folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("instructme-web-*"))


def _start(model: Path, tmp: Path) -> tuple[subprocess.Popen[str], Client, list[str]]:
    proc = subprocess.Popen([*SERVE, "--model", str(model), "--port", "0", "--quiet",
                             "--max-queue", "2"], env=_env(tmp), stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 120
    while url is None:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "the studio did not start"
        lines.append(line)
        found = re.search(r"(http://\S+?)/ ", line)
        url = found.group(1) if found else None
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    for _ in range(200):  # announced once bound; serving a moment later
        try:
            Client(url).request("GET", "/favicon.ico")
            break
        except OSError:
            time.sleep(0.05)
    return proc, Client(url), lines


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_during_an_edit_cancels_it_and_cleans_up(model: Path, tmp_path: Path,
                                                        sig: int, code: int) -> None:
    proc, client, lines = _start(model, tmp_path / "tmp")
    try:
        assert len(_studio_folders(tmp_path / "tmp")) == 1
        status, item = client.upload(wav_bytes(2.0), "a.wav")
        assert status == 200, item
        status, job = client.json("POST", "/api/edit", {"audio": item["id"], "steps": 200,
                                                        "instruction": "add a piano"})
        assert status == 200, job
        deadline = time.monotonic() + 120
        while client.json("GET", f"/api/jobs/{job['job']}")[1]["step"] < 1:
            assert time.monotonic() < deadline, "the edit never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        rc = proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)  # the stderr reader drains
    err = "".join(lines)
    assert rc == code, err
    assert "terminate called" not in err and "Traceback" not in err, err
    assert _studio_folders(tmp_path / "tmp") == []


def test_busy_port_is_a_one_line_error_and_leaves_nothing(model: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = subprocess.run([*SERVE, "--model", str(model), "--port", str(port)],
                             env=_env(tmp), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}"), run.stderr
    assert run.stderr.count("\n") == 1
    assert _studio_folders(tmp) == []
