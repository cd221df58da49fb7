"""Run the studio app under uvicorn: in the foreground (``instructme serve``) or in a thread
on a free loopback port (tests, screenshots).

``instructme serve`` binds its port first (:func:`bind`), so a port that cannot be bound is a
one-line error before any folder is made. Ctrl-C (SIGINT) and SIGTERM stop it the same way:
uvicorn stops taking requests, the app's shutdown cancels the running edit and removes the
temporary folder, and the process exits 130 (SIGINT, as for any interrupted command) or 0
(SIGTERM).
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from instructme.errors import InstructMEError
from instructme.web.app import close_app


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port=0``: a free one); a one-line
    :class:`InstructMEError` when it cannot be bound."""
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


@contextlib.contextmanager
def _sigterm_returns() -> Iterator[None]:
    """While serving, a SIGTERM that uvicorn caught (and re-raises once it has shut down) ends
    the process normally instead of killing it after the fact."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(app: FastAPI, sock: socket.socket, log_level: str = "info",
          announce: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` on the bound ``sock`` until Ctrl-C (KeyboardInterrupt is raised once the
    app has shut down) or SIGTERM (returns); ``announce(url)`` is called first. The app's
    store and worker are closed however it ends, even if uvicorn never started it."""
    if announce is not None:
        announce(url_of(sock))
    try:
        with _sigterm_returns():
            uvicorn.Server(_config(app, log_level)).run(sockets=[sock])
    finally:
        sock.close()
        close_app(app)


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
    sock = bind(host, port)
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
