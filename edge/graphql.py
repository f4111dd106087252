"""GraphQL at ``/graphql``: the REST operations over the same ``SessionClient``.

Queries, mutations and a live subscription (both WebSocket protocols), GraphiQL in the
browser. Types are made from the API models of :mod:`praxis.schemas.api`; errors carry the same
codes as REST problems (``extensions.code``), mapped in :mod:`praxis.edge.problems`. The SDL is
kept in ``schemas/agent_session.graphql`` (``python -m praxis.edge.graphql`` prints it; a test
keeps the two equal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar, cast

import strawberry
from cross_web import HTTPException as StrawberryHTTPException
from graphql import GraphQLError, GraphQLSyntaxError
from litestar.datastructures import State
from litestar.types import Scope as AsgiScope
from pydantic import ValidationError
from strawberry.dataloader import DataLoader
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaskErrors, ParserCache, ValidationCache
from strawberry.litestar import BaseContext, make_graphql_controller
from strawberry.scalars import JSON
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionContext, Info
from strawberry.types.unset import UNSET, UnsetType

from praxis.bus import BusError, SessionClient, Settings, metrics
from praxis.bus import Scope as BusScope
from praxis.bus.client import list_cursor
from praxis.edge import problems
from praxis.edge.auth import UnauthenticatedError, caller_key, open_stream, token_from_payload
from praxis.edge.shared import list_page, scoped_client
from praxis.schemas import (
    DoubleTexting,
    HistoryItem,
    Interface,
    InvalidIdError,
    Owner,
    SessionState,
    check_token,
)
from praxis.schemas.api import (
    MAX_PAGE,
    CreatedSession,
    EventEnvelope,
    ListSessionsRequest,
    SessionView,
)

log = logging.getLogger("praxis.edge.graphql")

T = TypeVar("T")
HistoryKey = tuple[str, int, int | None]


class Context(BaseContext, kw_only=True):
    """What every resolver gets (``info.context``): the caller's client, the loader that
    batches history reads, the settings, the app's state; for a WebSocket, what its
    ``connection_init`` said."""

    client: SessionClient
    histories: DataLoader[HistoryKey, list[HistoryItem]]
    settings: Settings
    state: State
    connection_params: Any = None
    """A WebSocket's ``connection_init`` payload (Strawberry sets it)."""
    stream_key: str | None = None
    """Whose subscriptions a WebSocket's count against (its credentials)."""


# Registers the enum with Strawberry (the same class, given a GraphQL definition).
strawberry.enum(SessionState, description="Where a session is in its lifecycle.")


# -- errors ------------------------------------------------------------------------------

_GRAPHQL_CODES = {"BAD_REQUEST": "BAD_USER_INPUT", "PAYLOAD_TOO_LARGE": "BAD_USER_INPUT"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def graphql_error(exc: BaseException) -> GraphQLError:
    """The GraphQL face of a REST problem: the same code, the state, the field."""
    found = problems.problem_for(exc)
    extensions: dict[str, Any] = {"code": _GRAPHQL_CODES.get(found.code, found.code)}
    if found.state is not None:
        extensions["state"] = found.state.value
    if found.errors:
        extensions["field"] = _camel(found.errors[0].field.replace(" ", "_"))
    return GraphQLError(found.detail, extensions=extensions, original_error=None)


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except (BusError, InvalidIdError, ValidationError) as e:
        raise graphql_error(e) from e


def _token(value: str, kind: str) -> str:
    try:
        return check_token(value, kind)
    except InvalidIdError as e:
        raise graphql_error(e) from e


class _Errors(MaskErrors):
    """Strawberry's MaskErrors; what it hides leaves with the code INTERNAL."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked


class _Schema(strawberry.Schema):
    """Every error leaves with an ``extensions.code``, and the caller's own mistakes (an
    unknown session, a bad query) are not logged as server errors: unexpected ones are
    logged where they are masked."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if not (error.extensions or {}).get("code"):
                parse = isinstance(error, GraphQLSyntaxError)
                code = "GRAPHQL_PARSE_FAILED" if parse else "GRAPHQL_VALIDATION_FAILED"
                error.extensions = {**(error.extensions or {}), "code": code}


def _check_page(first: int) -> None:
    if not 1 <= first <= MAX_PAGE:
        raise GraphQLError(
            f"first must be 1-{MAX_PAGE}", extensions={"code": "BAD_USER_INPUT", "field": "first"}
        )


def _should_mask(error: GraphQLError) -> bool:
    """Hide what was not raised on purpose (it is logged), never a user's own mistake."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | InvalidOperationTypeError):
        return False  # e.g. a mutation over the legacy graphql-ws protocol: the caller's
    log.error("unexpected error in a GraphQL resolver", exc_info=original)
    return True


# -- types -------------------------------------------------------------------------------


@strawberry.type(description="A message of the conversation.")
class Message:
    seq: int = strawberry.field(description="The event's cursor; pass as `before` to page.")
    role: str = strawberry.field(description="`user` or `agent`.")
    content: str
    timestamp: datetime
    interrupted: bool = strawberry.field(description="An agent reply cut short.")

    @classmethod
    def of(cls, item: HistoryItem) -> Message:
        return cls(
            seq=item.seq,
            role=item.role,
            content=item.content,
            timestamp=item.ts,
            interrupted=item.interrupted,
        )


@strawberry.type(description="An agent a live worker runs: what a session can be created with.")
class Agent:
    name: str
    description: str
    source: str = strawberry.field(description="Where the agent comes from (entry point, file).")


@strawberry.type(description="A tool call the agent's turn waits on until a human decides.")
class PendingToolCall:
    call_id: str = strawberry.field(description="Pass it to approveToolCall or denyToolCall.")
    tool: str
    args: JSON = strawberry.field(description="The arguments the model gave.")
    needs_approval: bool


@strawberry.type(description="Who a session belongs to.")
class SessionOwner:
    principal: str
    tenant: str


@strawberry.type(description="A session with an agent.")
class AgentSession:
    session_id: str
    task_id: str = strawberry.field(description="The task the session serves.")
    agent_name: str
    state: SessionState
    created_at: datetime
    updated_at: datetime
    metadata: JSON
    created_by: str = strawberry.field(description="The interface it was created from.")
    message_count: int = strawberry.field(description="User and agent messages.")
    user_messages: int = strawberry.field(description="The user's messages.")
    agent_messages: int = strawberry.field(description="The agent's messages.")
    turns: int
    failed_turns: int
    double_texting: str = strawberry.field(
        description="What a message sent while it is busy does: enqueue, reject, interrupt "
        "or rollback."
    )
    idle_timeout: float = strawberry.field(description="Seconds of inactivity before it expires.")
    max_lifetime: float = strawberry.field(description="Seconds after creation it expires at.")
    active_at: datetime | None = strawberry.field(description="Its latest activity.")
    expires_at: datetime | None = strawberry.field(
        description="When it expires unless there is activity first; null: never, or ended."
    )
    waiting_for: list[PendingToolCall] = strawberry.field(
        description="Tool calls the agent's turn waits on: approve or deny each to go on."
    )
    owner: SessionOwner | None = strawberry.field(
        description="Who the session belongs to; null: made without credentials."
    )

    @classmethod
    def of(cls, view: SessionView) -> AgentSession:
        data = view.model_dump()
        data["waiting_for"] = [PendingToolCall(**c) for c in data["waiting_for"]]
        data["owner"] = SessionOwner(**data["owner"]) if data["owner"] else None
        return cls(**data)

    @strawberry.field(description="Messages oldest first: the last `first` before `before`.")
    async def history(
        self, info: Info[Context, None], first: int = 50, before: int | None = None
    ) -> list[Message]:
        _check_page(first)
        loader: DataLoader[HistoryKey, list[HistoryItem]] = info.context.histories
        return [Message.of(i) for i in await loader.load((self.session_id, first, before))]


@strawberry.type(description="One event of a session, as subscribers see it.")
class AgentSessionEvent:
    type: str = strawberry.field(description="e.g. `agent.message` or `token.delta`.")
    data: JSON = strawberry.field(description="The event itself, all its fields.")
    timestamp: datetime
    cursor: int | None = strawberry.field(
        description="The event's cursor (resume with `after`); null for token deltas."
    )

    @classmethod
    def of(cls, envelope: EventEnvelope) -> AgentSessionEvent:
        return cls(
            type=envelope.type,
            data=cast(JSON, envelope.data),
            timestamp=envelope.timestamp,
            cursor=envelope.cursor,
        )


@strawberry.type
class AgentSessionEdge:
    cursor: str
    node: AgentSession


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A page of sessions, newest first.")
class AgentSessionConnection:
    edges: list[AgentSessionEdge]
    page_info: PageInfo


@strawberry.input(description="Which sessions to list.")
class AgentSessionFilter:
    state: SessionState | None = None
    agent_name: str | None = None
    task_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@strawberry.type(description="A new session; its first command's effects follow `cursor`.")
class CreatedAgentSession:
    session_id: str
    task_id: str
    state: SessionState
    agent_name: str
    created_at: datetime
    command_id: str
    cursor: int = strawberry.field(description="Subscribe with `after: cursor` to miss nothing.")


@strawberry.type(description="A command stored on the bus; its effects follow `cursor`.")
class CommandReceipt:
    session_id: str
    command_id: str
    cursor: int


# -- operations --------------------------------------------------------------------------

_WAYS: tuple[DoubleTexting, ...] = ("enqueue", "reject", "interrupt", "rollback")


def _way(value: str) -> DoubleTexting:
    for way in _WAYS:
        if value == way:
            return way
    raise GraphQLError(
        f"unknown double-texting way {value!r}: use one of {', '.join(_WAYS)}",
        extensions={"code": "BAD_USER_INPUT"},
    )


def _client(info: Info[Context, None]) -> SessionClient:
    client: SessionClient = info.context.client
    return client


@strawberry.type
class Query:
    @strawberry.field(description="The agents the live workers offer, by name.")
    async def agents(self, info: Info[Context, None]) -> list[Agent]:
        found = await _call(_client(info).agents())
        return [Agent(name=a.name, description=a.description, source=a.source) for a in found]

    @strawberry.field(description="One session (error NOT_FOUND if there is none).")
    async def agent_session(self, info: Info[Context, None], session_id: str) -> AgentSession:
        sid = _token(session_id, "session id")
        return AgentSession.of(SessionView.of(await _call(_client(info).get(sid))))

    @strawberry.field(description="Sessions newest first, filtered, in pages.")
    async def agent_sessions(
        self,
        info: Info[Context, None],
        filter: AgentSessionFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> AgentSessionConnection:
        _check_page(first)
        f = filter or AgentSessionFilter()
        page = await _call(
            list_page(
                _client(info),
                ListSessionsRequest.model_construct(
                    state=f.state,
                    agent_name=f.agent_name,
                    task_id=f.task_id,
                    created_after=f.created_after,
                    created_before=f.created_before,
                    limit=first,
                    cursor=after,
                ),
            )
        )
        edges = [
            AgentSessionEdge(cursor=list_cursor(r), node=AgentSession.of(SessionView.of(r)))
            for r in page.items
        ]
        return AgentSessionConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.next_cursor is not None, end_cursor=page.next_cursor
            ),
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start a session, optionally with a first message.")
    async def create_agent_session(
        self,
        info: Info[Context, None],
        agent_name: str,
        initial_message: str | None = None,
        task_id: str | None = None,
        metadata: JSON | None = None,
        session_id: str | None = None,
        idle_timeout: Annotated[
            float | None,
            strawberry.argument(description="Seconds of inactivity before it expires (0: never)."),
        ] = None,
        max_lifetime: Annotated[
            float | None,
            strawberry.argument(description="Seconds after creation it expires at (0: never)."),
        ] = None,
        double_texting: Annotated[
            str,
            strawberry.argument(
                description="A message sent while the session is busy: enqueue (waits), "
                "reject, interrupt (stops the turn in flight), rollback (and discards it)."
            ),
        ] = "enqueue",
    ) -> CreatedAgentSession:
        record, receipt = await _call(
            _client(info).create(
                agent_name,
                task_id=task_id,
                metadata=dict(metadata) if isinstance(metadata, dict) else None,
                initial_message=initial_message,
                session_id=session_id,
                idle_timeout=idle_timeout,
                max_lifetime=max_lifetime,
                double_texting=_way(double_texting),
            )
        )
        created = CreatedSession.of(record, receipt.command_id, receipt.cursor)
        return CreatedAgentSession(**created.model_dump())

    @strawberry.mutation(description="Queue a user message; the reply follows as events.")
    async def send_message_to_session(
        self,
        info: Info[Context, None],
        session_id: str,
        message: str,
        command_id: str | None = None,
        on_busy: Annotated[
            str | None,
            strawberry.argument(
                description="If the session is busy: enqueue, reject, interrupt or rollback "
                "(default: the session's doubleTexting)."
            ),
        ] = None,
        queue: Annotated[
            bool,
            strawberry.argument(
                description="If the session is suspended, keep the message and answer it "
                "when the session is resumed (instead of a CONFLICT error)."
            ),
        ] = False,
    ) -> CommandReceipt:
        sid = _token(session_id, "session id")
        settings: Settings = info.context.settings
        if not message or len(message.encode()) > settings.edge_max_body:
            raise GraphQLError(
                f"message must be 1 to {settings.edge_max_body} bytes",
                extensions={"code": "BAD_USER_INPUT", "field": "message"},
            )
        way = _way(on_busy) if on_busy is not None else None
        receipt = await _call(
            _client(info).send(sid, message, command_id=command_id, queue=queue, on_busy=way)
        )
        return CommandReceipt(session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor)

    @strawberry.mutation
    async def suspend_agent_session(
        self, info: Info[Context, None], session_id: str, reason: str | None = None
    ) -> AgentSession:
        sid = _token(session_id, "session id")
        return AgentSession.of(SessionView.of(await _call(_client(info).suspend(sid, reason))))

    @strawberry.mutation
    async def resume_agent_session(
        self, info: Info[Context, None], session_id: str
    ) -> AgentSession:
        sid = _token(session_id, "session id")
        return AgentSession.of(SessionView.of(await _call(_client(info).resume(sid))))

    @strawberry.mutation
    async def complete_agent_session(
        self, info: Info[Context, None], session_id: str, reason: str | None = None
    ) -> AgentSession:
        sid = _token(session_id, "session id")
        return AgentSession.of(SessionView.of(await _call(_client(info).complete(sid, reason))))

    @strawberry.mutation(
        description="Approve a tool call the agent waits on (see waitingFor): the tool runs "
        "and the turn goes on once every call it waits on is decided."
    )
    async def approve_tool_call(
        self,
        info: Info[Context, None],
        session_id: str,
        call_id: str,
        reason: str | None = None,
    ) -> CommandReceipt:
        return await _decide(info, session_id, call_id, True, reason)

    @strawberry.mutation(
        description="Deny a tool call the agent waits on: it does not run, and the model is "
        "told it was denied (with the reason)."
    )
    async def deny_tool_call(
        self,
        info: Info[Context, None],
        session_id: str,
        call_id: str,
        reason: str | None = None,
    ) -> CommandReceipt:
        return await _decide(info, session_id, call_id, False, reason)

    @strawberry.mutation(description="Stop the turn in flight (it ends with turn.failed).")
    async def cancel_turn(self, info: Info[Context, None], session_id: str) -> CommandReceipt:
        sid = _token(session_id, "session id")
        receipt = await _call(_client(info).cancel(sid))
        return CommandReceipt(session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor)


async def _decide(
    info: Info[Context, None],
    session_id: str,
    call_id: str,
    approve: bool,
    reason: str | None,
) -> CommandReceipt:
    sid = _token(session_id, "session id")
    receipt = await _call(_client(info).decide(sid, call_id, approve=approve, reason=reason))
    return CommandReceipt(session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Everything that happens in the session from now on, or after `after`: "
        "every durable event after the cursor exactly once, in order; joining during a turn "
        "gives its text so far as one token.delta, then the rest."
    )
    async def agent_session_events(
        self, info: Info[Context, None], session_id: str, after: int | None = None
    ) -> AsyncGenerator[AgentSessionEvent, None]:
        sid = _token(session_id, "session id")
        if after is not None and after < 0:
            raise GraphQLError(
                "after must be 0 or more", extensions={"code": "BAD_USER_INPUT", "field": "after"}
            )
        closed = await _call(_open(info.context.state, info.context))
        try:
            items = await _call(_client(info).events(sid, after))
        except BaseException:
            closed()
            raise
        subscribers = metrics.SUBSCRIBERS.labels("graphql")
        subscribers.inc()
        try:
            async for item in items:
                if item is not None:
                    yield AgentSessionEvent.of(EventEnvelope.of(item))
        finally:
            subscribers.dec()
            await items.aclose()
            closed()


schema = _Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        lambda: _Errors(should_mask_error=_should_mask),
        # The same few documents come again and again: parse and validate each once.
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ],
)


# -- mounting ----------------------------------------------------------------------------


def _histories(client: SessionClient) -> DataLoader[HistoryKey, list[HistoryItem]]:
    """History of many sessions in one request's batch: read together, not row by row."""

    async def load(keys: list[HistoryKey]) -> list[list[HistoryItem] | BaseException]:
        pages = await asyncio.gather(
            *(
                client.history(sid, before=before, limit=first, more=True)
                for sid, first, before in keys
            ),
            return_exceptions=True,
        )
        return [graphql_error(p) if isinstance(p, BaseException) else p[0] for p in pages]

    return DataLoader(load_fn=load)


async def _context(state: State, scope: AsgiScope) -> Context:
    """Per operation: the caller's client, from its headers over HTTP. A WebSocket
    authenticates in its connection_init payload instead (see ``on_ws_connect``)."""
    if str(scope["type"]) == "websocket":
        client: SessionClient = state.client.via(Interface.GRAPHQL)
        if state.auth.on:
            client = client.scoped(_NOBODY)  # until connection_init says who it is
    else:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = (await scoped_client(state, headers)).via(Interface.GRAPHQL)
    return Context(
        client=client, histories=_histories(client), settings=state.settings, state=state
    )


async def _open(state: State, context: Context) -> Callable[[], None]:
    """Count a subscription against its caller (by the credentials it connected with)."""
    key = context.stream_key or "ws"
    return open_stream(state.auth, key)


_ACK = cast(UnsetType, UNSET)  # connection_ack without a payload
_NOBODY = BusScope(Owner(principal="-", tenant="-"))
"""A WebSocket that has not authenticated yet sees nothing."""


async def _on_ws_connect(context: Context) -> UnsetType | dict[str, object] | None:
    """A subscription's credentials, from its connection_init payload (``Authorization``:
    ``Bearer <key or JWT>``, or ``api_key``)."""
    assert context.websocket is not None
    state: State = context.websocket.app.state
    if not state.auth.on:
        return _ACK
    token = token_from_payload(context.connection_params)
    if token is None:
        raise ConnectionRejectionError({"message": "credentials needed in connection_init"})
    try:
        scope = await state.auth.scope_of(token)
    except UnauthenticatedError as e:
        raise ConnectionRejectionError({"message": str(e)}) from None
    client = state.client.via(Interface.GRAPHQL).scoped(scope, actor=scope.owner.principal)
    context.client = client
    context.histories = _histories(client)
    context.stream_key = caller_key({"authorization": f"Bearer {token}"}, "")
    return _ACK


def controller(keep_alive: float) -> type:
    """The Litestar controller serving ``/graphql`` (HTTP, both WebSocket protocols)."""
    served = make_graphql_controller(
        schema,
        path="/graphql",
        context_getter=_context,
        keep_alive=True,
        keep_alive_interval=keep_alive,
    )

    class GraphQL(served):  # type: ignore[valid-type,misc]
        def parse_json(self, data: str | bytes) -> Any:
            """Strawberry takes any JSON value and fails (500) on one that is not an
            object: refuse those, and JSON nested too deeply to parse, with a 400."""
            try:
                parsed = super().parse_json(data)
            except RecursionError:
                raise StrawberryHTTPException(400, "JSON nested too deeply") from None
            items = parsed if isinstance(parsed, list) else [parsed]
            if not all(isinstance(item, dict) for item in items):
                raise StrawberryHTTPException(400, "the request body must be a JSON object")
            return parsed

        async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
            return await _on_ws_connect(context)

    GraphQL.include_in_schema = False  # GraphQL documents itself (introspection, the SDL)
    return GraphQL


if __name__ == "__main__":
    print(schema.as_str())
