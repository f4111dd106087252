"""The shapes of the HTTP API (and of GraphQL's inputs): what callers send and get back.

Built on the bus models; the edge turns these into requests on ``SessionClient`` and back,
with no logic of its own. Every field is described: the OpenAPI document shows them.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from praxis.schemas.commands import MAX_MESSAGE_CHARS, DoubleTexting, Interface, Metadata, Owner
from praxis.schemas.events import Delivery, TokenDelta, ToolCall
from praxis.schemas.ids import AgentName, CommandId, SessionId, TaskId
from praxis.schemas.lifecycle import SessionState
from praxis.schemas.records import Counters, HistoryItem, SessionRecord

MAX_PAGE = 1000
"""The largest page a list or history request may ask for."""


def _json(kinds: tuple[type, ...], name: str) -> BeforeValidator:
    """Only values of the JSON type the schema gives. Litestar validates request bodies in
    pydantic's lax mode, where "5", 5.0, true and 0 all pass for the integer 5 or false."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) is (bool not in kinds) or not isinstance(value, kinds):
            raise ValueError(f"must be {name}, not {type(value).__name__} {value!r:.40}")
        return value

    return BeforeValidator(check)


JsonBool = Annotated[bool, _json((bool,), "a boolean")]
JsonInt = Annotated[int, _json((int,), "an integer")]
JsonNumber = Annotated[float, _json((int, float), "a number")]
JsonDateTime = Annotated[datetime, _json((str, datetime), "a date-time string (RFC 3339)")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSessionRequest(_Request):
    """Start a session with an agent, optionally with the first message."""

    agent_name: AgentName = Field(description="The agent to talk to (see `praxis agents`).")
    initial_message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="The user's first message: the session's first turn answers it "
        "(instead of the agent's greeting).",
    )
    instructions: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="Instructions for the turn answering `initial_message` only (see "
        "sending a message).",
    )
    task_id: TaskId | None = Field(
        default=None, description="The task the session serves; a new one is made if absent."
    )
    session_id: SessionId | None = Field(
        default=None,
        description="Your own id for the session (a repeat answers 409); made if absent.",
    )
    metadata: Metadata = Field(
        default_factory=dict,
        description="Free-form data kept with the session (JSON nested at most 16 deep, "
        "at most 16 KiB).",
    )
    double_texting: DoubleTexting = Field(
        default="enqueue",
        description="What a message sent while the session is busy with an earlier one "
        "does: waits its turn (enqueue), is refused (reject), stops the turn in flight and "
        "is answered (interrupt), or also discards that turn (rollback).",
    )
    idle_timeout: JsonNumber | None = Field(
        default=None,
        ge=0,
        le=10 * 365 * 86400,
        description="Seconds without activity after which the session expires; 0: never. "
        "Absent: the server's default (PRAXIS_SESSION_IDLE_TIMEOUT, 30 days).",
    )
    max_lifetime: JsonNumber | None = Field(
        default=None,
        ge=0,
        le=10 * 365 * 86400,
        description="Seconds after creation at which the session expires, active or not; "
        "0: never. Absent: the server's default (PRAXIS_SESSION_MAX_LIFETIME, never).",
    )


class SessionView(BaseModel):
    """A session as the API shows it."""

    session_id: SessionId = Field(description="The session id.")
    task_id: TaskId = Field(description="The task this session serves.")
    agent_name: AgentName = Field(description="The agent the session talks to.")
    state: SessionState = Field(description="Where the session is in its lifecycle.")
    created_at: datetime = Field(description="When the session was created.")
    updated_at: datetime = Field(description="When its latest event was stored.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The free-form data given at creation."
    )
    created_by: str = Field(description="The interface the session was created from.")
    message_count: int = Field(description="User and agent messages in the history.")
    user_messages: int = Field(default=0, description="The user's messages in the history.")
    agent_messages: int = Field(default=0, description="The agent's messages in the history.")
    turns: int = Field(description="Turns the agent has finished.")
    failed_turns: int = Field(description="Turns that ended with turn.failed.")
    double_texting: DoubleTexting = Field(
        description="What a message sent while it is busy does (see create)."
    )
    idle_timeout: float = Field(description="Seconds of inactivity before it expires (0: never).")
    max_lifetime: float = Field(description="Seconds after creation it expires at (0: never).")
    active_at: datetime | None = Field(description="Its latest activity.")
    expires_at: datetime | None = Field(
        description="When it expires unless there is activity first; null: never, or ended."
    )
    waiting_for: list[ToolCall] = Field(
        default_factory=list,
        description="Tool calls the agent's turn waits on: approve or deny each to go on.",
    )
    owner: Owner | None = Field(
        default=None,
        description="Who the session belongs to (principal and tenant); null: made without "
        "credentials.",
    )

    @classmethod
    def of(cls, record: SessionRecord) -> SessionView:
        c = record.counters
        return cls(
            session_id=record.session_id,
            task_id=record.task_id,
            agent_name=record.agent,
            state=record.state,
            created_at=record.created_at,
            updated_at=record.updated_at,
            metadata=record.metadata,
            created_by=record.created_by.value,
            message_count=c.user_messages + c.agent_messages,
            user_messages=c.user_messages,
            agent_messages=c.agent_messages,
            turns=c.turns,
            failed_turns=c.failed_turns,
            double_texting=record.double_texting,
            idle_timeout=record.idle_timeout,
            max_lifetime=record.max_lifetime,
            active_at=record.active_at,
            expires_at=record.expires_at,
            waiting_for=record.waiting_for,
            owner=record.owner,
        )

    def record(self) -> SessionRecord:
        """The session in the shape the bus keeps it (the inverse of :meth:`of`)."""
        return SessionRecord(
            session_id=self.session_id,
            task_id=self.task_id,
            agent=self.agent_name,
            state=self.state,
            created_at=self.created_at,
            updated_at=self.updated_at,
            metadata=self.metadata,
            created_by=Interface(self.created_by),
            counters=Counters(
                user_messages=self.user_messages,
                agent_messages=self.agent_messages,
                turns=self.turns,
                failed_turns=self.failed_turns,
            ),
            double_texting=self.double_texting,
            idle_timeout=self.idle_timeout,
            max_lifetime=self.max_lifetime,
            active_at=self.active_at,
            expires_at=self.expires_at,
            waiting_for=self.waiting_for,
            owner=self.owner,
        )


class CreatedSession(BaseModel):
    """A new session; follow ``GET /agent-sessions/{id}/events?after=cursor`` for the rest."""

    session_id: SessionId = Field(description="The new session's id.")
    task_id: TaskId = Field(description="The task it serves (given or made).")
    state: SessionState = Field(description="CREATED: a worker starts it next.")
    agent_name: AgentName = Field(description="The agent it talks to.")
    created_at: datetime = Field(description="When it was created.")
    command_id: str = Field(
        description="The command of the initial message, or of the creation without one."
    )
    cursor: int = Field(description="Event cursor after which that command's effects follow.")

    @classmethod
    def of(cls, record: SessionRecord, command_id: str, cursor: int) -> CreatedSession:
        return cls(
            session_id=record.session_id,
            task_id=record.task_id,
            state=record.state,
            agent_name=record.agent,
            created_at=record.created_at,
            command_id=command_id,
            cursor=cursor,
        )


class ListSessionsRequest(_Request):
    """Filters and paging for listing sessions (newest first)."""

    state: SessionState | None = Field(default=None, description="Only sessions in this state.")
    agent_name: AgentName | None = Field(
        default=None, description="Only the sessions of this agent."
    )
    task_id: TaskId | None = Field(default=None, description="Only the sessions of this task.")
    created_after: JsonDateTime | None = Field(default=None, description="Created at or after.")
    created_before: JsonDateTime | None = Field(default=None, description="Created before.")
    limit: JsonInt = Field(default=50, ge=1, le=MAX_PAGE, description="Page size.")
    cursor: str | None = Field(
        default=None, max_length=512, description="`next_cursor` of the previous page."
    )


class SessionPage(BaseModel):
    """One page of sessions; pass ``next_cursor`` back for the next (null: no more)."""

    items: list[SessionView] = Field(description="Sessions, newest first.")
    next_cursor: str | None = Field(description="Opaque; null when this is the last page.")


class SendMessageRequest(_Request):
    """A user message for the session's agent."""

    message: str = Field(
        min_length=1, max_length=MAX_MESSAGE_CHARS, description="What the user says."
    )
    instructions: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="Instructions for the turn answering this message only: a model agent "
        "adds them after its own system prompt for that turn (later turns do not see "
        "them); an agent of code gets them as `TurnContext.instructions`.",
    )
    stream: JsonBool = Field(
        default=False,
        description="Answer with a Server-Sent Events stream of this turn, ending with it.",
    )
    command_id: CommandId | None = Field(
        default=None,
        description="Your idempotency key: a repeat within the duplicate window is sent once.",
    )
    on_busy: DoubleTexting | None = Field(
        default=None,
        description="If the session is busy with an earlier message, this message's way "
        "(enqueue, reject, interrupt, rollback); default: the session's double_texting.",
    )
    queue: JsonBool = Field(
        default=False,
        description="If the session is suspended, keep the message (`message.queued`) and "
        "answer it when the session is resumed, instead of answering 409.",
    )


class DecisionRequest(_Request):
    """A human's answer to a tool call the agent waits on."""

    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="Why (kept in tool.decided; a denial's reason is told to the model).",
    )
    stream: JsonBool = Field(
        default=False,
        description="Answer with a Server-Sent Events stream of the rest of the turn.",
    )


class Accepted(BaseModel):
    """A command stored on the bus; its effects follow as events after ``cursor``."""

    session_id: SessionId = Field(description="The session the command is for.")
    command_id: str = Field(description="The command's id: its events carry it.")
    cursor: int = Field(description="Follow `/events?after=cursor` to see what it causes.")


class CommandAccepted(BaseModel):
    """The first message of a streamed command (``event: command.accepted``, no ``id:``):
    JetStream has stored it, so it will be answered. If the stream breaks before its end,
    follow ``/events?after=cursor`` for the rest; do not send it again without its id."""

    type: Literal["command.accepted"] = Field(
        default="command.accepted", description="Always `command.accepted`."
    )
    session_id: SessionId = Field(description="The session the command is for.")
    command_id: str = Field(description="The command's id: its events carry it.")
    cursor: int = Field(description="Its effects are the events after this cursor.")
    content: str = Field(default="", description="Empty: it adds nothing to the conversation.")


class HistoryPage(BaseModel):
    """Messages oldest first; ``next_before`` pages further back (null: the beginning)."""

    items: list[HistoryItem] = Field(description="Messages, oldest first.")
    next_before: int | None = Field(description="Pass as `before` for the older page.")


class EventEnvelope(BaseModel):
    """One event as SSE and GraphQL subscribers see it (``data:`` of an SSE message)."""

    type: str = Field(description="The event type, e.g. `agent.message` or `token.delta`.")
    cursor: int | None = Field(
        description="The event's id (its SSE id, a cursor to resume after); null for "
        "token deltas and command.accepted."
    )
    timestamp: datetime = Field(description="When the event happened.")
    data: dict[str, Any] = Field(
        description="The event itself, all its fields, and always `content`: the text the "
        "event adds to the conversation (a user's or the agent's message, a token delta's "
        "text; empty for events without text), so that a client can print "
        '`data["content"]` of every event as the reply streams.'
    )

    @classmethod
    def of(cls, item: Delivery) -> EventEnvelope:
        ev = item.event
        data = ev.model_dump(mode="json")
        if "content" not in type(ev).model_fields:
            data["content"] = _text_of(ev)
        return cls(
            type=ev.type,
            cursor=item.cursor,
            timestamp=getattr(ev, "ts", None) or datetime.now(UTC),
            data=data,
        )


def _text_of(ev: BaseModel) -> str:
    """``content`` of an event that has none of its own: a token delta's text, or ''."""
    return ev.text if isinstance(ev, TokenDelta) else ""


class _EnvelopeHead(BaseModel):
    """:class:`EventEnvelope` without its data, for writing only."""

    type: str
    cursor: int | None
    timestamp: datetime


def envelope_json(item: Delivery) -> str:
    """The JSON of ``EventEnvelope.of(item)``, without building its dict (the relay's hot
    path): the event's own JSON, with ``content`` added where it has none."""
    ev = item.event
    if type(ev) is TokenDelta:
        return delta_envelope(ev).decode()
    data = ev.model_dump_json()
    if "content" not in type(ev).model_fields:
        data = f'{data[:-1]},"content":{json.dumps(_text_of(ev), ensure_ascii=False)}}}'
    head = _EnvelopeHead.model_construct(
        type=ev.type, cursor=item.cursor, timestamp=getattr(ev, "ts", None) or datetime.now(UTC)
    ).model_dump_json()
    return f'{head[:-1]},"data":{data}}}'


_JSON = msgspec.json.Encoder()


def delta_envelope(ev: TokenDelta) -> bytes:
    """:func:`envelope_json` of a token delta (as UTF-8), the same text written without
    pydantic (the most frequent message a relay writes; a test keeps the two equal)."""
    text = _JSON.encode(ev.text)
    return (
        b'{"type":"token.delta","cursor":null,"timestamp":"%s","data":'
        b'{"type":"token.delta","session_id":%s,"turn_id":%s,"index":%d,"text":%s,'
        b'"content":%s}}'
        % (utc_stamp(), _JSON.encode(ev.session_id), _JSON.encode(ev.turn_id), ev.index, text, text)
    )


_SECOND: list[Any] = [None, b""]
"""The second :func:`utc_stamp` last wrote, and its text up to the seconds."""


def utc_stamp() -> bytes:
    """Now, as pydantic writes a UTC datetime (``2026-12-07T21:10:00.123456Z``), without
    building one: the date and time are formatted once a second."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if _SECOND[0] != seconds:
        _SECOND[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()]
    return b"%s.%06dZ" % (_SECOND[1], nanos // 1000)


class FieldError(BaseModel):
    """One invalid value of a request."""

    field: str = Field(description="Where the bad value is, e.g. `agent_name` or `body`.")
    message: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An error, as ``application/problem+json`` (RFC 9457)."""

    type: str = Field(default="about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(default="", description="What went wrong, for a person to read.")
    instance: str | None = Field(default=None, description="The request path.")
    code: str = Field(
        description="NOT_FOUND, CONFLICT, BAD_USER_INPUT, BAD_REQUEST, UNAUTHENTICATED, "
        "FORBIDDEN, RATE_LIMITED, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, TIMEOUT, "
        "UNAVAILABLE or INTERNAL (the same codes GraphQL uses)."
    )
    state: SessionState | None = Field(
        default=None, description="The session's current state (for a 409)."
    )
    errors: list[FieldError] | None = Field(default=None, description="The fields at fault.")
    waiting: list[str] | None = Field(
        default=None, description="The tool calls the session does wait on (for a 409)."
    )
    command_id: str | None = Field(
        default=None,
        description="A command that is stored but not answered yet (for a 504): it will "
        "be; do not send it again without this id.",
    )
    cursor: int | None = Field(
        default=None,
        description="Follow `/events?after=cursor` for that command's outcome (for a 504).",
    )


class Health(BaseModel):
    """The answer of a health or readiness check that passed."""

    status: Literal["ok", "ready"] = Field(description="`ok` (healthz) or `ready` (readyz).")
