"""Commands: what callers publish on ``sess.<id>.in``.

Every command carries ``command_id`` (the idempotency key within its session, also sent,
scoped by the session, as ``Nats-Msg-Id``), the ``task_id`` it serves and the
``interface`` it came from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from praxis.schemas.ids import AgentName, CommandId, SessionId, TaskId, new_id

MAX_MESSAGE_CHARS = 64_000

DoubleTexting = Literal["enqueue", "reject", "interrupt", "rollback"]
"""What a message that arrives while the session is busy with an earlier one does:
wait its turn (enqueue), be refused (reject), stop the turn in flight and be answered
(interrupt), or stop it and discard it from the conversation (rollback)."""


class Interface(StrEnum):
    CLI = "cli"
    API = "api"
    GRAPHQL = "graphql"
    BUS = "bus"
    SYSTEM = "system"
    """Praxis itself: a timer (expiry) or a worker's own decision."""


MAX_METADATA_DEPTH = 16
MAX_METADATA_BYTES = 16 * 1024


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    """Metadata is free-form JSON, within bounds: nested at most ``MAX_METADATA_DEPTH``
    deep and ``MAX_METADATA_BYTES`` long."""

    def depth(v: Any, level: int) -> None:
        if level > MAX_METADATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
        for child in children:
            depth(child, level + 1)

    depth(value, 1)
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes as JSON, more than {MAX_METADATA_BYTES}")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_bounded)]
Actor = Annotated[str, Field(min_length=1, max_length=200)]
# A reply subject must be an inbox: the worker publishes there with its own rights, so any
# other subject would let whoever sends a command write wherever the worker may (another
# session's events, or a JetStream API request such as a purge of the whole stream).
ReplySubject = Annotated[
    str,
    Field(
        max_length=256,
        pattern=r"^_INBOX(\.[A-Za-z0-9_-]+)+$",
        description="An inbox subject (_INBOX. followed by tokens of A-Z a-z 0-9 _ -, no "
        "wildcards), as a NATS client's new_inbox() makes.",
    ),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _command_id() -> str:
    return new_id("cmd")


class Owner(BaseModel):
    """Who a session belongs to: a principal within a tenant (set by the edge from the
    caller's credentials; a session without one belongs to nobody but admins)."""

    model_config = ConfigDict(frozen=True)

    principal: str = Field(min_length=1, max_length=200, description="Who (a user, a service).")
    tenant: str = Field(min_length=1, max_length=200, description="The principal's tenant.")


class CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    command_id: CommandId = Field(default_factory=_command_id)
    session_id: SessionId
    task_id: TaskId
    interface: Interface = Interface.BUS
    actor: Actor | None = None
    """Who sent it, as the sender says (the CLI: the user's login name); recorded in the
    events it causes. Until the edge authenticates callers, a claim, not a proof."""
    reply_to: ReplySubject | None = None
    """A NATS subject on which the worker publishes the command's outcome (a
    ``CommandOutcome``: completed, failed, waiting, ...) once it is done. Best effort (core
    NATS): the session's events are the durable record."""
    issued_at: datetime = Field(default_factory=_now)


Instructions = Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]

Seconds = Annotated[float, Field(ge=0, le=10 * 365 * 86400)]


class CreateSession(CommandBase):
    kind: Literal["create_session"] = "create_session"
    agent: AgentName
    metadata: Metadata = Field(default_factory=dict)
    double_texting: DoubleTexting = "enqueue"
    """The session's way with a message sent while it is busy (a message may say its own)."""
    idle_timeout: Seconds | None = None
    """Seconds without activity after which the session expires (0: never; None: the
    worker's ``PRAXIS_SESSION_IDLE_TIMEOUT``)."""
    max_lifetime: Seconds | None = None
    """Seconds after creation at which the session expires, active or not (0: never; None:
    the worker's ``PRAXIS_SESSION_MAX_LIFETIME``)."""
    message: str | None = Field(default=None, min_length=1, max_length=MAX_MESSAGE_CHARS)
    """A first user message, answered as soon as the session starts (instead of the
    agent's greeting): one command runs a whole turn, for pipelines on the bus."""
    instructions: Instructions | None = None
    """Instructions for the turn answering ``message`` (see ``UserMessage``)."""
    owner: Owner | None = None
    """Who the session belongs to (see ``Owner``)."""


class UserMessage(CommandBase):
    kind: Literal["user_message"] = "user_message"
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    queue: bool = False
    """If the session is suspended, keep the message and answer it on resume (instead of
    rejecting it)."""
    on_busy: DoubleTexting | None = None
    """If the session is busy with an earlier message: this message's way (default: the
    session's ``double_texting``)."""
    instructions: Instructions | None = None
    """Instructions for the turn answering this message only (the OpenAI API's
    ``instructions``): a model agent adds them to its own system prompt for that turn;
    an agent of code finds them in ``TurnContext.instructions``. Kept with the message."""


class Suspend(CommandBase):
    kind: Literal["suspend"] = "suspend"
    reason: str | None = None


class Resume(CommandBase):
    kind: Literal["resume"] = "resume"


class Complete(CommandBase):
    kind: Literal["complete"] = "complete"
    reason: str | None = None


class CancelTurn(CommandBase):
    kind: Literal["cancel_turn"] = "cancel_turn"


class Expire(CommandBase):
    """Published by the session's expiry timer (a JetStream message schedule) when it is
    due; the owner ends the session if it is still due when the command is taken."""

    kind: Literal["expire"] = "expire"
    interface: Interface = Interface.SYSTEM


class DecideToolCall(CommandBase):
    """A human's answer to a tool call waiting for approval (``turn.waiting``): approved,
    the tool runs and the turn goes on; denied, the model is told so (with ``reason``)."""

    kind: Literal["decide_tool_call"] = "decide_tool_call"
    call_id: str = Field(min_length=1, max_length=200)
    approve: bool
    reason: str | None = Field(default=None, max_length=2000)


class AddedMessage(BaseModel):
    """A message added to the conversation as it is, without a turn."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class AddMessages(CommandBase):
    """Messages added to the session's history without a turn (the agent answers none of
    them; it sees them in its next turn's context), and/or new metadata for it: what
    import does to a new session, for a session that exists (the OpenAI API's
    conversation items and metadata)."""

    kind: Literal["add_messages"] = "add_messages"
    messages: list[AddedMessage] = Field(default_factory=list, max_length=100)
    metadata: Metadata | None = None
    """The session's metadata from now on (all of it: replaced, not merged)."""


class DeleteResponse(CommandBase):
    """Delete a response of the OpenAI API (a view of one turn): ``response.deleted`` is
    recorded, and the edge answers 404 for it from then on. The turn stays in the
    history (as a deleted OpenAI response's conversation items do)."""

    kind: Literal["delete_response"] = "delete_response"
    response_id: str = Field(min_length=1, max_length=400)


Command = Annotated[
    CreateSession
    | UserMessage
    | Suspend
    | Resume
    | Complete
    | CancelTurn
    | Expire
    | DecideToolCall
    | AddMessages
    | DeleteResponse,
    Field(discriminator="kind"),
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def decode_command(data: bytes | str) -> Command:
    """Parse one command from JSON; raises ``pydantic.ValidationError`` on bad input."""
    return COMMAND_ADAPTER.validate_json(data)
