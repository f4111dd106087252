"""Follow a session: durable events from a cursor, then live events and token deltas.

No server-side consumer per follower. The follower subscribes to ``live.<id>`` first,
then reads what it missed by direct get, then serves the live notices, dropping what it
already delivered. Each notice names the event sequence its append was fenced on
(``prev``): when that is later than the last one the follower knows, a notice was missed
and the gap is read back from the stream. Every durable event after the cursor is delivered
exactly once, in order. Joining in the middle of a turn, the follower asks the owner for
the text so far, then passes on only the deltas after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from praxis.bus import subjects
from praxis.bus.connection import Bus
from praxis.bus.errors import BusError, SessionNotFoundError, StreamEndedError
from praxis.bus.state import load_head, read_events
from praxis.schemas import (
    CommitNotice,
    Delivery,
    Event,
    Snapshot,
    TailNotice,
    TokenDelta,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    decode_live,
)
from praxis.schemas.events import live_delivery

log = logging.getLogger("praxis.bus.follow")

LIVE_IDLE = 5.0
"""Seconds a session's live subscription is kept after its last follower in the process
ended: a client whose next turn follows at once (a closed loop, a chat) subscribes once."""
LIVE_KEPT = 10_000
"""Idle live subscriptions kept at most per connection (the oldest go first)."""


class LiveSubscriptions:
    """One core subscription to ``live.<id>`` per session followed on a connection, shared
    by every follower of that session in the process (each message handed to each), and
    kept :data:`LIVE_IDLE` seconds after the last one ended: no subscribe and unsubscribe
    per turn."""

    def __init__(self, nc: Client, idle: float = LIVE_IDLE, kept: int = LIVE_KEPT) -> None:
        self.nc = nc
        self.idle = idle
        self.kept = kept
        self._subs: dict[str, Subscription | None] = {}
        self._listeners: dict[str, list[Callable[[Msg], None]]] = {}
        self._idle: dict[str, float] = {}  # session -> since when nobody listens (in order)
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._subs)

    async def join(self, session_id: str, listener: Callable[[Msg], None]) -> None:
        """Hand ``listener`` every live message of the session from now on (once this
        returns, the server has the subscription: it comes before anything the caller
        sends next on this connection)."""
        self._listeners.setdefault(session_id, []).append(listener)
        self._idle.pop(session_id, None)
        if session_id in self._subs:
            return
        self._subs[session_id] = None  # being made: a second follower meanwhile waits not

        async def deliver(msg: Msg) -> None:
            for handed in self._listeners.get(session_id, ()):
                handed(msg)

        try:
            self._subs[session_id] = await self.nc.subscribe(subjects.live(session_id), cb=deliver)
        except BaseException:
            self._subs.pop(session_id, None)
            self.leave(session_id, listener)
            raise

    def leave(self, session_id: str, listener: Callable[[Msg], None]) -> None:
        listeners = self._listeners.get(session_id)
        if listeners is None:
            return
        listeners[:] = [known for known in listeners if known is not listener]
        if listeners:
            return
        del self._listeners[session_id]
        if session_id in self._subs:
            self._idle[session_id] = asyncio.get_running_loop().time()
            self._sweep_later()

    def _sweep_later(self) -> None:
        while len(self._idle) > self.kept:  # too many kept: the oldest go now
            self._drop(next(iter(self._idle)))
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Unsubscribe what stayed idle :attr:`idle` seconds; end when nothing is idle."""
        loop = asyncio.get_running_loop()
        while self._idle:
            await asyncio.sleep(self.idle / 2)
            now = loop.time()
            for sid, since in list(self._idle.items()):
                if now - since >= self.idle:
                    self._drop(sid)

    def _drop(self, session_id: str) -> None:
        self._idle.pop(session_id, None)
        sub = self._subs.pop(session_id, None)
        if sub is not None:
            task = asyncio.create_task(_unsubscribe(sub))
            _UNSUBSCRIBING.add(task)
            task.add_done_callback(_UNSUBSCRIBING.discard)


_UNSUBSCRIBING: set[asyncio.Task[None]] = set()


async def _unsubscribe(sub: Subscription) -> None:
    with contextlib.suppress(Exception):  # the connection closed meanwhile
        await sub.unsubscribe()


_LIVE: weakref.WeakKeyDictionary[Client, LiveSubscriptions] = weakref.WeakKeyDictionary()


def live_subscriptions(nc: Client) -> LiveSubscriptions:
    """The live subscriptions of a connection (made on first use)."""
    found = _LIVE.get(nc)
    if found is None:
        found = _LIVE[nc] = LiveSubscriptions(nc)
    return found


_OPEN: dict[int, Follower] = {}
"""This process's followers, from :meth:`Follower.subscribe` to :meth:`Follower.close`."""


def end_all(why: str) -> int:
    """End every follower of this process (an edge that stops: its streams end at once,
    each saying where to follow again, instead of being cut off); how many there were."""
    followers = list(_OPEN.values())
    for follower in followers:
        follower.end(why)
    return len(followers)


def _wake_at(
    now: float,
    next_poll: float,
    quiet_since: float,
    keepalive: float | None,
    give_up: Callable[[], float] | None,
) -> float:
    """When a follower with nothing queued wakes: its next poll, keep-alive or end (which,
    past, raises :class:`TimeoutError`)."""
    wake = next_poll
    if keepalive is not None:
        wake = min(wake, quiet_since + keepalive)
    if give_up is not None:
        end = give_up()
        if now >= end:
            raise TimeoutError
        wake = min(wake, end)
    return wake


def _spread(seconds: float) -> float:
    """``seconds``, give or take a quarter (at random)."""
    return seconds * random.uniform(0.75, 1.25)


@dataclass
class _Turn:
    turn_id: str
    index: int = 0
    delivered: int = 0  # characters of the reply delivered so far


@dataclass
class Follower:
    """One follower of one session; use :meth:`open` then iterate :meth:`deliveries`."""

    bus: Bus
    session_id: str
    poll_interval: float = 5.0
    snapshot_timeout: float = 0.5
    """An owner answers a snapshot request in milliseconds; one that died after taking the
    request never does, and nothing is delivered while we wait: so wait briefly (the
    durable agent message carries the whole text anyway)."""
    max_poll_interval: float = 60.0
    gap_grace: float = 0.5
    """A poll that finds events no notice has announced yet reads them only if they are
    still unannounced at the next poll, this long after: their notices (and a turn's
    deltas behind them) may be on their way, and reading the events first would end the
    turn and drop those deltas."""
    max_pending: int = 10_000
    """Live messages kept while the reader is not reading; past that they are dropped and
    the reader resynchronises from the stream (and the owner's snapshot) when it reads."""
    _queue: deque[Msg | None] = field(default_factory=deque)
    """Live messages; ``None`` ends the follower (:func:`end_all`)."""
    _waiter: asyncio.Future[None] | None = None
    """What :meth:`updates` awaits while nothing is queued (see :meth:`_wait`)."""
    _alarm: asyncio.TimerHandle | None = None
    _ended_why: str = ""
    _listener: Callable[[Msg], None] | None = None
    cursor: int = 0
    known: int = 0
    _turn: _Turn | None = None
    _ended: set[str] = field(default_factory=set)
    _pending: list[Delivery] = field(default_factory=list)
    _overflowed: bool = False
    _suspect: int | None = None  # the head a poll found unannounced

    async def open(self) -> tuple[Event, int]:
        """Subscribe to live notices, then read the latest event (order matters)."""
        await self.subscribe()
        return await self.head()

    async def subscribe(self) -> None:
        self._listener = self._put  # one bound method: it is what leaves, by identity
        await live_subscriptions(self.bus.nc).join(self.session_id, self._listener)
        _OPEN[id(self)] = self

    def _put(self, msg: Msg) -> None:
        if len(self._queue) >= self.max_pending:
            self._overflowed = True  # a slow reader: keep memory bounded
            return
        self._queue.append(msg)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, wake: float) -> None:
        """Until a live message is queued, or the loop's time ``wake``. One alarm serves
        many waits (a timer per live message cost the relay more than the message): it is
        set again when it has rung, or when ``wake`` is well before it (a poll due sooner);
        ``wake`` only moves later while messages come, and an alarm that rings early is
        a wait that goes on."""
        loop = asyncio.get_running_loop()
        alarm = self._alarm
        if alarm is None or wake < alarm.when() - self.poll_interval / 4:
            if alarm is not None:
                alarm.cancel()
            self._alarm = loop.call_at(wake, self._ring)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _ring(self) -> None:
        self._alarm = None
        self._wake()

    def _silence(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None

    async def head(self) -> tuple[Event, int]:
        """The latest event (after :meth:`subscribe`): its sequence is where live starts."""
        found = await load_head(self.bus, self.session_id)
        if found is None:
            await self.close()
            raise SessionNotFoundError(self.session_id)
        return found

    def end(self, why: str) -> None:
        """End the iteration of :meth:`updates` with :class:`StreamEndedError` (``why``)."""
        self._ended_why = why
        self._queue.append(None)
        self._wake()

    async def close(self) -> None:
        _OPEN.pop(id(self), None)
        self._silence()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            live_subscriptions(self.bus.nc).leave(self.session_id, listener)

    async def start(self, after: int | None, tail: int, *, join_turn: bool = True) -> None:
        """Deliver from ``after`` (``None``: from now), given the tail read by open().

        With ``join_turn``, a turn in flight is joined with the text it has so far.
        """
        self.cursor = tail if after is None else after
        self.known = min(self.cursor, tail)
        await self._catch_up(tail)
        if join_turn:
            await self._snapshot()

    def start_at(self, seq: int) -> None:
        """Deliver what is stored after ``seq``, a command this follower's caller stored
        after :meth:`subscribe` (and not a repeat of an earlier one): nothing caused by it
        can be stored yet, and every later event's notice comes after the subscription,
        so there is nothing to read first (and a first notice fenced on an event before
        ``seq`` leaves no gap after it)."""
        self.cursor = self.known = seq

    def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """Every delivery, for as long as the caller iterates."""
        return cast(AsyncGenerator[Delivery, None], self.updates(None))

    async def updates(
        self, keepalive: float | None, give_up: Callable[[], float] | None = None
    ) -> AsyncGenerator[Delivery | None, None]:
        """Deliveries, and ``None`` after each ``keepalive`` seconds with nothing to deliver
        (for relays that must show an idle connection is alive). ``give_up``: the loop's
        time (asked again each time nothing is queued) from which, with nothing queued,
        the iteration ends with :class:`TimeoutError` (the follower keeps its place: call
        this again to go on). It serves as a caller's timeout on each item without a timer
        per item.

        After ``poll_interval`` without a live message the stream is polled for notices
        that were missed; the interval doubles while the session stays quiet (up to
        ``max_poll_interval``) and is spread at random, so that thousands of idle followers
        in one process neither poll in step nor keep the server busy. A poll or a read back
        that fails (a server too busy to answer in time) is tried again later."""
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        interval = self.poll_interval
        next_poll = quiet_since + _spread(interval)
        while True:
            while self._pending:
                yield self._pending.pop(0)
                quiet_since = loop.time()
            if self._overflowed:
                await self._resync()
                continue
            if not self._queue:
                now = loop.time()
                if keepalive is not None and now - quiet_since >= keepalive:
                    yield None
                    quiet_since = now
                await self._wait(_wake_at(now, next_poll, quiet_since, keepalive, give_up))
                if not self._queue:
                    if loop.time() >= next_poll:
                        interval, next_poll = await self._poll_step(interval)
                    continue
            msg = self._queue.popleft()
            interval = self.poll_interval  # poll only after poll_interval without a notice
            next_poll = loop.time() + _spread(interval)
            if not await self._try(self._on_live(msg)):
                next_poll = loop.time() + self.gap_grace  # a read back failed: poll soon

    async def _poll_step(self, interval: float) -> tuple[float, float]:
        """Poll; the interval after it and when the next poll is due."""
        now = asyncio.get_running_loop().time()
        if await self._try(self._poll()) and self._suspect is not None:
            return self.poll_interval, now + self.gap_grace  # look again soon
        interval = min(2 * interval, self.max_poll_interval)
        return interval, now + _spread(interval)

    async def _try(self, step: Awaitable[object]) -> bool:
        """Await ``step``; ``False`` if the bus failed it (a later poll recovers)."""
        try:
            await step
        except StreamEndedError:
            raise  # not a failed read: the end (see end_all)
        except (BusError, NatsTimeoutError, NoRespondersError, TimeoutError) as e:
            log.info("follower of %s: a read failed, tried again later: %r", self.session_id, e)
            return False
        return True

    async def _resync(self) -> None:
        """After live messages were dropped: what is queued is older than the stream's
        head, so drop it too and read the stream, then the text so far of a turn."""
        self._overflowed = False
        while self._queue:
            if self._queue.popleft() is None:
                self._queue.append(None)  # ended meanwhile: keep that
                break
        found = await load_head(self.bus, self.session_id)
        if found is not None and found[1] > self.known:
            await self._catch_up(found[1])
        await self._snapshot()

    async def _poll(self) -> bool:
        """After a quiet while, look for events whose notices were missed: those that a
        poll found unannounced and that still are (see ``gap_grace``). Whether the stream
        holds events not yet announced (to look again soon)."""
        found = await load_head(self.bus, self.session_id)
        suspect, self._suspect = self._suspect, None
        if suspect is not None and suspect > self.known:
            await self._catch_up(suspect)
        if found is not None and found[1] > self.known:
            self._suspect = found[1]
        return self._suspect is not None

    async def _catch_up(self, tail: int) -> None:
        """Deliver stored events in (cursor, tail]; then those read are known."""
        if tail > self.cursor:
            for eid, event in await read_events(
                self.bus, self.session_id, after=self.cursor, up_to=tail
            ):
                self._deliver_event(eid, event)
            # A read that stopped short of the tail (a replica behind its leader answered
            # the direct get) must not mark the rest known: the next poll reads it again.
            tail = min(tail, self.cursor)
        self.known = max(self.known, tail)

    def _deliver_event(self, seq: int, event: Event) -> None:
        if seq <= self.cursor:
            return
        self.cursor = seq
        if isinstance(event, TurnStarted):
            self._turn = _Turn(event.turn_id)
        elif isinstance(event, TurnCompleted | TurnFailed):
            self._ended.add(event.turn_id)
            self._turn = None
        self._pending.append(Delivery(cursor=seq, event=event))

    async def _on_live(self, msg: Msg | None) -> None:
        if msg is None:
            raise StreamEndedError(self.session_id, self.cursor, self._ended_why)
        try:
            live = decode_live(msg.data)
        except ValueError:  # pydantic's ValidationError too
            return  # not ours to understand; the stream stays the truth
        if isinstance(live, CommitNotice):
            await self._on_commit(live)
        elif isinstance(live, TailNotice):
            if live.seq > self.known:
                await self._catch_up(live.seq)
        else:
            await self._on_delta(live)

    async def _on_commit(self, notice: CommitNotice) -> None:
        if notice.seq <= self.known:
            return  # already read back from the stream
        if notice.prev > self.known:
            # A notice was missed: read the gap back, up to this notice and no further.
            # Reading on to the stream's end could pass the end of a turn whose deltas
            # are still queued behind this notice, and they would then be dropped.
            await self._catch_up(notice.seq)
            return
        for stored in notice.events:
            self._deliver_event(stored.seq, stored.event)
            if isinstance(stored.event, TurnStarted) and notice.deltas:
                for delta in notice.deltas:  # a turn stored whole: its deltas, in place
                    self._on_whole(delta)
        self.known = notice.seq

    def _on_whole(self, delta: TokenDelta) -> None:
        """A delta of a turn stored whole: its text so far (no delta of it came live)."""
        turn = self._turn
        if turn is None or turn.turn_id != delta.turn_id or delta.index <= turn.index:
            return
        turn.index = delta.index
        turn.delivered += len(delta.text)
        self._pending.append(live_delivery(delta))

    async def _on_delta(self, delta: TokenDelta) -> None:
        turn = self._turn
        if turn is None or turn.turn_id != delta.turn_id:
            return  # a turn we have not seen start (its notice comes first) or one that ended
        if delta.index <= turn.index:
            return  # contained in the snapshot already delivered
        if delta.index != turn.index + 1:
            await self._snapshot()  # a delta was lost on the way: fill in from the owner
            if delta.index != turn.index + 1:
                return
        turn.index = delta.index
        turn.delivered += len(delta.text)
        self._pending.append(live_delivery(delta))

    async def _snapshot(self) -> None:
        """Ask the owner for the text so far of the turn in flight (if there is one)."""
        try:
            resp = await self.bus.nc.request(
                subjects.snapshot(self.session_id),
                b"",
                timeout=min(self.snapshot_timeout, self.bus.timeout),
            )
        except (NoRespondersError, NatsTimeoutError, TimeoutError):
            return  # no owner right now: the durable agent message will carry the text
        if not resp.data:
            return
        snap = Snapshot.model_validate_json(resp.data)
        if self._turn is None and snap.turn_id not in self._ended:
            self._turn = _Turn(snap.turn_id)  # joined after its turn.started
        turn = self._turn
        if turn is None or snap.turn_id != turn.turn_id or snap.index <= turn.index:
            return
        text = snap.text[turn.delivered :]
        turn.index = snap.index
        turn.delivered = len(snap.text)
        if text:
            delta = TokenDelta(
                session_id=self.session_id, turn_id=turn.turn_id, index=snap.index, text=text
            )
            self._pending.append(Delivery(cursor=None, event=delta))
