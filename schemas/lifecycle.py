"""Session states and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    """Where the session is in its lifecycle."""

    CREATED = "CREATED"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


_ENDS = (SessionState.COMPLETED, SessionState.FAILED, SessionState.EXPIRED)
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.CREATED: frozenset({SessionState.ACTIVE, *_ENDS}),
    SessionState.ACTIVE: frozenset({SessionState.SUSPENDED, *_ENDS}),
    SessionState.SUSPENDED: frozenset({SessionState.ACTIVE, *_ENDS}),
    SessionState.COMPLETED: frozenset(),
    SessionState.FAILED: frozenset(),
    SessionState.EXPIRED: frozenset(),
}

# States in which a session takes user messages (CREATED becomes ACTIVE on the first turn).
ACCEPTS_MESSAGES = frozenset({SessionState.CREATED, SessionState.ACTIVE})
TERMINAL = frozenset(_ENDS)


def can_transition(current: SessionState, target: SessionState) -> bool:
    return target in TRANSITIONS[current]
