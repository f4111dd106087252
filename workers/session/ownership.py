"""Owning a session for one run: its lease in the KV bucket, taken only if free, renewed
while the run lasts (a long turn), given back at its end, or kept between runs while the
worker is busy (:class:`KeptLeases`). The fence on every append is what makes a lost lease
harmless; the lease only keeps two workers from trying at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from praxis.bus import Bus, leases, subjects
from praxis.bus.tasks import cancel_and_wait

log = logging.getLogger("praxis.worker")
_ASK_TIMEOUT = 0.5
"""Seconds a holder has to answer a handover request: a live one answers in
milliseconds; one that does not (stopped, partitioned) is treated as gone."""


class LeaseLostError(Exception):
    pass


class Ownership:
    def __init__(self, bus: Bus, session_id: str, worker_id: str) -> None:
        self.bus = bus
        self.sid = session_id
        self.worker_id = worker_id
        self.retry_after: float | None = None
        """After a claim that failed because the holder is gone: when its lease expires."""
        self.held: leases.Held | None = None
        """After a claim that failed: who holds the lease."""

    async def claim(
        self, hint: int | None, kept: leases.Lease | None = None
    ) -> leases.Lease | None:
        """The lease, or ``None`` if another worker holds it (``held`` says who).

        ``kept``: the lease this worker kept since the session's last run here, used as it
        is while it is young (no write), renewed otherwise."""
        if kept is not None:
            if kept.age() < self.bus.settings.lease_ttl / 2:
                return kept
            if await leases.renew(self.bus.leases_of(self.sid), kept):
                return kept
            hint = None
        self.retry_after = None
        got = await leases.try_claim(self.bus.leases_of(self.sid), self.sid, self.worker_id, hint)
        if isinstance(got, leases.Lease):
            return got
        self.held = got
        return None

    async def forward(self, holder: str, triggers: list[Msg]) -> leases.Lease | bool:
        """Hand the session's ``triggers`` to the worker holding its lease (see
        :func:`forward`): ``True`` if it runs the session and took them (it acknowledges
        them); the lease, if it only kept it between runs and handed it over; ``False``
        if neither (then ``retry_after`` says when a holder that did not answer, gone,
        loses its lease)."""
        answer: Forwarded = None
        for msg in triggers:
            answer = await forward(self.bus, holder, self.sid, msg)
            if answer is not True:
                break
        if answer is True:
            return True
        if isinstance(answer, int):
            kv = self.bus.leases_of(self.sid)
            lease = await leases.take_over(kv, self.sid, self.worker_id, answer)
            return lease if lease is not None else False
        if answer is None and self.held is not None and self.held.worker_id == holder:
            ttl = self.bus.settings.lease_ttl
            left = self.held.expires_in(ttl)
            self.retry_after = None if left is None else min(max(left + 0.05, 0.02), ttl)
        return False

    async def release(self, lease: leases.Lease) -> int | None:
        """Give the lease back (best effort): the revision of the release, a hint for the
        next claim here."""
        with contextlib.suppress(Exception):
            return await leases.release(
                self.bus.nc, self.bus.lease_bucket(self.sid), lease, self.bus.timeout
            )
        return None

    async def hold(
        self,
        lease: leases.Lease,
        work: Callable[[], Coroutine[Any, Any, None]],
        still_working: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``work`` while renewing ``lease`` (and telling the server the triggers are
        ``still_working``); cancel it and raise :class:`LeaseLostError` if the lease is
        lost."""
        task = asyncio.create_task(work())
        period = self.bus.settings.lease_ttl / 3
        lost = False
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=max(period - lease.age(), 0.0))
                if task.done():
                    break
                if not await leases.renew(self.bus.leases_of(self.sid), lease):
                    lost = True
                    task.cancel()
                    break
                await still_working()
        finally:
            if not task.done():
                await cancel_and_wait(task)
            try:
                await task
            except asyncio.CancelledError:
                if not lost:
                    raise
        if lost:
            raise LeaseLostError(f"lease on {self.sid} expired")


Forwarded = bool | int | None
"""What the holder of a lease answered a forwarded trigger: ``True`` taken (it runs the
session), an int (the revision of the kept lease it hands over), ``False`` neither, or
``None`` no answer (gone)."""

ACK_HEADER = "Praxis-Ack"
"""The forwarded trigger's acknowledgement subject (``$JS.ACK...``)."""
SESSION_HEADER = "Praxis-Session"


async def forward(bus: Bus, holder: str, session_id: str, msg: Msg) -> Forwarded:
    """Hand a trigger (a work message for ``session_id``) to the worker ``holder`` that
    holds its lease: a worker running a session takes its triggers and acknowledges them
    itself, so the work is neither handed back nor redelivered, and the owner needs no
    subscription to every session's commands to see what concerns its own. The command
    travels with it (to act on a cancel or a suspend during a turn)."""
    headers = {SESSION_HEADER: session_id, ACK_HEADER: msg.reply}
    try:
        resp = await bus.nc.request(
            subjects.lease_handover(holder), msg.data, headers=headers, timeout=_ASK_TIMEOUT
        )
        answer = json.loads(resp.data)
    except (TimeoutError, NatsError, ValueError):
        return None
    if answer.get("taken") is True:
        return True
    revision = answer.get("revision")
    return revision if isinstance(revision, int) and not isinstance(revision, bool) else False


def forwarded(bus: Bus, msg: Msg) -> tuple[str, Msg] | None:
    """The session and the trigger of a forwarded one (``None``: not one, or malformed):
    a message whose acknowledgement goes to the subject the sender gave."""
    headers = msg.headers or {}
    sid, ack = headers.get(SESSION_HEADER), headers.get(ACK_HEADER, "")
    if not sid or not ack.startswith("$JS.ACK."):
        return None
    try:
        subject = subjects.inputs(sid, bus.partition(sid))
    except ValueError:  # not an id, or one of a partition this worker does not know
        return None
    return sid, Msg(bus.nc, subject=subject, reply=ack, data=msg.data)


class KeptLeases:
    """The leases a busy worker keeps between a session's runs.

    A worker that runs as many sessions as it may ends a session's run after its turn, so
    that sessions waiting for a slot get theirs; it keeps the lease meanwhile (no release,
    and no claim for the next turn). A kept lease is used as it is while it is young,
    handed over to another worker that asks for it (that worker got the session's next
    trigger), and released when it is older than half its time to live, or when the worker
    drains."""

    def __init__(self, bus: Bus, gone: Callable[[str], None] = lambda _: None) -> None:
        self.bus = bus
        self._kept: dict[str, leases.Lease] = {}
        self._gone = gone
        """Told of each session whose kept lease this worker gives up (released, handed
        over): what it kept for the session goes too."""

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, lease: leases.Lease) -> None:
        self._kept[lease.session_id] = lease

    def holds(self, session_id: str) -> bool:
        return session_id in self._kept

    def take(self, session_id: str) -> leases.Lease | None:
        return self._kept.pop(session_id, None)

    def hand_over(self, session_id: str) -> int | None:
        """The revision at which another worker may take the kept lease (``None``: not
        kept, so running here or not held by this worker)."""
        lease = self._kept.pop(session_id, None)
        if lease is None:
            return None
        self._gone(session_id)
        return lease.revision

    async def release_old(self) -> int:
        """Release the kept leases older than half their time to live; how many."""
        limit = self.bus.settings.lease_ttl / 2
        old = [sid for sid, lease in self._kept.items() if lease.age() >= limit]
        await self._release([self._kept.pop(sid) for sid in old])
        return len(old)

    async def release_all(self) -> None:
        kept, self._kept = list(self._kept.values()), {}
        await self._release(kept)

    async def _release(self, kept: list[leases.Lease]) -> None:
        """Release ``kept`` at once (a draining worker may keep hundreds); best effort: a
        lease not released expires."""
        bus = self.bus
        for lease in kept:
            self._gone(lease.session_id)
        await asyncio.gather(
            *(leases.release(bus.nc, bus.lease_bucket(k.session_id), k, bus.timeout) for k in kept),
            return_exceptions=True,
        )

    async def serve(self, msg: Any) -> None:
        """Answer another worker asking for a kept lease."""
        try:
            sid = json.loads(msg.data)["session_id"]
            answer = {"revision": self.hand_over(sid) if isinstance(sid, str) else None}
        except (ValueError, KeyError, TypeError):
            answer = {"revision": None}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(answer).encode())
