"""What the studio refuses before a route runs: foreign ``Host`` names, cross-site writes and
oversized bodies (ASGI middleware; every refusal is the studio's one-line JSON error).

- :class:`HostCheck`: the ``Host`` header must name this server (Starlette's
  ``TrustedHostMiddleware`` decides). A page on another site that re-points its own name at
  127.0.0.1 (DNS rebinding) sends its own name as ``Host`` and is refused (400).
- :class:`OriginCheck`: a state-changing request (anything but GET/HEAD/OPTIONS) whose
  ``Origin`` (or, when there is none, ``Referer``) is another site is refused (403). Browsers
  send cross-site ``multipart/form-data`` POSTs without a CORS preflight, so without this any
  page could upload clips and queue edits. Requests with neither header (curl, scripts) pass.
- :class:`BodyLimit`: bodies over a per-path limit are refused (413) by ``Content-Length``
  before anything is read, and while they stream when there is no such header (or it lies).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Callable, Iterable, Sequence

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Names that always reach a server bound to loopback.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
#: Methods that only read; every other one must come from the studio's own page (or no page).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_HOST_OK = "instructme.host_ok"


def error(status: int, message: str) -> JSONResponse:
    """The studio's error response: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status)


def host_name(host: str) -> str:
    """``host`` as it appears in a ``Host`` header: lower case, IPv6 in brackets."""
    host = host.strip().lower()
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return host


def check_host_pattern(pattern: str) -> str:
    """A checked ``--allowed-host`` value (``name``, ``*.domain``, an IP); ValueError if bad."""
    name = host_name(pattern)
    bare = name.strip("[]")
    if (not bare or name == "*" or "*" in name[1:] or (name.startswith("*") and
                                                      not name.startswith("*."))
            or any(c in bare for c in "/@?# ") or (":" in bare and not name.startswith("["))):
        raise ValueError(f"not a host name: {pattern!r} (a name such as studio.example.org, "
                         "*.example.org, or an IP address, without port)")
    return name


def served_hosts(bound: str, extra: Iterable[str] = ()) -> list[str]:
    """The ``Host`` names a server listening on ``bound`` answers: ``bound`` itself unless it
    is a wildcard address (0.0.0.0, ::), the loopback names, and ``extra``."""
    names = list(LOOPBACK_HOSTS)
    bound_name = host_name(bound)
    if bound_name not in ("0.0.0.0", "[::]", ""):
        names.append(bound_name)
    names.extend(check_host_pattern(h) for h in extra)
    return list(dict.fromkeys(names))


def _matches(host: str, patterns: Iterable[str]) -> bool:
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


class HostCheck:
    """Refuse requests whose ``Host`` is not in ``allowed_hosts`` (400, JSON).

    The decision is Starlette's ``TrustedHostMiddleware`` (its parsing of the header, its
    ``*.domain`` patterns); this only phrases the refusal as the studio's error.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]):
        self.app = app
        self.allowed = list(allowed_hosts)
        self.trusted = TrustedHostMiddleware(self._accepted, allowed_hosts=self.allowed,
                                             www_redirect=False)

    @staticmethod
    async def _accepted(scope: Scope, receive: Receive, send: Send) -> None:
        scope[_HOST_OK] = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (the studio has no websockets)
            await self.app(scope, receive, send)
            return

        async def discard(message: Message) -> None:
            return None

        await self.trusted(scope, receive, discard)
        if scope.pop(_HOST_OK, False):
            await self.app(scope, receive, send)
            return
        shown = Headers(scope=scope).get("host", "")[:100]
        await error(400, f"host {shown!r} is not served here (this server answers "
                         f"{', '.join(self.allowed)}; `instructme serve --allowed-host NAME` "
                         "adds a name)")(scope, receive, send)


def _origin(url: str) -> tuple[str, str] | None:
    """``(host, host[:port])`` of an ``http(s)`` URL, lower case, without a default port;
    None when it is no such URL (``null``, ``file:``...)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = host_name(parts.hostname)
    if port is None or str(port) == _DEFAULT_PORTS[parts.scheme]:
        return host, host
    return host, f"{host}:{port}"


def _strip_default_port(host: str) -> str:
    host = host.strip().lower()
    for port in _DEFAULT_PORTS.values():
        if host.endswith(f":{port}"):
            return host[: -len(port) - 1]
    return host


class OriginCheck:
    """Refuse state-changing requests sent by another site's page (403, JSON).

    The ``Origin`` (or, absent, the ``Referer``) must be the server's own origin: its
    ``host[:port]`` equals the request's ``Host``, or its host is one of ``extra_hosts`` (names
    given with ``--allowed-host``, e.g. behind a proxy that rewrites ``Host``). ``Origin:
    null`` and non-HTTP origins are foreign.
    """

    def __init__(self, app: ASGIApp, extra_hosts: Sequence[str] = ()):
        self.app = app
        self.extra = [host_name(h) for h in extra_hosts]

    def foreign(self, headers: Headers) -> str | None:
        """The foreign origin that sent the request, or None when it may go ahead."""
        claimed = headers.get("origin")
        if claimed is None:
            claimed = headers.get("referer")
        if claimed is None:
            return None  # not sent by a browser page
        origin = _origin(claimed)
        if origin is not None:
            host, netloc = origin
            if netloc == _strip_default_port(headers.get("host", "")):
                return None
            if _matches(host, self.extra):
                return None
        return claimed[:100] or "(empty)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        origin = self.foreign(Headers(scope=scope))
        if origin is None:
            await self.app(scope, receive, send)
            return
        await error(403, f"refused a {scope['method']} from another site ({origin!r}): the "
                         "studio takes changes only from its own page")(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``limit_of(path)`` bytes (413, JSON, ``message(limit)``).

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    that streams past it (chunked, or a lying header) is cut off as soon as it does.
    """

    def __init__(self, app: ASGIApp, limit_of: Callable[[str], int],
                 message: Callable[[str, int], str]):
        self.app, self.limit_of, self.message = app, limit_of, message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limit_of(path)
        text = self.message(path, limit)
        length = Headers(scope=scope).get("content-length", "")
        if length.strip().isdigit() and int(length) > limit:
            await error(413, text)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, text)
            return message

        await self.app(scope, limited, send)
