"""Run the studio app under uvicorn: in the foreground (``instructme serve``) or in a thread
on a free loopback port (tests, screenshots)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from instructme.errors import InstructMEError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InstructMEError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _config(app: FastAPI, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False,
                          timeout_graceful_shutdown=5)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 7860, log_level: str = "info",
          announce: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` until interrupted (Ctrl-C / SIGTERM shut it down cleanly);
    ``announce(url)`` is called once the port is bound (``port=0`` picks a free one)."""
    sock = _bind(host, port)
    if announce is not None:
        announce(url_of(sock))
    try:
        uvicorn.Server(_config(app, log_level)).run(sockets=[sock])
    finally:
        sock.close()


@dataclass
class RunningServer:
    """A server started by :func:`start_in_thread`; ``stop()`` shuts it down and joins."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 20.0) -> RunningServer:
    """Start ``app`` in a daemon thread (``port=0``: a free port) and wait until it serves."""
    sock = _bind(host, port)
    server = uvicorn.Server(_config(app, "warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="instructme-web-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    return RunningServer(url_of(sock), server, thread, sock)
