"""The session's state as a fold of its events: pure, no I/O.

Every writer and reader derives the state the same way: from a checkpoint (a saved fold)
plus the events after it. A worker that died in the middle of a command leaves a prefix
of that command's events; the fold shows exactly how far it got (``progress``, ``turn``,
``turn.replied``) so the next owner can finish it without doing anything twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from praxis.schemas.commands import Interface
from praxis.schemas.events import (
    AgentMessage,
    CommandDeadLettered,
    CommandFailed,
    ContextCompacted,
    Event,
    MessageQueued,
    MetadataChanged,
    SessionClaimed,
    SessionCreated,
    SessionImported,
    StateChanged,
    ToolCallsRequested,
    ToolDecided,
    ToolResult,
    TurnCompleted,
    TurnFailed,
    TurnRolledBack,
    TurnStarted,
    TurnWaiting,
    UserMessageAccepted,
)
from praxis.schemas.lifecycle import TERMINAL, SessionState
from praxis.schemas.records import (
    ChatMessage,
    Checkpoint,
    FailingCommand,
    LastTurn,
    QueuedMessage,
    SessionRecord,
    ToolDecision,
    ToolOutcome,
    TurnInFlight,
)
from praxis.schemas.stored import ID_SCALE

RECENT_COMMANDS = 256
ACTIVITY = (
    UserMessageAccepted,
    MessageQueued,
    AgentMessage,
    TurnCompleted,
    TurnFailed,
    TurnWaiting,
    ToolDecided,
    StateChanged,
)
"""Events that restart the idle timer (a timer's own skip or a claim does not)."""
DEFAULT_CONTEXT = 200


class FoldError(ValueError):
    """The events do not describe a session (e.g. the first one is not ``session.created``)."""


def start(event: SessionCreated, seq: int) -> Checkpoint:
    record = SessionRecord(
        session_id=event.session_id,
        task_id=event.task_id,
        agent=event.agent,
        state=SessionState.CREATED,
        created_at=event.ts,
        updated_at=event.ts,
        metadata=event.metadata,
        created_by=event.interface or Interface.BUS,
        idle_timeout=event.idle_timeout,
        max_lifetime=event.max_lifetime,
        double_texting=event.double_texting,
        owner=event.owner,
    )
    record.counters.events = 1
    _active(record, event.ts)
    return Checkpoint(session=record, as_of=seq)


def _active(record: SessionRecord, at: datetime) -> None:
    """Activity at ``at``: the idle timer starts again (the lifetime does not)."""
    record.active_at = at
    record.expires_at = expiry_of(record)


def expiry_of(record: SessionRecord) -> datetime | None:
    """When the session expires if nothing happens first; None: never (or it has ended)."""
    if record.state in TERMINAL:
        return None
    due: list[datetime] = []
    if record.idle_timeout > 0 and record.active_at is not None:
        due.append(record.active_at + timedelta(seconds=record.idle_timeout))
    if record.max_lifetime > 0:
        due.append(record.created_at + timedelta(seconds=record.max_lifetime))
    return min(due, default=None)


def apply(
    ck: Checkpoint | None, seq: int, event: Event, context_limit: int = DEFAULT_CONTEXT
) -> Checkpoint:
    """The state after ``event`` (stored at ``seq``). Mutates and returns ``ck``."""
    if ck is None:
        if not isinstance(event, SessionCreated):
            raise FoldError(f"session {event.session_id} starts with {event.type}")
        return start(event, seq)
    if seq <= ck.as_of:
        return ck  # already folded
    if isinstance(event, TurnCompleted | TurnFailed) and ck.turn is not None:
        ck.last_turn = LastTurn(  # before the effect, which clears the turn
            turn_id=ck.turn.turn_id,
            start_seq=ck.turn.start_seq or seq,
            end_seq=seq,
            cancelled_by=event.cancelled_by if isinstance(event, TurnFailed) else None,
        )
    _effect(ck, seq, event)
    _bookkeeping(ck, seq, event)
    record = ck.session
    record.updated_at = event.ts
    if isinstance(event, ACTIVITY):
        _active(record, event.ts)
    record.counters.events += 1
    ck.as_of = seq
    if event.input_seq is not None:
        ck.progress = max(ck.progress, event.input_seq)
        if event.final:
            ck.input_cursor = max(ck.input_cursor, event.input_seq)
            if event.command_id:
                ck.recent_commands = [*ck.recent_commands, event.command_id][-RECENT_COMMANDS:]
    if len(ck.context) > context_limit:
        ck.context = ck.context[-context_limit:]
    return ck


def _bookkeeping(ck: Checkpoint, seq: int, event: Event) -> None:
    """What the owner tracks about commands: failures, turns' ends (for double texting),
    rollbacks, and messages kept for a resume."""
    if isinstance(event, UserMessageAccepted) and event.input_seq is not None:
        ck.last_user = (event.input_seq, seq)
    elif isinstance(event, TurnRolledBack):
        ck.context = [m for m in ck.context if not event.from_seq <= m.seq <= event.to_seq]
        ck.rolled_back = [*ck.rolled_back, (event.from_seq, event.to_seq)][-100:]
    if isinstance(event, CommandFailed):
        ck.failing = FailingCommand(seq=event.failed_seq, attempts=event.attempt, error=event.error)
    elif isinstance(event, ContextCompacted):
        ck.context = [m for m in ck.context if not event.from_seq <= m.seq <= event.to_seq]
        ck.summary = event.summary
    elif isinstance(event, MessageQueued):
        item = QueuedMessage(
            seq=event.input_seq or 0,
            command_id=event.command_id,
            interface=event.interface,
            content=event.content,
            actor=event.actor,
            instructions=event.instructions,
        )
        ck.queued = [*ck.queued, item]
    elif ck.queued:
        _dequeue(ck, event)


def _dequeue(ck: Checkpoint, event: Event) -> None:
    """A queued message's own events: accepted, then answered (or the session ended)."""
    head = ck.queued[0]
    if event.command_id == head.command_id and event.input_seq == head.seq:
        if isinstance(event, UserMessageAccepted):
            head.accepted = True
        elif event.final or isinstance(event, CommandDeadLettered):
            ck.queued = ck.queued[1:]
    if ck.session.state in TERMINAL:
        ck.queued = []  # never answered: the session ended first


def _effect(ck: Checkpoint, seq: int, event: Event) -> None:
    counters = ck.session.counters
    match event:
        case SessionClaimed():
            ck.owner = event.worker_id
        case UserMessageAccepted():
            _spent_instructions(ck.context)
            message = ChatMessage(
                role="user",
                content=event.content,
                seq=seq,
                ts=event.ts,
                instructions=event.instructions,
            )
            ck.context.append(message)
            counters.user_messages += 1
        case TurnStarted():
            _started(ck, seq, event)
        case ToolCallsRequested() | ToolResult() | TurnWaiting() | ToolDecided():
            _tool_step(ck, event)
        case AgentMessage():
            ck.context.append(
                ChatMessage(
                    role="agent",
                    content=event.content,
                    seq=seq,
                    ts=event.ts,
                    interrupted=event.interrupted,
                )
            )
            counters.agent_messages += 1
            if ck.turn is not None and ck.turn.turn_id == event.turn_id:
                ck.turn.replied = True
        case TurnCompleted() | TurnFailed():
            counters.turns += isinstance(event, TurnCompleted)
            counters.failed_turns += isinstance(event, TurnFailed)
            ck.turn = None
            ck.session.waiting_for = []
        case StateChanged() | SessionImported():
            _new_state(ck, event)
        case MetadataChanged():
            ck.session.metadata = dict(event.metadata)
        case _:
            pass


def _spent_instructions(context: list[ChatMessage]) -> None:
    """A new user message: the turn of the one before it is over, and so are its
    instructions (the events keep them; the state holds one turn's at most)."""
    for i in range(len(context) - 1, -1, -1):
        if context[i].role == "user":
            if context[i].instructions is not None:
                context[i] = context[i].model_copy(update={"instructions": None})
            return


def _new_state(ck: Checkpoint, event: StateChanged | SessionImported) -> None:
    record = ck.session
    if isinstance(event, SessionImported):  # as the export said, or ACTIVE
        record.state = event.state
        record.counters.turns, record.counters.failed_turns = event.turns, event.failed_turns
        _active(record, event.active_at or event.ts)
        return
    record.state = event.to_state
    if event.to_state in TERMINAL:
        record.waiting_for = []


def _started(ck: Checkpoint, seq: int, event: TurnStarted) -> None:
    user = ck.last_user
    origin = event.origin_seq or event.input_seq or 0
    before = ck.turn if ck.turn is not None and ck.turn.input_seq == origin else None
    ck.turn = TurnInFlight(
        turn_id=event.turn_id,
        input_seq=origin,
        command_id=event.command_id,
        interface=event.interface,
        attempt=event.attempt,
        start_seq=user[1] if user and user[0] == origin else seq,
    )
    if before is not None:  # taken over, or going on after an approval: keep its steps
        ck.turn.start_seq = before.start_seq
        ck.turn.responses = before.responses
        ck.turn.results = before.results
        ck.turn.decisions = before.decisions
        ck.turn.message = before.message
    ck.session.waiting_for = []


def _tool_step(
    ck: Checkpoint, event: ToolCallsRequested | ToolResult | TurnWaiting | ToolDecided
) -> None:
    """A turn's tool steps: kept with the turn so that it can be replayed, not redone."""
    turn = ck.turn
    if turn is None:
        return
    match event:
        case ToolCallsRequested():
            if event.step == len(turn.responses):
                turn.responses = [*turn.responses, event.response]
        case ToolResult():
            outcome = ToolOutcome(tool=event.tool, content=event.content, denied=event.denied)
            turn.results = {**turn.results, event.call_id: outcome}
        case TurnWaiting():
            turn.waiting = list(event.calls)
            turn.message = event.message
            turn.text = event.text
            ck.session.waiting_for = turn.pending
        case ToolDecided():
            decision = ToolDecision(approved=event.approved, reason=event.reason)
            turn.decisions = {**turn.decisions, event.call_id: decision}
            ck.session.waiting_for = turn.pending


def fold(
    events: list[tuple[int, Event]],
    ck: Checkpoint | None = None,
    context_limit: int = DEFAULT_CONTEXT,
) -> Checkpoint | None:
    for seq, event in events:
        ck = apply(ck, seq, event, context_limit)
    return ck


def _ids(ck: Checkpoint, change: Callable[[int], int], since: int = 0) -> None:
    """Apply ``change`` to every event id from ``since`` on that the state holds (not to
    commands' sequences). The context is in id order: only its end is looked at."""
    ck.as_of = change(ck.as_of)
    context = ck.context
    i = len(context)
    while i and context[i - 1].seq >= since:
        i -= 1
    if i < len(context):
        context[i:] = [m.model_copy(update={"seq": change(m.seq)}) for m in context[i:]]
    if ck.last_user is not None:
        ck.last_user = (ck.last_user[0], change(ck.last_user[1]))
    if ck.turn is not None:
        ck.turn.start_seq = change(ck.turn.start_seq)
    if ck.last_turn is not None:
        ck.last_turn.start_seq = change(ck.last_turn.start_seq)
        ck.last_turn.end_seq = change(ck.last_turn.end_seq)
    ck.rolled_back = [(change(a), change(b)) for a, b in ck.rolled_back]


def upgrade(ck: Checkpoint) -> Checkpoint:
    """A snapshot of the format that named events by stream sequence, on the ids' scale."""
    if ck.v == 1:
        _ids(ck, lambda i: i * ID_SCALE)
        ck.v = 2
    return ck


def rebase(ck: Checkpoint, since: int, delta: int) -> Checkpoint:
    """Move the ids from ``since`` on by ``delta``: events folded before they were stored,
    under ids their record was expected to get, now that it is stored elsewhere."""
    if delta:
        _ids(ck, lambda i: i + delta if i >= since else i, since)
    return ck
