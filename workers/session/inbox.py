"""A session's inbox on one worker: the work messages (triggers) that brought the session
here, the wake-up when a command is sent, reading the next stored input, the linger, and
the one policy for acknowledging triggers.

A trigger means "this session has work". It is acknowledged only once the session's
state covers its input (the input cursor is past it), so nothing is lost; it is handed
back (nak) when the run ends early, and terminated when its session cannot exist.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.msg import Msg

from praxis.bus import Bus, direct, metrics, subjects
from praxis.workers.session.order import Deliveries


def stream_seq(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


class Inbox:
    def __init__(self, bus: Bus, session_id: str, deliveries: Deliveries | None = None) -> None:
        self.bus = bus
        self.sid = session_id
        self.deliveries = deliveries
        self.triggers: list[Msg] = []
        self.accepting = True
        """New triggers for the session may join this run (until its last input check)."""
        self.wake = asyncio.Event()
        """A new input may be there: a trigger came or a command was seen."""

    def add(self, msg: Msg) -> None:
        self.triggers.append(msg)
        self.wake.set()

    def after(self, cursor: int) -> bool:
        """Whether a trigger is for an input past ``cursor`` (not handled yet)."""
        return any(stream_seq(m) > cursor for m in self.triggers)

    def redelivered(self, seq: int | None) -> bool:
        """Whether the work message for the input at ``seq`` has been delivered before
        (to a worker that handed it back, or died with it)."""
        return any(stream_seq(m) == seq and m.metadata.num_delivered > 1 for m in self.triggers)

    async def next_input(self, from_seq: int) -> direct.StoredMsg | None:
        """The session's first input stored at or after ``from_seq``: its trigger when this
        worker knows it is that input (see :mod:`.order`), else read from the stream."""
        known = self._known(from_seq - 1)
        if known is not None:
            return known
        p = self.bus.partition(self.sid)
        return await direct.next_by_subject(
            self.bus.nc,
            self.bus.partitions.stream(p),
            subjects.inputs(self.sid, p),
            from_seq,
            self.bus.timeout,
        )

    def _known(self, cursor: int) -> direct.StoredMsg | None:
        if self.deliveries is None:
            return None
        after = [m for m in self.triggers if stream_seq(m) > cursor]
        if not after:
            return None
        msg = min(after, key=stream_seq)
        if not self.deliveries.is_next(self.sid, cursor, msg):
            return None
        metrics.INPUTS_KNOWN.inc()
        return direct.StoredMsg(stream_seq(msg), msg.subject, msg.data, msg.headers or {})

    async def linger(
        self,
        cursor: int,
        stop: Callable[[], bool],
        events: tuple[asyncio.Event, ...],
    ) -> direct.StoredMsg | None:
        """Wait up to ``PRAXIS_LINGER`` for the input after ``cursor``, until ``stop()``
        (or one of ``events`` is set). A wake is a trigger: its input is stored; it is
        read again, backing off, until it is there (a replica behind its leader may answer
        the read) or the linger ends."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.bus.settings.linger
        recheck: float | None = None  # set once woken: read again after this long
        while not stop():
            remaining = end - loop.time()
            if remaining <= 0:
                return None
            waiters = [asyncio.ensure_future(e.wait()) for e in (self.wake, *events)]
            wait = remaining if recheck is None else min(remaining, recheck)
            await asyncio.wait(waiters, timeout=wait, return_when="FIRST_COMPLETED")
            for waiter in waiters:
                waiter.cancel()
            if self.wake.is_set():
                self.wake.clear()
                recheck = 0.001
            elif recheck is None:
                continue
            else:
                recheck = min(recheck * 2, 0.05)
            nxt = await self.next_input(cursor + 1)
            if nxt is not None:
                return nxt
        return None

    # -- acknowledgement: the one place a trigger is settled ------------------------------

    async def ack_done(self, cursor: int) -> None:
        """Acknowledge the triggers whose inputs the state covers; keep the others."""
        keep: list[Msg] = []
        for msg in self.triggers:
            if stream_seq(msg) <= cursor:
                with contextlib.suppress(Exception):
                    await msg.ack()
            else:
                keep.append(msg)
        self.triggers = keep

    async def in_progress(self) -> None:
        """Tell the server the triggers are still being worked on (a long turn)."""
        for msg in self.triggers:
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def defer(self, after: float | None = None) -> None:
        """Another worker holds the session: it will see these inputs; check back soon
        (``after`` seconds: when the lease of a holder that is gone expires)."""
        for msg in self.triggers:
            delay = after or min(0.02 * 2 ** min(msg.metadata.num_delivered, 8), 1.0)
            with contextlib.suppress(Exception):
                await msg.nak(delay=delay)
        self.triggers.clear()

    async def settle(self, cursor: int, retry_delay: float | None) -> None:
        """The run ended: acknowledge what is done, hand the rest back."""
        for msg in self.triggers:
            with contextlib.suppress(Exception):
                if stream_seq(msg) <= cursor:
                    await msg.ack()
                else:
                    await msg.nak(delay=retry_delay)
        self.triggers.clear()

    async def drop(self) -> None:
        """The session cannot exist (no create, or it was refused): never redeliver."""
        for msg in self.triggers:
            with contextlib.suppress(Exception):
                await msg.term()
        self.triggers.clear()
