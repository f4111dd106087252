"""The session record, the checkpoint and the live messages that cross processes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from praxis.schemas.commands import DoubleTexting, Interface, Owner
from praxis.schemas.events import (
    Event,
    TokenDelta,
    ToolCall,
    TurnStarted,
    Usage,
    built,
    token_delta,
)
from praxis.schemas.ids import AgentName, SessionId, TaskId, is_token
from praxis.schemas.lifecycle import SessionState
from praxis.schemas.stored import decode_record, record_seq


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
    ``prev`` has missed a notice and reads the gap back. On the wire the events come as
    the stored ``record`` itself (any format :func:`praxis.schemas.decode_record` reads;
    the ids are its sequence's, ``record_seq(seq)``), or, from releases before records of
    format 2, as ``events`` with their ids.
    """

    type: Literal["commit"] = "commit"
    prev: int
    seq: int
    events: list[StoredEvent] = Field(default_factory=list)
    deltas: list[TokenDelta] = Field(default_factory=list)
    """The token deltas of a turn stored whole (start and end in this record), streamed
    before its start was stored: followers pass them on right after its ``turn.started``."""
    record: Any = Field(
        default=None,
        exclude=True,
        description="The record as stored (read into ``events``).",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_record(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("record") is not None and "seq" in data:
            raw = json.dumps(data["record"], separators=(",", ":")).encode()
            found = decode_record(record_seq(int(data["seq"])), raw)
            ids = _turn_of([e for _, e in found])
            deltas = [{**ids, **d} if isinstance(d, dict) else d for d in data.get("deltas", [])]
            data = {
                **data,
                "events": [StoredEvent(seq=i, event=e) for i, e in found],
                "deltas": deltas,
            }
        return data

    @staticmethod
    def encode(prev: int, events: list[tuple[int, bytes]], deltas: Sequence[bytes] = ()) -> bytes:
        """The JSON of the notice of a record of format 1, around its events' (and deltas')
        JSON (not serialised again: this is on every append's path). Equal to
        ``CommitNotice(prev=prev, seq=last id, events=[StoredEvent(seq=id, event=...)],
        deltas=...)``."""
        body = b",".join(b'{"seq":%d,"event":%s}' % (i, e) for i, e in events)
        return b'{"type":"commit","prev":%d,"seq":%d,"events":[%s],"deltas":[%s]}' % (
            prev,
            events[-1][0],
            body,
            b",".join(deltas),
        )

    @staticmethod
    def encode_record(prev: int, seq: int, record: bytes, deltas: Sequence[bytes] = ()) -> bytes:
        """The JSON of the notice of a record stored as ``record``, whose last event is
        ``seq``: the record's bytes as they were stored, not serialised again; ``deltas``
        of the turn the record starts, without their session and turn ids (the turn's)."""
        return b'{"type":"commit","prev":%d,"seq":%d,"record":%s,"deltas":[%s]}' % (
            prev,
            seq,
            record,
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


def _turn_of(events: list[Event]) -> dict[str, str]:
    """The session and turn ids of the turn a record starts (its deltas in the notice)."""
    for e in events:
        if isinstance(e, TurnStarted):
            return {"session_id": e.session_id, "turn_id": e.turn_id}
    return {}


class _RecordNotice(msgspec.Struct):
    prev: int
    seq: int
    record: msgspec.Raw
    deltas: list[msgspec.Raw] = []


_RECORD_NOTICE = msgspec.json.Decoder(_RecordNotice)
_RECORD_NOTICE_HEAD = b'{"type":"commit","prev":'


class _Delta(msgspec.Struct, tag_field="type", tag="token.delta"):
    session_id: str
    turn_id: str
    index: int
    text: str


_DELTA = msgspec.json.Decoder(_Delta)
_DELTA_ENCODER = msgspec.json.Encoder()


def encode_delta(session_id: str, turn_id: str, index: int, text: str) -> bytes:
    """The JSON of ``TokenDelta(...)`` as pydantic writes it, without building one (a
    worker sends one for every piece of a reply it streams)."""
    return _DELTA_ENCODER.encode(_Delta(session_id, turn_id, index, text))


_DELTA_HEAD = b'{"type":"token.delta",'


def decode_live(data: bytes) -> CommitNotice | TailNotice | TokenDelta:
    """Parse one message of ``live.<id>``. A token delta or a record's notice as workers
    write them is read without pydantic's validation (the former is most of what a relay
    reads; the latter's record bytes are parsed once); anything else in one pass whatever
    its type. Raises ``ValueError`` for what is not a live message."""
    fast: CommitNotice | TokenDelta | None = None
    try:
        if data.startswith(_DELTA_HEAD):
            fast = _delta(_DELTA.decode(data))
        elif data.startswith(_RECORD_NOTICE_HEAD) and b'"record":' in data:
            fast = _notice(_RECORD_NOTICE.decode(data))
    except msgspec.ValidationError:
        pass  # not in the form workers write it: read it the long way
    except msgspec.DecodeError as e:
        raise ValueError(f"not a live message: {e}") from e
    return LIVE_ADAPTER.validate_json(data) if fast is None else fast


def _delta(d: _Delta) -> TokenDelta | None:
    if not is_token(d.session_id):  # what SessionId checks
        return None
    return token_delta(d.session_id, d.turn_id, d.index, d.text)


_STORED_GIVEN = frozenset(("seq", "event"))


def _notice(n: _RecordNotice) -> CommitNotice:
    found = decode_record(record_seq(n.seq), bytes(n.record))
    deltas: list[TokenDelta] = []
    if n.deltas:
        ids = _turn_of([e for _, e in found])
        deltas = [TokenDelta.model_validate({**ids, **json.loads(bytes(d))}) for d in n.deltas]
    return CommitNotice.model_construct(
        prev=n.prev,
        seq=n.seq,
        events=[built(StoredEvent, {"seq": i, "event": e}, _STORED_GIVEN) for i, e in found],
        deltas=deltas,
        record=None,
    )


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
    sharing: bool = False
    """It takes a share of the partitions, with the other live workers that share them
    (see ``praxis.bus.partitions.share``); one that does not takes those it was given."""
    partitions: list[int] = Field(default_factory=list)
    """The partitions it takes work from now."""


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
