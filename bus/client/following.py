"""Following what commands cause: a turn's deltas and events until it ends, a stored
command's outcome, a session's events from any cursor. Followers use no server-side
consumer (:mod:`praxis.bus.follow`). ``keepalive``: ``None`` comes after each that many
seconds of quiet (for relays that must show an idle connection is alive)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from praxis.bus.client import commands, fleet, scope
from praxis.bus.client.base import ClientState, Receipt
from praxis.bus.errors import CommandTimeoutError, InvalidCursorError, SessionNotFoundError
from praxis.bus.follow import Follower
from praxis.bus.state import load_head
from praxis.schemas import Delivery, DoubleTexting, TokenDelta, TurnStarted, first_id
from praxis.schemas.events import CommandEffects


async def turn(
    c: ClientState,
    session_id: str,
    message: str,
    *,
    command_id: str | None,
    keepalive: float | None,
    queue: bool,
    on_busy: DoubleTexting | None,
    accepted: bool,
    instructions: str | None = None,
) -> AsyncGenerator[Receipt | Delivery | None, None]:
    """Send a message; yield what it causes (deltas, reply) until the turn ends.

    ``accepted``: first yield the :class:`Receipt` as soon as the message is stored
    (before a worker has answered anything); the session's state is then checked before
    storing, so that a message it refuses raises instead."""
    await scope.guard(c, session_id)
    follower = Follower(c.bus, session_id)
    try:
        task_id = None if accepted else c.caches.task_ids.get(session_id)
        if task_id is None:
            head, tail = await follower.open()
            receipt = await commands.send_after(
                c, head, tail, message, command_id, queue, on_busy, instructions=instructions
            )
            await follower.start(receipt.cursor, tail, join_turn=False)
        else:
            # A session's task never changes: no need to read its state first (the
            # worker refuses a message the state does not allow: command.rejected).
            cmd = commands.message_command(
                c,
                session_id,
                task_id,
                message,
                command_id,
                queue,
                on_busy,
                instructions=instructions,
            )
            await follower.subscribe()
            ack = await commands.store(c, cmd)
            receipt = Receipt(session_id, cmd.command_id, first_id(int(ack.seq)))
            if not ack.duplicate:
                follower.start_at(receipt.cursor)  # no read: all it causes is to come
            else:  # a repeat: what it caused may be stored already
                _, tail = await follower.head()
                await follower.start(receipt.cursor, tail, join_turn=False)
        if accepted:
            yield receipt
        async for item in until_final(c, follower, receipt, keepalive):
            yield item
    finally:
        await follower.close()


async def follow(
    c: ClientState, receipt: Receipt, *, deltas: bool, keepalive: float | None
) -> AsyncGenerator[Delivery | None, None]:
    """What a stored command causes (its turns' deltas included) until it is done.

    ``deltas=False``: no need for the text of a turn already in flight (no snapshot is
    asked of the owner, which may be just finishing a run and not answer)."""
    await scope.guard(c, receipt.session_id)
    follower = Follower(c.bus, receipt.session_id)
    try:
        _, tail = await follower.open()
        await follower.start(receipt.cursor, tail, join_turn=deltas)
        async for item in until_final(c, follower, receipt, keepalive):
            yield item
    finally:
        await follower.close()


async def _wait_on(c: ClientState, receipt: Receipt, started: float, until: float) -> None:
    """After a quiet while: raise if the command will not be answered (its session is
    gone, no worker is live, or it waited ``until``); return to wait on."""
    if await load_head(c.bus, receipt.session_id) is None:
        raise SessionNotFoundError(
            receipt.session_id,
            "it was removed while its command waited (purged, or its create "
            "refused: an agent no worker offers)",
        ) from None
    now = asyncio.get_running_loop().time()
    live = await fleet.live_workers(c)
    if now >= until or live == 0:
        raise CommandTimeoutError(
            receipt.session_id,
            receipt.command_id,
            now - started,
            cursor=receipt.cursor,
            live_workers=live,
        ) from None


async def until_final(
    c: ClientState, follower: Follower, receipt: Receipt, keepalive: float | None
) -> AsyncGenerator[Delivery | None, None]:
    """What ``receipt``'s command causes (its turns' deltas included) until it is done.

    The command is stored, so it will be answered: this waits as long as live workers
    (by their heartbeats) can answer it, up to ``queue_timeout`` in all (a worker that
    died holding the session is taken over one lease time later; busy workers take it
    in turn). Once a turn has started, the worker's own ``turn_timeout`` bounds it (it
    then ends the turn with ``turn.failed``), so the wait allows for that instead. It
    gives up sooner, after ``command_timeout`` of quiet, only when no worker is live.
    The error says what is true: stored, not yet answered, and the cursor to follow.
    """
    settings = c.bus.settings
    quiet = settings.command_timeout
    effects = CommandEffects(receipt.command_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + quiet
    until = started + max(settings.queue_timeout, quiet)

    def give_up() -> float:  # read as the follower waits: no timer per item on this hot path
        return min(deadline, until)

    stream = follower.updates(keepalive, give_up)
    try:
        while True:
            try:
                item = await anext(stream)
            except TimeoutError:
                await _wait_on(c, receipt, started, until)
                # Live workers will answer it: wait on. The follower keeps its place;
                # only this iteration of it ended.
                stream = follower.updates(keepalive, give_up)
                deadline = loop.time() + quiet
                continue
            if item is None:
                yield None  # quiet for keepalive seconds; the deadline stands
                continue
            deadline = loop.time() + quiet
            if not effects.takes(item):
                continue
            ev = item.event
            if isinstance(ev, TokenDelta):
                yield item
                continue
            if isinstance(ev, TurnStarted):
                quiet = settings.turn_timeout + settings.command_timeout
                deadline = loop.time() + quiet
                until = max(until, deadline)
            yield item
            if ev.final:
                return
    finally:
        await stream.aclose()


async def events(
    c: ClientState, session_id: str, after: int | None, keepalive: float | None
) -> AsyncGenerator[Delivery | None, None]:
    """The session's durable events after ``after`` (``None``: from now), then live ones,
    with deltas. The session is looked up, and ``after`` checked, before this returns."""
    await scope.guard(c, session_id)
    follower = Follower(c.bus, session_id)
    try:
        _, tail = await follower.open()
        if after is not None and after > tail:
            raise InvalidCursorError(
                f"cursor {after} is beyond the last event of session {session_id!r} ({tail})"
            )
        await follower.start(after, tail)
    except BaseException:
        await follower.close()
        raise
    return _relay(follower, keepalive)


async def _relay(
    follower: Follower, keepalive: float | None
) -> AsyncGenerator[Delivery | None, None]:
    try:
        async for item in follower.updates(keepalive):
            yield item
    finally:
        await follower.close()


async def deliveries(
    items: AsyncGenerator[Receipt | Delivery | None, None],
) -> AsyncGenerator[Delivery, None]:
    """Only the deliveries of ``items`` (without keepalives or a receipt)."""
    try:
        async for item in items:
            if isinstance(item, Delivery):
                yield item
    finally:
        await items.aclose()
