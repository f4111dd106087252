"""A command that keeps failing: retried with backoff, then parked; and how a command
ended, for its sender's ``reply_to``."""

from __future__ import annotations

from dataclasses import dataclass, replace

from praxis.schemas import (
    Checkpoint,
    CommandDeadLettered,
    CommandFailed,
    CommandRejected,
    Event,
    MessageQueued,
    SessionState,
    StateChanged,
    TurnCompleted,
    TurnFailed,
    TurnWaiting,
)
from praxis.schemas.records import OutcomeKind
from praxis.workers.session.policy.decision import (
    RETRY_DELAY,
    CommandContext,
)

# -- failures ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Park:
    """Store the command as a dead letter, then end it (:func:`parked`)."""

    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Record the failure; the command is tried again (any worker) after ``delay``."""

    event: CommandFailed
    delay: float
    message: str


def failure(
    state: Checkpoint, ctx: CommandContext, kind: str, error: str, limit: int
) -> Retry | Park:
    """Handling the command raised ``error``: try it again later, or, once it has failed
    ``limit`` times, park it as a dead letter and go on."""
    seq = ctx.input_seq
    assert seq is not None
    failing = state.failing
    attempt = (failing.attempts if failing and failing.seq == seq else 0) + 1
    if attempt >= limit:
        return Park(attempt, f"failed {attempt} times; last error: {error}")
    delay = min(RETRY_DELAY * 2 ** (attempt - 1), 5.0)
    event = CommandFailed(
        **replace(ctx, input_seq=None).meta(state.session.state),
        command_kind=kind,
        failed_seq=seq,
        attempt=attempt,
        error=error,
        retry=True,
    )
    message = (
        f"{kind} at {seq} failed (attempt {attempt} of {limit}), tried again in {delay:g}s: {error}"
    )
    return Retry(event, delay, message)


def parked(
    state: Checkpoint, ctx: CommandContext, kind: str, letter_id: str, park: Park
) -> tuple[Event, ...]:
    """The end of a parked command (a turn in flight for it fails first)."""
    meta = ctx.meta(state.session.state)
    events: list[Event] = []
    turn = state.turn
    if turn is not None and turn.input_seq == ctx.input_seq:
        reason = f"dead-lettered: {park.reason}"
        events.append(TurnFailed(**meta, turn_id=turn.turn_id, reason=reason))
    events.append(
        CommandDeadLettered(
            **meta,
            final=True,
            command_kind=kind,
            dead_letter_id=letter_id,
            attempts=park.attempts,
            reason=park.reason,
        )
    )
    return tuple(events)


# -- outcomes -----------------------------------------------------------------------------


def outcome_of(event: Event) -> OutcomeKind:
    """How a command ended, by the final event it ended with (a ``reply_to``'s answer)."""
    match event:
        case TurnCompleted():
            return "completed"
        case TurnFailed():
            return "failed"
        case StateChanged(to_state=SessionState.FAILED):
            return "failed"
        case TurnWaiting():
            return "waiting"
        case CommandRejected():
            return "rejected"
        case MessageQueued():
            return "queued"
        case CommandDeadLettered():
            return "dead_lettered"
        case _:
            return "done"
