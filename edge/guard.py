"""What keeps a web page from driving an edge it can reach (the user's own, on loopback).

With auth off (the default on loopback) anyone who can send a request may drive the edge,
and a browser sends requests for any page it shows. Three rules, checked before anything
else sees the request:

- **Host.** On a loopback address the ``Host`` header must name it (``127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``): a page whose own name resolves to 127.0.0.1 (DNS
  rebinding) is same-origin for the browser, but says its own name here. 400.
- **Origin.** A browser says which page a request comes from (``Origin``, on every
  cross-origin request and on same-origin ones that change state, WebSocket handshakes
  included). Only the edge's own pages (the chat page) and ``PRAXIS_CORS_ORIGINS`` may.
  403. Clients that are not browsers send no ``Origin`` and are not concerned.
- **JSON only.** A request that changes state (not GET, HEAD or OPTIONS) with a body, or
  a ``Content-Type``, must say JSON: a form or ``text/plain`` is what a page may send to
  another origin without asking first (no CORS preflight). 415.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any, cast

from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as ASGIScope

from praxis.edge.problems import MEDIA_TYPE, openai_body, problem
from praxis.schemas.api import Problem

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def guarded(app: ASGIApp, cors_origins: Iterable[str]) -> ASGIApp:
    """``app`` behind the three rules above."""
    allowed = frozenset(o.rstrip("/").lower() for o in cors_origins)

    async def middleware(scope: ASGIScope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) in ("http", "websocket"):
            refused = refusal(scope, allowed)
            if refused is not None:
                await refuse(scope, send, refused)
                return
        await app(scope, receive, send)

    return middleware


def refusal(scope: ASGIScope, cors_origins: frozenset[str]) -> Problem | None:
    """Why the request is refused, or ``None``."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    host = headers.get("host", "")
    names = _loopback_names(scope.get("server"))
    if names is not None and host.lower() not in names:
        return problem(
            400,
            f"Host {host[:100]!r} is not this edge's address ({', '.join(sorted(names))}): "
            "an edge on loopback answers only to its own name",
            "bad-host",
        )
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, host) and origin.lower() not in cors_origins:
        return problem(
            403,
            f"requests from the web page at {origin[:100]!r} are refused: only this edge's own "
            "pages and the origins in PRAXIS_CORS_ORIGINS may use it",
            "cross-origin",
        )
    method = str(cast(dict[str, Any], scope).get("method", "GET"))
    if str(scope["type"]) == "http" and method not in SAFE_METHODS:
        kind = headers.get("content-type")
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        if (kind is not None or has_body) and not _is_json(kind or ""):
            return problem(
                415,
                f"a request body must be JSON (Content-Type: application/json), not "
                f"{(kind or 'none')[:100]!r}",
                "unsupported-media-type",
            )
    return None


def _loopback_names(server: tuple[str, int | None] | None) -> frozenset[str] | None:
    """The ``Host`` values an edge listening on ``server`` answers to; ``None``: any (it is
    not on loopback, or the address is unknown)."""
    if not server:
        return None
    address, port = server[0], server[1]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not ip.is_loopback:
        return None
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    hosts = {shown, "localhost"} | ({"127.0.0.1"} if ip.version == 4 else {"[::1]"})
    names = {f"{h}:{port}" for h in hosts}
    if port in (80, None):
        names |= hosts
    return frozenset(names)


def _same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names the host the request was sent to:
    a page of this edge (the scheme is not compared: a proxy in front may add TLS)."""
    _, sep, authority = origin.partition("://")
    return bool(sep) and bool(host) and authority.lower() == host.lower()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def refuse(scope: ASGIScope, send: Send, found: Problem) -> None:
    """Answer ``found`` in the shape of the route: a problem, the OpenAI error under
    ``/v1``, GraphQL's ``errors`` at ``/graphql``; a WebSocket handshake is closed."""
    if str(scope["type"]) == "websocket":  # before the handshake is accepted: an HTTP 403
        close = {"type": "websocket.close", "code": 1008, "reason": found.detail[:120]}
        await send(cast(Any, close))
        return
    path = str(scope.get("path", ""))
    found.instance = path
    status, media = found.status, MEDIA_TYPE
    body = found.model_dump_json(exclude_none=True).encode()
    if path.startswith("/v1/"):  # the OpenAI routes answer errors in the OpenAI shape
        status, shaped = openai_body(found)
        body, media = json.dumps(shaped).encode(), "application/json"
    elif path == "/graphql":
        error = {"message": found.detail, "extensions": {"code": found.code}}
        body, media = json.dumps({"errors": [error]}).encode(), "application/json"
    headers = [(b"content-type", media.encode()), (b"content-length", b"%d" % len(body))]
    start = {"type": "http.response.start", "status": status, "headers": headers}
    await send(cast(Any, start))
    await send(cast(Any, {"type": "http.response.body", "body": body}))
