"""Commands: what callers publish on ``sess.<id>.in``.

Every command carries ``command_id`` (the idempotency key, also sent as ``Nats-Msg-Id``),
the ``task_id`` it serves and the ``interface`` it came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.ids import AgentName, CommandId, SessionId, TaskId, new_id

MAX_MESSAGE_CHARS = 64_000


class Interface(StrEnum):
    CLI = "cli"
    API = "api"
    GRAPHQL = "graphql"
    BUS = "bus"


def _now() -> datetime:
    return datetime.now(UTC)


def _command_id() -> str:
    return new_id("cmd")


class CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    command_id: CommandId = Field(default_factory=_command_id)
    session_id: SessionId
    task_id: TaskId
    interface: Interface = Interface.BUS
    issued_at: datetime = Field(default_factory=_now)


class CreateSession(CommandBase):
    kind: Literal["create_session"] = "create_session"
    agent: AgentName
    metadata: dict[str, Any] = Field(default_factory=dict)


class UserMessage(CommandBase):
    kind: Literal["user_message"] = "user_message"
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


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


Command = Annotated[
    CreateSession | UserMessage | Suspend | Resume | Complete | CancelTurn,
    Field(discriminator="kind"),
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def decode_command(data: bytes | str) -> Command:
    """Parse one command from JSON; raises ``pydantic.ValidationError`` on bad input."""
    return COMMAND_ADAPTER.validate_json(data)
