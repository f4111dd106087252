"""The session record, the checkpoint and the live messages that cross processes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from praxis.schemas.commands import DoubleTexting, Interface, Owner
from praxis.schemas.events import Event, TokenDelta, ToolCall, Usage
from praxis.schemas.ids import AgentName, SessionId, TaskId
from praxis.schemas.lifecycle import SessionState


class Counters(BaseModel):
    user_messages: int = 0
    agent_messages: int = 0
    turns: int = 0
    failed_turns: int = 0
    events: int = 0


class SessionRecord(BaseModel):
    """What a session is; listed and filtered through the sessions KV bucket."""

    v: Literal[1] = 1
    session_id: SessionId
    task_id: TaskId
    agent: AgentName
    state: SessionState
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_by: Interface = Interface.BUS
    counters: Counters = Field(default_factory=Counters)
    double_texting: DoubleTexting = "enqueue"
    """What a message sent while the session is busy does (see ``DoubleTexting``)."""
    idle_timeout: float = 0.0
    """Seconds without activity after which the session expires (0: never)."""
    max_lifetime: float = 0.0
    """Seconds after creation at which the session expires (0: never)."""
    active_at: datetime | None = None
    """The latest activity: a message, a reply, a turn's end, a state change."""
    expires_at: datetime | None = None
    """When the session expires unless there is activity first (None: never, or ended)."""
    waiting_for: list[ToolCall] = Field(default_factory=list)
    """Tool calls waiting for a human's approval (approve or deny each to go on)."""
    owner: Owner | None = None
    """Who the session belongs to (None: created without credentials)."""


class ChatMessage(BaseModel):
    """A message of the conversation as the agent sees it (and the end of the history)."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "agent"]
    content: str
    seq: int = 0
    """The cursor of the event that holds it."""
    ts: datetime | None = None
    interrupted: bool = False
    instructions: str | None = None
    """A user message's instructions for the turn that answers it (see ``UserMessage``)."""


class TurnInFlight(BaseModel):
    """A turn that has started and not yet ended: a new owner finishes it."""

    turn_id: str
    input_seq: int
    command_id: str | None = None
    interface: Interface | None = None
    attempt: int = 1
    start_seq: int = 0
    """The cursor of the turn's first event: its user message, if it answers one."""
    replied: bool = False
    """The agent's reply is stored: finishing the turn must not reply again."""
    responses: list[str] = Field(default_factory=list)
    """The model's responses that asked for tool calls, in order (``tool.calls``)."""
    results: dict[str, ToolOutcome] = Field(default_factory=dict)
    """Tool calls' results by call id (``tool.result``): never run again."""
    decisions: dict[str, ToolDecision] = Field(default_factory=dict)
    """Humans' answers to calls that need approval, by call id (``tool.decided``)."""
    waiting: list[ToolCall] = Field(default_factory=list)
    """Calls the paused turn waits on (``turn.waiting``); empty while it runs."""
    message: str | None = None
    """The user message the turn answers (kept while it waits)."""
    text: str = ""
    """What the agent said before the turn paused."""

    @property
    def pending(self) -> list[ToolCall]:
        """Waited-on calls nobody has decided yet."""
        return [c for c in self.waiting if c.call_id not in self.decisions]


class ToolOutcome(BaseModel):
    tool: str
    content: Any
    denied: bool = False


class ToolDecision(BaseModel):
    approved: bool
    reason: str | None = None


class LastTurn(BaseModel):
    turn_id: str
    start_seq: int
    """The cursor of the turn's first event (its user message, if it had one)."""
    end_seq: int
    cancelled_by: str | None = None
    """The command that stopped it, if one did."""


class QueuedMessage(BaseModel):
    """A message kept while the session was suspended; answered after a resume."""

    seq: int
    command_id: str | None
    interface: Interface | None
    content: str
    actor: str | None = None
    instructions: str | None = None
    accepted: bool = False
    """Its ``user.message`` is stored: only its turn is left."""


class FailingCommand(BaseModel):
    """A command that raised while being handled (``command.failed``): tried again until
    it has failed ``Settings.command_attempts`` times, then parked as a dead letter."""

    seq: int
    attempts: int
    error: str


class Checkpoint(BaseModel):
    """The session's state: a fold of its events up to ``as_of`` (see :mod:`praxis.schemas.fold`).

    Written as a snapshot after commands end so that loading a session reads only the
    events after it. ``input_cursor`` is the stream sequence of the last command fully
    handled; ``progress`` that of the last command with any event (ahead of the cursor
    while a command is half done). ``context`` holds the recent messages for the agent;
    the whole history stays in the events.
    """

    v: Literal[1, 2] = 2
    """2: event ids are record ids (:mod:`praxis.schemas.stored`); 1: stream sequences
    (read through :func:`praxis.schemas.fold.upgrade`)."""
    session: SessionRecord
    as_of: int = 0
    input_cursor: int = 0
    progress: int = 0
    owner: str | None = None
    turn: TurnInFlight | None = None
    context: list[ChatMessage] = Field(default_factory=list)
    summary: str | None = None
    """What the compacted older messages said (``context.compacted``)."""
    last_user: tuple[int, int] | None = None
    """(input_seq, cursor) of the latest user message: where a turn answering it starts."""
    last_turn: LastTurn | None = None
    """The latest turn that ended: a message stored before its end came while busy."""
    rolled_back: list[tuple[int, int]] = Field(default_factory=list)
    """Cursor ranges of rolled-back turns (the latest 100), marked in the history."""
    recent_commands: list[str] = Field(default_factory=list)
    queued: list[QueuedMessage] = Field(default_factory=list)
    """Messages kept while suspended, oldest first: answered once the session is active."""
    failing: FailingCommand | None = None
    """The last command whose handling raised, and how many times it has."""


class HistoryItem(BaseModel):
    """A message of the conversation, with the cursor of the event that holds it."""

    seq: int = Field(description="The event's cursor; pass as `before` to page back from it.")
    role: Literal["user", "agent"] = Field(description="Who said it.")
    content: str = Field(description="The message text.")
    ts: datetime = Field(description="When the message was stored.")
    interrupted: bool = Field(
        default=False, description="An agent reply cut short (failed or cancelled turn)."
    )
    rolled_back: bool = Field(
        default=False,
        description="Part of a turn discarded by a newer message (double texting: rollback).",
    )


class StoredEvent(BaseModel):
    seq: int
    event: Event


class CommitNotice(BaseModel):
    """Sent on ``live.<id>`` after each record is stored: its events and their ids.

    ``prev`` is the id of the event before the record (the latest one when it was
    fenced); ``seq`` that of its last event. A follower whose last known event is not
    ``prev`` has missed a notice and reads the gap back.
    """

    type: Literal["commit"] = "commit"
    prev: int
    seq: int
    events: list[StoredEvent]
    deltas: list[TokenDelta] = Field(default_factory=list)
    """The token deltas of a turn stored whole (start and end in this record), streamed
    before its start was stored: followers pass them on right after its ``turn.started``."""

    @staticmethod
    def encode(prev: int, events: list[tuple[int, bytes]], deltas: Sequence[bytes] = ()) -> bytes:
        """The JSON of the notice of a record, around its events' (and deltas') JSON (not
        serialised again: this is on every append's path). Equal to
        ``CommitNotice(prev=prev, seq=last id, events=[StoredEvent(seq=id, event=...)],
        deltas=...)``."""
        body = b",".join(b'{"seq":%d,"event":%s}' % (i, e) for i, e in events)
        return b'{"type":"commit","prev":%d,"seq":%d,"events":[%s],"deltas":[%s]}' % (
            prev,
            events[-1][0],
            body,
            b",".join(deltas),
        )


class TailNotice(BaseModel):
    """Sent by a new owner when it takes a session: followers behind ``seq`` catch up."""

    type: Literal["tail"] = "tail"
    seq: int


class Snapshot(BaseModel):
    """The reply to a snapshot request: the text of the turn in flight so far."""

    turn_id: str
    index: int
    text: str


LiveMessage = Annotated[CommitNotice | TailNotice | TokenDelta, Field(discriminator="type")]
LIVE_ADAPTER: TypeAdapter[LiveMessage] = TypeAdapter(LiveMessage)


def decode_live(data: bytes) -> CommitNotice | TailNotice | TokenDelta:
    """Parse one message of ``live.<id>`` (one pass, whatever its type)."""
    return LIVE_ADAPTER.validate_json(data)


OutcomeKind = Literal[
    "completed", "failed", "waiting", "rejected", "queued", "dead_lettered", "done"
]


class CommandOutcome(BaseModel):
    """What a command came to, published on its ``reply_to`` subject once it is done."""

    session_id: SessionId
    task_id: TaskId
    command_id: str | None
    outcome: OutcomeKind
    """completed: the turn ended with the agent's reply; failed: the turn failed (``reason``);
    waiting: tool calls wait for approval (``waiting_for``); rejected: not allowed
    (``reason``); queued: kept until the session is resumed; dead_lettered: parked after
    failing repeatedly; done: any other command that took effect."""
    reply: str | None = None
    """The agent's reply (for waiting: what it said before pausing)."""
    reason: str | None = None
    waiting_for: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    state: SessionState
    cursor: int
    """The stream sequence of the command's last event."""


class AgentInfo(BaseModel):
    """An agent a worker runs: what a session can be created with."""

    name: AgentName = Field(description="The agent's name (give it as `agent_name`).")
    description: str = Field(default="", description="What the agent does.")
    source: str = Field(
        default="", description="Where it comes from: an entry point, PRAXIS_AGENTS or a file."
    )
    listed: bool = Field(
        default=True,
        description="Shown in lists of agents; false for agents used by name only "
        "(the benchmark's `synthetic`), listed only when asked for.",
    )


class WorkerInfo(BaseModel):
    """A live worker's heartbeat, kept in the workers KV bucket with a TTL."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    agents: list[AgentInfo] = Field(default_factory=list)
    active_sessions: int = 0
    capacity: int = 0
    dedicated: bool = True
    """False for the worker a CLI command runs in its own process while it lasts."""
    busy: bool = False
    """Since its last heartbeat the worker had work waiting for a free slot: commands may
    wait their turn (clients then wait longer than ``command_timeout`` for them)."""
    metrics_url: str | None = None
    """Where the worker serves its Prometheus metrics (``PRAXIS_METRICS_PORT``)."""


class DeadLetter(BaseModel):
    """A command parked because handling it kept failing (the ``dead_letters`` bucket).

    Its id is ``<session_id>.<seq>``. Replaying publishes the same command again, at the
    end of the session's queue, under a new command id (``replayed_as``).
    """

    v: Literal[1] = 1
    id: str
    session_id: SessionId
    task_id: TaskId
    seq: int = Field(description="Stream sequence of the command (its place in the session).")
    command_id: str | None
    command_kind: str
    command: dict[str, Any] = Field(description="The command as it was published.")
    attempts: int
    error: str
    parked_at: datetime
    worker_id: str
    status: Literal["parked", "replayed"] = "parked"
    replayed_as: str | None = None
    replayed_at: datetime | None = None


def dead_letter_id(session_id: str, seq: int) -> str:
    return f"{session_id}.{seq}"
