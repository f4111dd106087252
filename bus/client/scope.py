"""Whose sessions a client may see and how many it may have: an owner's client sees only
its own sessions (any other is 'unknown', never 'forbidden', so ids cannot be probed),
and creates no more than ``PRAXIS_MAX_SESSIONS_PER_OWNER`` live ones."""

from __future__ import annotations

from praxis.bus import logs
from praxis.bus.client import reading
from praxis.bus.client.base import ClientState
from praxis.bus.errors import QuotaExceededError, SessionNotFoundError
from praxis.schemas import TERMINAL, check_token


async def guard(c: ClientState, session_id: str) -> None:
    """Raise :class:`SessionNotFoundError` for a session the scope may not see."""
    check_token(session_id, "session id")
    logs.about(session_id, c.caches.task_ids.get(session_id))  # for this task's log lines
    scope = c.scope
    if scope is None or scope.admin:
        return
    owners = c.caches.owners
    if session_id in owners:
        owner = owners.get(session_id)
    else:
        ck, _ = await reading.checkpoint(c, session_id)
        owner = ck.session.owner
        owners.put(session_id, owner)
    if owner != scope.owner:
        raise SessionNotFoundError(session_id)


async def check_quota(c: ClientState) -> None:
    scope, limit = c.scope, c.bus.settings.max_sessions_per_owner
    if scope is None or scope.admin or limit <= 0:
        return
    live = sum(
        1 for r in await reading.records(c) if r.owner == scope.owner and r.state not in TERMINAL
    )
    if live >= limit:
        raise QuotaExceededError(f"{scope.owner.principal} ({scope.owner.tenant})", limit)
