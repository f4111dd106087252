"""Owning a session for one run: its lease in the KV bucket, taken only if free, renewed
while the run lasts (a long turn), given back at its end. The fence on every append is
what makes a lost lease harmless; the lease only keeps two workers from trying at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from praxis.bus import Bus, leases
from praxis.bus.tasks import cancel_and_wait


class LeaseLostError(Exception):
    pass


class Ownership:
    def __init__(self, bus: Bus, session_id: str, worker_id: str) -> None:
        self.bus = bus
        self.sid = session_id
        self.worker_id = worker_id

    async def claim(self, hint: int | None) -> leases.Lease | None:
        """The lease, or ``None`` if another worker holds it."""
        return await leases.claim(self.bus.leases, self.sid, self.worker_id, hint)

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
                await asyncio.wait({task}, timeout=period)
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
