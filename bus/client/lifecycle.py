"""Suspend, resume, complete: checked against the lifecycle before sending, then waited
for (the worker takes them in order, after what came before)."""

from __future__ import annotations

from praxis.bus.client import commands, following, reading, scope
from praxis.bus.client.base import ClientState, Receipt
from praxis.bus.errors import CommandDeadLetteredError, IllegalTransitionError
from praxis.schemas import (
    CommandDeadLettered,
    CommandRejected,
    Complete,
    Event,
    Resume,
    SessionRecord,
    SessionState,
    Suspend,
    TokenDelta,
    can_transition,
)

_ACTIONS: dict[type[Suspend | Resume | Complete], tuple[str, SessionState]] = {
    Suspend: ("suspend", SessionState.SUSPENDED),
    Resume: ("resume", SessionState.ACTIVE),
    Complete: ("complete", SessionState.COMPLETED),
}


async def transition(
    c: ClientState,
    session_id: str,
    kind: type[Suspend | Resume | Complete],
    reason: str | None = None,
) -> SessionRecord:
    action, target = _ACTIONS[kind]
    await scope.guard(c, session_id)
    head, tail = await reading.head(c, session_id)
    if not can_transition(head.state, target):
        raise IllegalTransitionError(session_id, action, head.state)
    fields = {"reason": reason} if reason is not None and kind is not Resume else {}
    cmd = kind(
        session_id=session_id,
        task_id=head.task_id,
        interface=c.interface,
        actor=c.actor,
        **fields,
    )
    await commands.store(c, cmd)
    for event in await wait(c, Receipt(session_id, cmd.command_id, tail)):
        if isinstance(event, CommandRejected):
            raise IllegalTransitionError(session_id, action, event.state, event.reason)
        if isinstance(event, CommandDeadLettered):
            raise CommandDeadLetteredError(session_id, event.dead_letter_id, event.reason)
    return await reading.get(c, session_id)


async def wait(c: ClientState, receipt: Receipt) -> list[Event]:
    """The events a stored command caused, once it is done."""
    return [
        item.event
        async for item in following.follow(c, receipt, deltas=False, keepalive=None)
        if item is not None and not isinstance(item.event, TokenDelta)
    ]
