"""``/agent-sessions``: the REST and SSE face of ``SessionClient`` (no logic of its own)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from pydantic import BaseModel, ConfigDict, Field

from praxis.bus import InvalidCursorError, Receipt, SessionClient, Settings
from praxis.edge import sse
from praxis.edge.auth import caller_key, open_stream
from praxis.edge.shared import DEPENDENCIES, list_page
from praxis.schemas import AgentInfo, check_token
from praxis.schemas.api import (
    MAX_PAGE,
    Accepted,
    CreatedSession,
    CreateSessionRequest,
    DecisionRequest,
    EventEnvelope,
    HistoryPage,
    ListSessionsRequest,
    Problem,
    SendMessageRequest,
    SessionPage,
    SessionView,
)
from praxis.schemas.commands import MAX_MESSAGE_CHARS
from praxis.schemas.ids import TOKEN_PATTERN


class TransitionRequest(BaseModel):
    """Why the session is being suspended or completed (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        default=None, max_length=MAX_MESSAGE_CHARS, description="Kept in the state change event."
    )


def _problems(*statuses: int) -> dict[int, ResponseSpec]:
    what = {
        400: "Malformed JSON, an invalid id or cursor.",
        401: "No credentials, or ones that do not hold (with PRAXIS_AUTH=on).",
        429: "Over a limit (requests per second, open streams, sessions): see Retry-After.",
        404: "Unknown session.",
        409: "Not allowed in the session's current state (`state` says which it is).",
        413: "Request body over the limit (PRAXIS_EDGE_MAX_BODY).",
        422: "A field is invalid (`errors` names it).",
        504: "The command is stored but not answered yet (no live worker, or none took "
        "it in time): `command_id` and `cursor` say what to follow for its outcome.",
    }
    return {  # with auth on, any operation may answer 401 or 429
        s: ResponseSpec(Problem, description=what[s], media_type="application/problem+json")
        for s in (*statuses, 401, 429)
    }


_SSE = ResponseSpec(
    EventEnvelope,
    description="`text/event-stream`: one message per event, `id:` its cursor (none for "
    "token deltas), `event:` its type, `data:` an EventEnvelope (the schema of that name).",
    media_type="text/event-stream",
)


SessionIdPath = Annotated[
    str,
    Parameter(
        description="The session id: 1-128 characters of A-Z, a-z, 0-9, '_' and '-' "
        "(anything else answers 400).",
        schema_extra={"pattern": TOKEN_PATTERN},
    ),
]


@get(
    "/agents",
    tags=["agents"],
    summary="The agents the live workers offer",
    dependencies={"client": DEPENDENCIES["client"]},
    responses=_problems(422),
)
async def list_agents(client: SessionClient, all: bool = False) -> list[AgentInfo]:
    """Each agent a live worker runs (from the workers' heartbeats), by name: what a
    session can be created with (``all``: also those used by name only, such as the
    benchmark's ``synthetic``)."""
    return await client.agents(unlisted=all)


class AgentSessions(Controller):
    path = "/agent-sessions"
    tags = ["agent sessions"]
    dependencies = DEPENDENCIES

    @post(
        "/create",
        status_code=201,
        summary="Create a session",
        responses=_problems(400, 409, 413, 422),
    )
    async def create(self, data: CreateSessionRequest, client: SessionClient) -> CreatedSession:
        record, receipt = await client.create(
            data.agent_name,
            task_id=data.task_id,
            metadata=data.metadata,
            initial_message=data.initial_message,
            instructions=data.instructions,
            session_id=data.session_id,
            idle_timeout=data.idle_timeout,
            max_lifetime=data.max_lifetime,
            double_texting=data.double_texting,
        )
        return CreatedSession.of(record, receipt.command_id, receipt.cursor)

    @post("/list", status_code=200, summary="List sessions", responses=_problems(400, 422))
    async def list_sessions(self, data: ListSessionsRequest, client: SessionClient) -> SessionPage:
        page = await list_page(client, data)
        return SessionPage(
            items=[SessionView.of(r) for r in page.items], next_cursor=page.next_cursor
        )

    @route("/{session_id:str}", http_method=HttpMethod.OPTIONS, include_in_schema=False)
    async def allow_on_a_session(self, request: Request[Any, Any, Any]) -> Response[None]:
        """The methods of a session's path. Litestar 2 makes this answer itself for every
        path, but lists only the first handler's method where a path has two (litestar#4169,
        fixed in Litestar 3): here GET and DELETE. (Named to come first: a controller
        registers its handlers in name order, and the first one's route keeps its OPTIONS.)"""
        template = request.scope["path_template"]  # without the parameters' types
        methods = next(
            (
                handlers
                for path, handlers in request.app.route_handler_method_map.items()
                if re.sub(r":\w+}", "}", path) == template
            ),
            {},
        )
        return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})

    @get("/{session_id:str}", summary="Get a session", responses=_problems(400, 404))
    async def get_session(self, session_id: SessionIdPath, client: SessionClient) -> SessionView:
        return SessionView.of(await client.get(check_token(session_id, "session id")))

    @post(
        "/{session_id:str}/messages",
        status_code=202,
        summary="Send a message",
        description="Without `stream`: 202 with the command id and the cursor to follow. "
        "With `stream: true`: 200, an SSE stream that starts with `command.accepted` (the "
        "message is stored: its command id and the cursor to follow if the stream breaks), "
        "then this turn (token deltas, the agent's message, turn.completed or turn.failed) "
        "and ends with the turn; a message the worker refuses after it was stored (double "
        "texting `reject`, a state that changed meanwhile) ends it with `command.rejected`. "
        "While the message waits for a worker the stream gets keep-alive comments; if none "
        "answers it in time, an `error` event says it is stored and not answered yet.",
        responses={
            202: ResponseSpec(Accepted, description="Stored; its effects follow as events."),
            200: _SSE,
            **_problems(400, 404, 409, 413, 422, 504),
        },
    )
    async def send(
        self,
        session_id: SessionIdPath,
        data: SendMessageRequest,
        client: SessionClient,
        settings: Settings,
    ) -> Response[Accepted] | sse.EventStream:
        sid = check_token(session_id, "session id")
        if not data.stream:
            receipt = await client.send(
                sid,
                data.message,
                command_id=data.command_id,
                queue=data.queue,
                on_busy=data.on_busy,
                instructions=data.instructions,
            )
            accepted = Accepted(
                session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor
            )
            return Response(accepted, status_code=202)
        turn = client.turn(
            sid,
            data.message,
            command_id=data.command_id,
            keepalive=settings.sse_keepalive,
            queue=data.queue,
            on_busy=data.on_busy,
            instructions=data.instructions,
            updates=True,
            accepted=True,
        )
        try:  # stored, or refused before anything was stored (answered as an error)
            stored = await anext(turn)
        except BaseException:
            await turn.aclose()
            raise
        assert isinstance(stored, Receipt)
        return sse.response(sse.relay(turn, sse.accepted(stored)))

    @post(
        "/{session_id:str}/suspend",
        status_code=200,
        summary="Suspend a session",
        responses=_problems(400, 404, 409, 422, 504),
    )
    async def suspend(
        self,
        session_id: SessionIdPath,
        client: SessionClient,
        data: TransitionRequest | None = None,
    ) -> SessionView:
        reason = data.reason if data else None
        return SessionView.of(await client.suspend(check_token(session_id, "session id"), reason))

    @post(
        "/{session_id:str}/resume",
        status_code=200,
        summary="Resume a suspended session",
        responses=_problems(400, 404, 409, 422, 504),
    )
    async def resume(self, session_id: SessionIdPath, client: SessionClient) -> SessionView:
        return SessionView.of(await client.resume(check_token(session_id, "session id")))

    @post(
        "/{session_id:str}/complete",
        status_code=200,
        summary="Complete a session",
        responses=_problems(400, 404, 409, 422, 504),
    )
    async def complete(
        self,
        session_id: SessionIdPath,
        client: SessionClient,
        data: TransitionRequest | None = None,
    ) -> SessionView:
        reason = data.reason if data else None
        return SessionView.of(await client.complete(check_token(session_id, "session id"), reason))

    @post(
        "/{session_id:str}/cancel",
        status_code=202,
        summary="Cancel the turn in flight",
        description="The turn ends with `turn.failed` (`cancelled: true`); with no turn in "
        "flight the command is skipped (`command.skipped`).",
        responses=_problems(400, 404),
    )
    async def cancel(self, session_id: SessionIdPath, client: SessionClient) -> Accepted:
        receipt = await client.cancel(check_token(session_id, "session id"))
        return Accepted(
            session_id=receipt.session_id, command_id=receipt.command_id, cursor=receipt.cursor
        )

    @post(
        "/{session_id:str}/tool-calls/{call_id:str}/approve",
        status_code=202,
        summary="Approve a tool call the agent waits on",
        description="The tool runs and the turn goes on once every call it waits on is "
        "decided. Without `stream`: 202 and the cursor to follow; with `stream: true`: an "
        "SSE stream of the rest of the turn.",
        responses={
            202: ResponseSpec(Accepted, description="Stored; the turn goes on as events."),
            200: _SSE,
            **_problems(400, 404, 409, 422),
        },
    )
    async def approve(
        self,
        session_id: SessionIdPath,
        call_id: str,
        client: SessionClient,
        settings: Settings,
        data: DecisionRequest | None = None,
    ) -> Response[Accepted] | sse.EventStream:
        return await _decide(client, session_id, call_id, True, data, settings.sse_keepalive)

    @post(
        "/{session_id:str}/tool-calls/{call_id:str}/deny",
        status_code=202,
        summary="Deny a tool call the agent waits on",
        description="The tool does not run; the model is told it was denied (and why).",
        responses={
            202: ResponseSpec(Accepted, description="Stored; the turn goes on as events."),
            200: _SSE,
            **_problems(400, 404, 409, 422),
        },
    )
    async def deny(
        self,
        session_id: SessionIdPath,
        call_id: str,
        client: SessionClient,
        settings: Settings,
        data: DecisionRequest | None = None,
    ) -> Response[Accepted] | sse.EventStream:
        return await _decide(client, session_id, call_id, False, data, settings.sse_keepalive)

    @delete(
        "/{session_id:str}",
        status_code=204,
        summary="Delete a session",
        description="Removes the session's events, checkpoint and record from the bus.",
        responses=_problems(400, 404),
    )
    async def delete_session(self, session_id: SessionIdPath, client: SessionClient) -> None:
        # A worker purges: the edge's bus user may not (bus/permissions.py).
        await client.request_purge(check_token(session_id, "session id"))

    @get(
        "/{session_id:str}/history",
        summary="Read the conversation",
        responses=_problems(400, 404, 422),
    )
    async def history(
        self,
        session_id: SessionIdPath,
        client: SessionClient,
        before: int | None = Parameter(
            default=None, ge=1, description="A message's `seq`: only messages before it."
        ),
        limit: int = Parameter(default=50, ge=1, le=MAX_PAGE, description="Page size."),
    ) -> HistoryPage:
        items, more = await client.history(
            check_token(session_id, "session id"), before=before, limit=limit, more=True
        )
        return HistoryPage(items=items, next_before=items[0].seq if more and items else None)

    @get(
        "/{session_id:str}/events",
        summary="Follow a session's events (SSE)",
        description="Everything that happens in the session from now on, or after a cursor "
        "(`Last-Event-ID`, which wins, or `?after=`). Every durable event after the cursor "
        "comes exactly once, in order; joining during a turn gives its text so far as one "
        "token.delta, then the rest. Idle streams get keep-alive comments. With "
        "`command_id` (and the cursor it was accepted at): only what that command causes, "
        "ending with its outcome; if no worker answers it in time, an `error` event says it "
        "is stored and not answered yet (as a streamed message's does).",
        responses={200: _SSE, **_problems(400, 404, 422)},
    )
    async def events(
        self,
        request: Request[Any, Any, Any],
        session_id: SessionIdPath,
        client: SessionClient,
        settings: Settings,
        after: int | None = Parameter(
            default=None,
            ge=0,
            description="Event cursor: only events after it.",
            schema_extra={"minimum": 0},  # Litestar leaves out a minimum of 0
        ),
        last_event_id: Annotated[
            str,
            HeaderParameter(
                name="Last-Event-ID",
                description="Set by SSE clients on reconnect: the `id:` of the last event seen.",
                schema_extra={"pattern": r"^[0-9]{0,19}$"},
            ),
        ] = "",
        command_id: str | None = Parameter(
            default=None,
            description="Follow only this command (its `command_id`) until its outcome.",
            schema_extra={"pattern": TOKEN_PATTERN},
        ),
    ) -> sse.EventStream:
        sid = check_token(session_id, "session id")
        if last_event_id:
            after = _cursor(last_event_id)
        keepalive = settings.sse_keepalive
        address = request.client.host if request.client else "?"
        closed = open_stream(request.app.state.auth, caller_key(request.headers, address))
        try:
            if command_id is None:
                items = await client.events(sid, after, keepalive=keepalive, updates=True)
            else:
                await client.get(sid)  # an unknown session is a 404, not a stream
                receipt = Receipt(sid, check_token(command_id, "command id"), after or 0)
                items = client.follow(receipt, keepalive=keepalive, updates=True)
        except BaseException:
            closed()
            raise
        return sse.response(sse.relay(items, on_close=closed))


async def _decide(
    client: SessionClient,
    session_id: str,
    call_id: str,
    approve: bool,
    data: DecisionRequest | None,
    keepalive: float,
) -> Response[Accepted] | sse.EventStream:
    sid = check_token(session_id, "session id")
    reason = data.reason if data else None
    receipt = await client.decide(sid, call_id, approve=approve, reason=reason)
    if data is not None and data.stream:
        return sse.response(sse.relay(client.follow(receipt, keepalive=keepalive, updates=True)))
    accepted = Accepted(session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor)
    return Response(accepted, status_code=202)


def _cursor(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidCursorError(f"Last-Event-ID {text[:40]!r} is not an event cursor") from None
    if value < 0:
        raise InvalidCursorError(f"Last-Event-ID {value} is not an event cursor")
    return value
