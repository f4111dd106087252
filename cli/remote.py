"""The CLI's session commands over a remote edge (``PRAXIS_EDGE_URL``, ``PRAXIS_API_KEY``):
for users who hold an API key rather than bus credentials.

:class:`EdgeClient` offers the part of :class:`bus.SessionClient` that the commands use,
with the same types, over the REST API and its Server-Sent Events; the commands do not know
which one they drive. Problems the edge answers become the same errors the bus raises.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal, Protocol, overload

import httpx
from httpx_sse import EventSource

from praxis.bus import (
    BusError,
    IllegalTransitionError,
    Page,
    Receipt,
    SessionNotFoundError,
    UnknownAgentError,
)
from praxis.schemas import (
    Delivery,
    DoubleTexting,
    Event,
    HistoryItem,
    SessionRecord,
    SessionState,
    TokenDelta,
)
from praxis.schemas.api import (
    Accepted,
    CreatedSession,
    HistoryPage,
    Problem,
    SessionPage,
    SessionView,
)

History = list[HistoryItem]  # EdgeClient has a method named list
Events = list[Event]

STREAM_READ_TIMEOUT = 60.0
"""Seconds a stream may stay silent (the edge sends a keep-alive every 15 by default)."""


class Sessions(Protocol):
    """What the CLI's session commands need: :class:`bus.SessionClient` or :class:`EdgeClient`."""

    async def create(
        self,
        agent: str,
        *,
        task_id: str | None = ...,
        idle_timeout: float | None = ...,
        max_lifetime: float | None = ...,
        double_texting: DoubleTexting = ...,
        initial_message: str | None = ...,
        instructions: str | None = ...,
    ) -> tuple[SessionRecord, Receipt]: ...

    async def get(self, session_id: str) -> SessionRecord: ...

    async def list_sessions(
        self,
        *,
        state: SessionState | None = ...,
        agent: str | None = ...,
        task_id: str | None = ...,
        limit: int = ...,
    ) -> Page: ...

    @overload
    async def history(self, session_id: str, *, limit: int | None = ...) -> History: ...

    @overload
    async def history(
        self, session_id: str, *, limit: int | None = ..., more: Literal[True]
    ) -> tuple[History, bool]: ...

    def turn(
        self, session_id: str, message: str, *, instructions: str | None = ...
    ) -> AsyncGenerator[Delivery, None]: ...

    def follow(self, receipt: Receipt) -> AsyncIterator[Delivery]: ...

    async def wait(self, receipt: Receipt) -> Events: ...

    async def decide(
        self, session_id: str, call_id: str, *, approve: bool, reason: str | None = ...
    ) -> Receipt: ...

    async def suspend(self, session_id: str) -> SessionRecord: ...

    async def resume(self, session_id: str) -> SessionRecord: ...

    async def complete(self, session_id: str) -> SessionRecord: ...


class EdgeError(BusError):
    """What the edge answered instead (its problem's detail, or why it could not be asked)."""

    def __init__(self, message: str, problem: Problem | None = None) -> None:
        super().__init__(message)
        self.problem = problem


class EdgeClient:
    """Sessions through a Praxis edge's REST API, with an API key or a JWT."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, read=STREAM_READ_TIMEOUT),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- requests ------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> Any:
        try:
            r = await self.http.request(method, path, json=body, params=params or None)
        except httpx.HTTPError as e:
            raise EdgeError(f"cannot reach the edge at {self.url}: {e or type(e).__name__}") from e
        if r.status_code >= 400:
            raise _error(r.status_code, r.content, path)
        return r.json()

    async def _stream(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> AsyncGenerator[Delivery, None]:
        """The deliveries of an SSE response that ends with its command's outcome (a final
        event); a stream the edge ends before it is an error (the edge is stopping, say):
        what the command causes goes on, and is read again from its cursor."""
        headers = {"Accept": "text/event-stream"}
        try:
            async with self.http.stream(
                method, path, json=body, params=params or None, headers=headers
            ) as r:
                if r.status_code >= 400:
                    raise _error(r.status_code, await r.aread(), path)
                async for sse in EventSource(r).aiter_sse():
                    if sse.event == "error":
                        raise _error(0, sse.data.encode(), path)
                    if not sse.data or sse.event == "command.accepted":
                        continue  # a comment (opened, keep-alive), or "it is stored"
                    envelope = json.loads(sse.data)
                    item = Delivery.model_validate(
                        {"cursor": envelope["cursor"], "event": envelope["data"]}
                    )
                    yield item
                    if not isinstance(item.event, TokenDelta) and item.event.final:
                        return
        except httpx.HTTPError as e:
            raise EdgeError(f"the edge at {self.url} broke off: {e or type(e).__name__}") from e
        raise EdgeError(f"the edge at {self.url} ended the stream before the outcome")

    # -- sessions ------------------------------------------------------------------------

    async def create(
        self,
        agent: str,
        *,
        task_id: str | None = None,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        double_texting: DoubleTexting = "enqueue",
        initial_message: str | None = None,
        instructions: str | None = None,
    ) -> tuple[SessionRecord, Receipt]:
        body = {
            "agent_name": agent,
            "task_id": task_id,
            "idle_timeout": idle_timeout,
            "max_lifetime": max_lifetime,
            "double_texting": double_texting,
            "initial_message": initial_message,
            "instructions": instructions,
        }
        try:
            answer = await self._call("POST", "/agent-sessions/create", _present(body))
        except EdgeError as e:
            if e.problem is None or not e.problem.type.endswith(":unknown-agent"):
                raise
            offered = await self._call("GET", "/agents")  # the same error as on the bus
            raise UnknownAgentError(agent, [a["name"] for a in offered]) from e
        made = CreatedSession.model_validate(answer)
        record = SessionRecord(
            session_id=made.session_id,
            task_id=made.task_id,
            agent=made.agent_name,
            state=made.state,
            created_at=made.created_at,
            updated_at=made.created_at,
        )
        return record, Receipt(made.session_id, made.command_id, made.cursor)

    async def get(self, session_id: str) -> SessionRecord:
        return _record(await self._call("GET", f"/agent-sessions/{session_id}"))

    async def list_sessions(
        self,
        *,
        state: SessionState | None = None,
        agent: str | None = None,
        task_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        body = {"state": state, "agent_name": agent, "task_id": task_id, "cursor": cursor}
        page = SessionPage.model_validate(
            await self._call(
                "POST", "/agent-sessions/list", {**_present(body), "limit": min(limit, 1000)}
            )
        )
        return Page([v.record() for v in page.items], page.next_cursor)

    @overload
    async def history(
        self, session_id: str, *, before: int | None = None, limit: int | None = None
    ) -> History: ...

    @overload
    async def history(
        self,
        session_id: str,
        *,
        before: int | None = None,
        limit: int | None = None,
        more: Literal[True],
    ) -> tuple[History, bool]: ...

    async def history(
        self,
        session_id: str,
        *,
        before: int | None = None,
        limit: int | None = None,
        more: bool = False,
    ) -> History | tuple[History, bool]:
        """The conversation, oldest first (the whole of it, paged backwards from the end,
        unless ``before`` or ``limit`` asks for one page); ``more=True``: also whether
        there are older messages."""
        items: History = []
        while True:
            params = _present({"before": before, "limit": min(limit or 1000, 1000)})
            page = HistoryPage.model_validate(
                await self._call("GET", f"/agent-sessions/{session_id}/history", **params)
            )
            items[:0] = page.items
            if page.next_before is None or limit is not None:
                return (items, page.next_before is not None) if more else items
            before = page.next_before

    def turn(
        self, session_id: str, message: str, *, instructions: str | None = None
    ) -> AsyncGenerator[Delivery, None]:
        body: dict[str, Any] = {"message": message, "stream": True}
        if instructions is not None:
            body["instructions"] = instructions
        return self._stream("POST", f"/agent-sessions/{session_id}/messages", body)

    def follow(self, receipt: Receipt) -> AsyncGenerator[Delivery, None]:
        """What a stored command causes (its turns' text included) until it is done; the
        edge gives up, as the bus does, when no worker is there to answer it."""
        path = f"/agent-sessions/{receipt.session_id}/events"
        return self._stream("GET", path, after=receipt.cursor, command_id=receipt.command_id)

    async def wait(self, receipt: Receipt) -> Events:
        return [
            item.event
            async for item in self.follow(receipt)
            if not isinstance(item.event, TokenDelta)
        ]

    async def decide(
        self, session_id: str, call_id: str, *, approve: bool, reason: str | None = None
    ) -> Receipt:
        verb = "approve" if approve else "deny"
        path = f"/agent-sessions/{session_id}/tool-calls/{call_id}/{verb}"
        done = Accepted.model_validate(await self._call("POST", path, _present({"reason": reason})))
        return Receipt(done.session_id, done.command_id, done.cursor)

    async def _transition(self, session_id: str, action: str) -> SessionRecord:
        return _record(await self._call("POST", f"/agent-sessions/{session_id}/{action}", {}))

    async def suspend(self, session_id: str) -> SessionRecord:
        return await self._transition(session_id, "suspend")

    async def resume(self, session_id: str) -> SessionRecord:
        return await self._transition(session_id, "resume")

    async def complete(self, session_id: str) -> SessionRecord:
        return await self._transition(session_id, "complete")


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _record(data: dict[str, Any]) -> SessionRecord:
    """A session as the edge shows it, in the shape the bus keeps it."""
    return SessionView.model_validate(data).record()


def _error(status: int, body: bytes, path: str) -> BusError:
    """The error a problem answer stands for."""
    try:
        problem = Problem.model_validate_json(body)
    except ValueError:
        return EdgeError(f"the edge answered {status} to {path}: {body[:200]!r}")
    detail = problem.detail or problem.title
    fields = [f"{e.field}: {e.message}" for e in problem.errors or () if e.message != detail]
    if fields:
        detail += " (" + "; ".join(fields) + ")"
    if problem.status == 401:
        return EdgeError(
            f"{detail}: set PRAXIS_API_KEY to a key from 'praxis keys create'", problem
        )
    if problem.status == 404 and problem.code == "NOT_FOUND" and "/agent-sessions/" in path:
        return SessionNotFoundError(path.split("/")[2])
    if problem.status == 409 and problem.state is not None:
        sid = path.split("/")[2] if path.count("/") >= 2 else "?"
        return IllegalTransitionError(sid, "change", problem.state, detail)
    if problem.status == 429:
        return EdgeError(f"{detail} (too many requests: try again shortly)", problem)
    return EdgeError(detail, problem)
