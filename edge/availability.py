"""While the bus is unreachable, every route that needs it answers 503 at once (in its
route's error shape), rather than waiting for a request to NATS to time out. A request in
the first :data:`GRACE` seconds of a lost connection waits for it to be made again (a
cluster's client fails over to another server in that time); later ones do not wait."""

from __future__ import annotations

from typing import Any, cast

from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as ASGIScope

from praxis.bus import Bus
from praxis.bus.connection import reconnected
from praxis.edge.guard import refuse
from praxis.edge.problems import problem
from praxis.schemas.api import Problem

GRACE = 2.0
"""Seconds a lost connection is waited for before requests are answered 503 at once."""

_NEEDS_THE_BUS = ("/agent-sessions", "/agents", "/v1/", "/graphql")
"""The routes that read or write the bus (the page, its files, the documents, health and
metrics do not; ``/readyz`` says itself what it finds)."""


def needs_the_bus(path: str, method: str) -> bool:
    if path == "/graphql":
        return method == "POST"  # GET is GraphiQL's page (or a query: rare; it waits)
    return path.startswith(_NEEDS_THE_BUS)


def available(app: ASGIApp) -> ASGIApp:
    """``app``, answering 503 for a route that needs the bus while it is not connected."""

    async def middleware(scope: ASGIScope, receive: Receive, send: Send) -> None:
        refused = await _refusal(scope) if str(scope["type"]) == "http" else None
        if refused is not None:
            await refuse(scope, send, refused)
            return
        await app(scope, receive, send)

    return middleware


async def _refusal(scope: ASGIScope) -> Problem | None:
    bus: Bus | None = cast(Any, scope["app"]).state.get("bus")
    if bus is None or bus.nc.is_connected:
        return None
    path, method = str(scope.get("path", "")), str(cast(Any, scope).get("method", ""))
    if not needs_the_bus(path, method) or await reconnected(bus.nc, GRACE):
        return None
    return unreachable(bus)


def unreachable(bus: Bus) -> Problem:
    servers = bus.nc.servers or []
    where = ", ".join(f"{u.hostname}:{u.port}" for u in servers) or "its servers"
    return problem(
        503,
        f"the bus is unreachable (NATS at {where}: reconnecting); try again shortly",
        "bus-unavailable",
    )
