"""The GraphQL types, made from the API models of :mod:`praxis.schemas.api`."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.scalars import JSON
from strawberry.types import Info

from praxis.edge.graphql.context import Context, HistoryKey
from praxis.edge.graphql.errors import check_page
from praxis.schemas import (
    HistoryItem,
    SessionState,
)
from praxis.schemas.api import (
    EventEnvelope,
    SessionView,
)

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
        check_page(first)
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
