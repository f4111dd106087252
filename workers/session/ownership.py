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

    async def claim(
        self, hint: int | None, kept: leases.Lease | None = None, *, ask: bool = False
    ) -> leases.Lease | None:
        """The lease, or ``None`` if another worker holds it (and does not hand it over).

        ``kept``: the lease this worker kept since the session's last run here, used as it
        is while it is young (no write), renewed otherwise. ``ask``: ask the holder to hand
        the lease over if it only keeps it (see :class:`KeptLeases`)."""
        if kept is not None:
            if kept.age() < self.bus.settings.lease_ttl / 2:
                return kept
            if await leases.renew(self.bus.leases, kept):
                return kept
            hint = None
        self.retry_after = None
        got = await leases.try_claim(self.bus.leases, self.sid, self.worker_id, hint)
        if isinstance(got, leases.Lease):
            return got
        if not ask or not got.worker_id or got.worker_id == self.worker_id:
            return None
        return await self._ask(got)

    async def _ask(self, held: leases.Held) -> leases.Lease | None:
        """Ask the worker holding the lease to hand it over (it does if it only keeps it
        between runs). One that does not answer is gone: its lease expires, and
        ``retry_after`` says when."""
        try:
            subject = subjects.lease_handover(held.worker_id)
            request = json.dumps({"session_id": self.sid}).encode()
            resp = await self.bus.nc.request(subject, request, timeout=_ASK_TIMEOUT)
            revision = json.loads(resp.data).get("revision")
        except (TimeoutError, NatsError, ValueError):
            ttl = self.bus.settings.lease_ttl
            left = held.expires_in(ttl)
            self.retry_after = None if left is None else min(max(left + 0.05, 0.02), ttl)
            return None
        if not isinstance(revision, int):
            return None
        return await leases.take_over(self.bus.leases, self.sid, self.worker_id, revision)

    async def release(self, lease: leases.Lease) -> int | None:
        """Give the lease back (best effort): the revision of the release, a hint for the
        next claim here."""
        with contextlib.suppress(Exception):
            return await leases.release(
                self.bus.nc, self.bus.settings.leases_bucket, lease, self.bus.timeout
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
                if not await leases.renew(self.bus.leases, lease):
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


class KeptLeases:
    """The leases a busy worker keeps between a session's runs.

    A worker that runs as many sessions as it may ends a session's run after its turn, so
    that sessions waiting for a slot get theirs; it keeps the lease meanwhile (no release,
    and no claim for the next turn). A kept lease is used as it is while it is young,
    handed over to another worker that asks for it (that worker got the session's next
    trigger), and released when it is older than half its time to live, or when the worker
    drains."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._kept: dict[str, leases.Lease] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, lease: leases.Lease) -> None:
        self._kept[lease.session_id] = lease

    def take(self, session_id: str) -> leases.Lease | None:
        return self._kept.pop(session_id, None)

    def hand_over(self, session_id: str) -> int | None:
        """The revision at which another worker may take the kept lease (``None``: not
        kept, so running here or not held by this worker)."""
        lease = self._kept.pop(session_id, None)
        return lease.revision if lease is not None else None

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
        s = self.bus.settings
        await asyncio.gather(
            *(leases.release(self.bus.nc, s.leases_bucket, k, self.bus.timeout) for k in kept),
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
