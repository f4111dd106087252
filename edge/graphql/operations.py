"""Queries, mutations and the live subscription, and the schema they make."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.scalars import JSON
from strawberry.types import Info

from praxis.bus import BusError, SessionClient, Settings, metrics
from praxis.bus.client import list_cursor
from praxis.edge.graphql.context import Context, open_subscription
from praxis.edge.graphql.errors import (
    MaskedErrors,
    Schema,
    call,
    check_id,
    check_page,
    graphql_error,
    should_mask,
)
from praxis.edge.graphql.types import (
    Agent,
    AgentSession,
    AgentSessionConnection,
    AgentSessionEdge,
    AgentSessionEvent,
    AgentSessionFilter,
    CommandReceipt,
    CreatedAgentSession,
    PageInfo,
)
from praxis.edge.shared import list_page
from praxis.schemas import (
    MAX_MESSAGE_CHARS,
    DoubleTexting,
)
from praxis.schemas.api import (
    CreatedSession,
    EventEnvelope,
    ListSessionsRequest,
    SessionView,
)

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


def client_of(info: Info[Context, None]) -> SessionClient:
    client: SessionClient = info.context.client
    return client


@strawberry.type
class Query:
    @strawberry.field(
        description="The agents the live workers offer, by name (all: also those used by "
        "name only, such as the benchmark's synthetic)."
    )
    async def agents(self, info: Info[Context, None], all: bool = False) -> list[Agent]:
        found = await call(client_of(info).agents(unlisted=all))
        return [Agent(name=a.name, description=a.description, source=a.source) for a in found]

    @strawberry.field(description="One session (error NOT_FOUND if there is none).")
    async def agent_session(self, info: Info[Context, None], session_id: str) -> AgentSession:
        sid = check_id(session_id, "session id")
        return AgentSession.of(SessionView.of(await call(client_of(info).get(sid))))

    @strawberry.field(description="Sessions newest first, filtered, in pages.")
    async def agent_sessions(
        self,
        info: Info[Context, None],
        filter: AgentSessionFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> AgentSessionConnection:
        check_page(first)
        f = filter or AgentSessionFilter()
        page = await call(
            list_page(
                client_of(info),
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


def _check_instructions(instructions: str | None) -> None:
    if instructions is not None and not 1 <= len(instructions) <= MAX_MESSAGE_CHARS:
        raise GraphQLError(
            f"instructions must be 1 to {MAX_MESSAGE_CHARS} characters",
            extensions={"code": "BAD_USER_INPUT", "field": "instructions"},
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Start a session, optionally with a first message (its first turn then "
        "answers it, instead of the agent's greeting)."
    )
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
        instructions: Annotated[
            str | None,
            strawberry.argument(
                description="Instructions for the turn answering initialMessage only."
            ),
        ] = None,
    ) -> CreatedAgentSession:
        _check_instructions(instructions)
        record, receipt = await call(
            client_of(info).create(
                agent_name,
                task_id=task_id,
                metadata=dict(metadata) if isinstance(metadata, dict) else None,
                initial_message=initial_message,
                session_id=session_id,
                idle_timeout=idle_timeout,
                max_lifetime=max_lifetime,
                double_texting=_way(double_texting),
                instructions=instructions,
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
        instructions: Annotated[
            str | None,
            strawberry.argument(
                description="Instructions for the turn answering this message only: a model "
                "agent adds them after its own system prompt for that turn."
            ),
        ] = None,
    ) -> CommandReceipt:
        sid = check_id(session_id, "session id")
        _check_instructions(instructions)
        settings: Settings = info.context.settings
        if not message or len(message.encode()) > settings.edge_max_body:
            raise GraphQLError(
                f"message must be 1 to {settings.edge_max_body} bytes",
                extensions={"code": "BAD_USER_INPUT", "field": "message"},
            )
        way = _way(on_busy) if on_busy is not None else None
        receipt = await call(
            client_of(info).send(
                sid,
                message,
                command_id=command_id,
                queue=queue,
                on_busy=way,
                instructions=instructions,
            )
        )
        return CommandReceipt(session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor)

    @strawberry.mutation
    async def suspend_agent_session(
        self, info: Info[Context, None], session_id: str, reason: str | None = None
    ) -> AgentSession:
        sid = check_id(session_id, "session id")
        return AgentSession.of(SessionView.of(await call(client_of(info).suspend(sid, reason))))

    @strawberry.mutation
    async def resume_agent_session(
        self, info: Info[Context, None], session_id: str
    ) -> AgentSession:
        sid = check_id(session_id, "session id")
        return AgentSession.of(SessionView.of(await call(client_of(info).resume(sid))))

    @strawberry.mutation
    async def complete_agent_session(
        self, info: Info[Context, None], session_id: str, reason: str | None = None
    ) -> AgentSession:
        sid = check_id(session_id, "session id")
        return AgentSession.of(SessionView.of(await call(client_of(info).complete(sid, reason))))

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
        sid = check_id(session_id, "session id")
        receipt = await call(client_of(info).cancel(sid))
        return CommandReceipt(session_id=sid, command_id=receipt.command_id, cursor=receipt.cursor)


async def _decide(
    info: Info[Context, None],
    session_id: str,
    call_id: str,
    approve: bool,
    reason: str | None,
) -> CommandReceipt:
    sid = check_id(session_id, "session id")
    receipt = await call(client_of(info).decide(sid, call_id, approve=approve, reason=reason))
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
        sid = check_id(session_id, "session id")
        if after is not None and after < 0:
            raise GraphQLError(
                "after must be 0 or more", extensions={"code": "BAD_USER_INPUT", "field": "after"}
            )
        closed = await call(open_subscription(info.context.state, info.context))
        try:
            items = await call(client_of(info).events(sid, after))
        except BaseException:
            closed()
            raise
        subscribers = metrics.SUBSCRIBERS.labels("graphql")
        subscribers.inc()
        try:
            async for item in items:
                if item is not None:
                    yield AgentSessionEvent.of(EventEnvelope.of(item))
        except BusError as e:  # the edge stops (stream-ended): its code, not an INTERNAL
            raise graphql_error(e) from e
        finally:
            subscribers.dec()
            await items.aclose()
            closed()


schema = Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        lambda: MaskedErrors(should_mask_error=should_mask),
        # The same few documents come again and again: parse and validate each once.
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ],
)
