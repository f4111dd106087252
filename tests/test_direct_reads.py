"""Direct gets on a real nats-server when the process that reads is too busy to take the
answers in time (an edge that 10,000 SSE clients reach at once)."""

from __future__ import annotations

import asyncio
import time

from praxis.bus import direct
from praxis.bus.connection import Bus


def _busy(seconds: float) -> None:
    """Keep this process's only thread busy (the event loop runs nothing meanwhile)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def test_reads_sent_before_the_process_got_busy_still_answer(bus: Bus) -> None:
    subject, stream = bus.events("ses_directreads"), bus.stream_of("ses_directreads")
    await bus.js.publish(subject, b"[]", stream=stream)
    n = 400  # more than a connection has in flight at once
    reads = [
        asyncio.create_task(direct.last_by_subject(bus.nc, stream, subject, timeout=0.3))
        for _ in range(n)
    ]
    await asyncio.sleep(0)  # each read starts: those with a turn are sent
    _busy(0.6)  # past their timeout, before any answer was taken
    found = await asyncio.gather(*reads)
    assert [m.data if m else None for m in found] == [b"[]"] * n
