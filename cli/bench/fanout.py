"""Fan-out: many live subscribers on one edge process, one per session, one message sent
to every session at once; each subscriber must get every event of its turn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from praxis.bus import SessionClient
from praxis.cli.bench.stats import Series

EXPECTED = ["user.message", "turn.started", "token.delta", "agent.message", "turn.completed"]


POOL_SIZE = 100
"""Streams per HTTP client."""
CREATE_CONCURRENCY = 100


async def created(client: SessionClient, n: int) -> list[str]:
    """``n`` new ``echo`` sessions (their ids), created a hundred at a time."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one() -> str:
        async with gate:
            return (await client.create("echo"))[0].session_id

    return list(await asyncio.gather(*(one() for _ in range(n))))


def report(
    n: int, connected: float, elapsed: float, complete: int, delivered: list[float]
) -> dict[str, Any]:
    series = Series("delivery")
    series.add_round(delivered)
    return {
        "subscribers": n,
        "connect_all_s": connected,
        "all_turns_delivered_s": elapsed,
        "subscribers_with_every_event": complete,
        "delivery_ms": series.summary(),
    }


async def sse_fanout(client: SessionClient, base: str, n: int) -> dict[str, Any]:
    """N SSE subscribers on one edge, one per session; one message to every session."""
    sids = await created(client, n)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    sent_at: dict[str, float] = {}
    delivered: list[float] = []
    complete = 0
    ready = asyncio.Semaphore(0)
    async with contextlib.AsyncExitStack() as stack:
        # httpx's pool hands out connections in time quadratic in the requests waiting on
        # it: with thousands of streams the client, not the edge, would be measured.
        pools = [
            await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=120))
            for _ in range(0, n, POOL_SIZE)
        ]

        async def subscribe(i: int, sid: str) -> None:
            nonlocal complete
            seen: list[str] = []
            http = pools[i // POOL_SIZE]
            async with http.stream("GET", f"{base}/agent-sessions/{sid}/events") as r:
                r.raise_for_status()
                ready.release()  # headers in: the edge's follower is subscribed
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        seen.append(line[7:])
                        if seen[-1] == "turn.completed":
                            delivered.append(time.perf_counter() - sent_at[sid])
                            kinds = [k for k in EXPECTED if k in seen]
                            complete += kinds == EXPECTED
                            return

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(subscribe(i, sid)) for i, sid in enumerate(sids)]
        for _ in sids:
            await ready.acquire()
        connected = time.perf_counter() - t0

        async def send(sid: str) -> None:
            sent_at[sid] = time.perf_counter()
            await client.send(sid, "fan out")

        t1 = time.perf_counter()
        await asyncio.gather(*(send(sid) for sid in sids))
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        elapsed = time.perf_counter() - t1
    return report(n, connected, elapsed, complete, delivered)
