"""What a decision is made of: the command's context, the facts the shell knows, and
the decision itself (events to store, then a next step)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from praxis.schemas import (
    Checkpoint,
    Command,
    Event,
    Interface,
    SessionState,
)

EXPIRY_SLACK = 0.05
"""Seconds early an expiry may be taken (the timer runs on the server's clock)."""
RETRY_DELAY = 0.5
"""Seconds before work handed back after a failure is offered again (doubling per attempt)."""


class Meta(TypedDict):
    """What every event a command causes says of it (:class:`~praxis.schemas.EventBase`)."""

    session_id: str
    task_id: str
    command_id: str | None
    interface: Interface | None
    actor: str | None
    input_seq: int | None
    state: SessionState
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class CommandContext:
    """The command being handled, passed down to everything that records its events."""

    session_id: str
    task_id: str
    command_id: str | None = None
    interface: Interface | None = None
    actor: str | None = None
    """Who sent the command: every event it causes says so."""
    input_seq: int | None = None
    """The command's sequence on the session's input subject."""
    trace_id: str | None = None
    """The sender's trace: every event the command causes carries it on."""

    @classmethod
    def of(
        cls, cmd: Command, state: Checkpoint, seq: int | None, trace_id: str | None = None
    ) -> CommandContext:
        """The context of ``cmd`` (its events name the session's task)."""
        record = state.session
        return cls(
            record.session_id,
            record.task_id,
            cmd.command_id,
            cmd.interface,
            cmd.actor,
            seq,
            trace_id,
        )

    def meta(self, state: SessionState) -> Meta:
        """The metadata of an event after which the session is in ``state``."""
        return Meta(
            session_id=self.session_id,
            task_id=self.task_id,
            command_id=self.command_id,
            interface=self.interface,
            actor=self.actor,
            input_seq=self.input_seq,
            state=state,
            trace_id=self.trace_id,
        )

    def system(self) -> CommandContext:
        """The context of an event of the owner's own (its claim), within this command's
        trace."""
        return CommandContext(self.session_id, self.task_id, trace_id=self.trace_id)


@dataclass(frozen=True, slots=True)
class RunTurn:
    """Run (or finish) the turn answering the command at ``origin`` (the command being
    handled, unless the turn goes on after an approval)."""

    origin: int
    content: str | None


@dataclass(frozen=True, slots=True)
class Again:
    """Store the events, then decide on the same command again, from the new state."""

    resuming: bool


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[Event, ...] = ()
    then: RunTurn | Again | None = None
    refuse_if_too_large: bool = False
    """The events hold a message from outside: if it is too large to store, the command
    is refused (:func:`too_large`) instead of failing."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the shell knows of the world when a command is decided."""

    resuming: bool = False
    """The command has events already (a previous owner died in it): finish it."""
    agent_offered: bool = True
    """This worker offers the session's agent."""
    greets: bool = False
    """The agent speaks first (a create without a message starts a turn)."""
    suspend_follows: bool = False
    """A suspend stored after this message will suspend the session (it goes first)."""
    now: datetime | None = None
    """The time, for an expiry."""
