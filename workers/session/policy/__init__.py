"""The session's rules, as pure functions: state + command (or turn outcome) -> decision.

Nothing here does I/O, reads a clock or makes an id: what the shell around it
(:mod:`praxis.workers.session.runner`) knows of the world comes in as :class:`Facts`, and
what it must do comes back as a :class:`Decision`: the events to store, in order, and the
step after them. The shell stores the events (fenced), folds them into the state with
:func:`praxis.schemas.apply`, and performs the step. Every rule of the lifecycle, double
texting, approvals, expiry, cancelling, retries and parking lives here and is tested
without a server (``tests/unit/``).
"""

from __future__ import annotations

from praxis.workers.session.policy.commands import (
    answer_queued,
    came_while_busy,
    decide,
    end_waiting,
    interrupts,
    invalid,
    is_waiting,
    next_queued,
    reject,
    skip,
    span,
    too_large,
    transition,
)
from praxis.workers.session.policy.decision import (
    EXPIRY_SLACK,
    RETRY_DELAY,
    Again,
    CommandContext,
    Decision,
    Facts,
    Meta,
    RunTurn,
)
from praxis.workers.session.policy.failures import (
    Park,
    Retry,
    failure,
    outcome_of,
    parked,
)
from praxis.workers.session.policy.turns import (
    ContextChars,
    GiveUp,
    Start,
    TurnOutcome,
    begin_turn,
    compaction,
    end_turn,
    turn_started,
)

__all__ = [
    "EXPIRY_SLACK",
    "RETRY_DELAY",
    "Again",
    "CommandContext",
    "ContextChars",
    "Decision",
    "Facts",
    "GiveUp",
    "Meta",
    "Park",
    "Retry",
    "RunTurn",
    "Start",
    "TurnOutcome",
    "answer_queued",
    "begin_turn",
    "came_while_busy",
    "compaction",
    "decide",
    "end_turn",
    "end_waiting",
    "failure",
    "interrupts",
    "invalid",
    "is_waiting",
    "next_queued",
    "outcome_of",
    "parked",
    "reject",
    "skip",
    "span",
    "too_large",
    "transition",
    "turn_started",
]
