"""A turn's rules: how it begins (a new attempt, giving up, or only its end), the events
that end it, and what compaction drops before it."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from praxis.schemas import (
    AgentMessage,
    ChatMessage,
    Checkpoint,
    Event,
    ToolCall,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    TurnWaiting,
    Usage,
)
from praxis.workers.session.policy.decision import (
    CommandContext,
    Decision,
)

# -- turns ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Start the turn: attempt ``attempt``; ``fresh`` when no earlier attempt exists (the
    context is compacted first); ``eager``: store its start at once, not with its end (an
    earlier attempt may have died before its start was stored)."""

    attempt: int
    fresh: bool
    eager: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The turn was started ``attempts`` times (its workers died): park the command."""

    attempts: int

    @property
    def reason(self) -> str:
        return f"gave up after {self.attempts} attempts (workers died during the turn)"


def begin_turn(
    state: Checkpoint,
    ctx: CommandContext,
    origin: int,
    max_attempts: int,
    redelivered: bool = False,
) -> Start | GiveUp | Decision:
    """How the turn answering ``origin`` begins: a new attempt, giving up, or (its reply
    is stored already) only its end.

    ``redelivered``: the command's work message came again (JetStream's delivery count),
    so a worker may have died with the turn's start still waiting for its group commit.
    That attempt is counted, and this one's start is stored at once: every start is then
    counted, and a turn that kills its workers is parked after ``max_attempts`` starts
    even when each dies at once."""
    turn = state.turn
    fresh = turn is None or turn.input_seq != origin
    attempt = 2 if redelivered and fresh else 1
    if turn is not None and turn.input_seq == origin:
        if turn.replied:  # the reply is stored: only the end of the turn is missing
            meta = ctx.meta(state.session.state)
            done = TurnCompleted(**meta, final=True, turn_id=turn.turn_id, duration_ms=0)
            return Decision((done,))
        # Taken over from a worker that died in it: one more attempt. Going on after an
        # approval is not a new attempt.
        attempt = 1 if turn.waiting else turn.attempt + 1
    if attempt > max_attempts:
        return GiveUp(attempt - 1)
    return Start(attempt, fresh=fresh, eager=redelivered)


def turn_started(
    state: Checkpoint,
    ctx: CommandContext,
    turn_id: str,
    attempt: int,
    worker_id: str,
    origin_seq: int | None,
) -> TurnStarted:
    """The start of a turn (``origin_seq``: the command it answers, when that is not the
    one being handled: a turn going on after an approval)."""
    return TurnStarted(
        **ctx.meta(state.session.state),
        turn_id=turn_id,
        attempt=attempt,
        worker_id=worker_id,
        origin_seq=origin_seq,
    )


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """How the agent's part of a turn ended."""

    text: str = ""
    error: str | None = None
    usage: Usage | None = None
    waiting: list[ToolCall] | None = None
    """The tool calls the turn now waits on (approval)."""
    stopped_by: str | None = None
    """The command that stopped the turn (a cancel, a suspend, a newer message)."""


def end_turn(
    state: Checkpoint,
    ctx: CommandContext,
    turn_id: str,
    content: str | None,
    outcome: TurnOutcome,
    duration_ms: float,
) -> tuple[Event, ...]:
    """The events that end a turn: its pause for approval, or its reply (kept, marked
    interrupted, when the turn failed) and its completion or failure."""
    meta = ctx.meta(state.session.state)
    if outcome.waiting is not None:
        waiting = TurnWaiting(
            **meta,
            final=True,
            turn_id=turn_id,
            calls=outcome.waiting,
            message=content,
            text=outcome.text,
        )
        return (waiting,)
    events: list[Event] = []
    if outcome.text:
        interrupted = outcome.error is not None
        reply = AgentMessage(**meta, turn_id=turn_id, content=outcome.text, interrupted=interrupted)
        events.append(reply)
    if outcome.error is None:
        done = TurnCompleted(
            **meta,
            final=True,
            turn_id=turn_id,
            duration_ms=round(duration_ms, 3),
            usage=outcome.usage,
        )
        return (*events, done)
    failed = TurnFailed(
        **meta,
        final=True,
        turn_id=turn_id,
        reason=outcome.error,
        cancelled=outcome.stopped_by is not None,
        cancelled_by=outcome.stopped_by,
        usage=outcome.usage,
    )
    return (*events, failed)


_CONTENT = attrgetter("content")


def context_chars(context: list[ChatMessage]) -> int:
    return sum(map(len, map(_CONTENT, context)))


class ContextChars:
    """The characters of a session's context, counted again only for what was appended
    since (the fold appends to the list, and moves ids in place; anything else makes a new
    list)."""

    def __init__(self) -> None:
        self._context: list[ChatMessage] | None = None  # held: its id is not reused
        self._counted = 0
        self._chars = 0

    def of(self, context: list[ChatMessage]) -> int:
        if context is not self._context or len(context) < self._counted:
            self._context, self._counted, self._chars = context, 0, 0
        if len(context) > self._counted:
            self._chars += context_chars(context[self._counted :])
            self._counted = len(context)
        return self._chars


def compaction(
    state: Checkpoint, max_messages: int, max_chars: int, chars: int | None = None
) -> list[ChatMessage] | None:
    """The oldest messages to fold into the summary before a turn, or ``None``: past its
    message or character budget, the context keeps the newest messages within half of
    each budget (at least one). ``chars``: the context's characters, if known."""
    context = state.context
    if chars is None:
        chars = context_chars(context)
    if len(context) <= max_messages and chars <= max_chars:
        return None
    kept, chars = 0, 0
    for m in reversed(context):
        if kept and (kept >= max_messages // 2 or chars + len(m.content) > max_chars // 2):
            break
        kept, chars = kept + 1, chars + len(m.content)
    dropped = context[: len(context) - kept]
    return dropped or None
