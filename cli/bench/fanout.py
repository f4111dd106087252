"""Fan-out: many live subscribers on one edge process, one per session, one message sent
to every session at once; each subscriber must get every event of its turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from praxis.bus import SessionClient
from praxis.cli.bench.sse_client import open_stream
from praxis.cli.bench.stats import Series

EXPECTED = ["user.message", "turn.started", "token.delta", "agent.message", "turn.completed"]


CREATE_CONCURRENCY = 100


async def created(client: SessionClient, n: int) -> list[str]:
    """``n`` new ``echo`` sessions (their ids), created a hundred at a time."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one() -> str:
        async with gate:
            return (await client.create("echo"))[0].session_id

    return list(await asyncio.gather(*(one() for _ in range(n))))


def gated_send(
    client: SessionClient, sent_at: dict[str, float]
) -> Callable[[str, str], Awaitable[None]]:
    """``send(session, text)``, a hundred at a time, noting when each one went: 10,000
    sends at once would measure the sending process's queue (and time out in it)."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def send(sid: str, text: str) -> None:
        async with gate:
            sent_at[sid] = time.perf_counter()
            await client.send(sid, text)

    return send


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
    sent_at: dict[str, float] = {}
    delivered: list[float] = []
    complete = 0
    ready = asyncio.Semaphore(0)
    failures: list[str] = []

    async def subscribe(sid: str) -> None:
        nonlocal complete
        seen: list[bytes] = []
        opened = False
        try:
            async with open_stream(f"{base}/agent-sessions/{sid}/events") as lines:
                opened = True
                ready.release()  # headers in: the edge's follower is subscribed
                async for line in lines:
                    if line.startswith(b"event: "):
                        seen.append(line[7:])
                        if seen[-1] == b"turn.completed":
                            delivered.append(time.perf_counter() - sent_at[sid])
                            kinds = [k for k in EXPECTED if k.encode() in seen]
                            complete += kinds == EXPECTED
                            return
        except Exception as e:  # counted and shown: a bench reports, it does not stop
            failures.append(f"{type(e).__name__}: {e}")
            if not opened:
                ready.release()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(subscribe(sid)) for sid in sids]
    for _ in sids:
        await ready.acquire()
    connected = time.perf_counter() - t0

    send = gated_send(client, sent_at)
    t1 = time.perf_counter()
    await asyncio.gather(*(send(sid, "fan out") for sid in sids))
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    elapsed = time.perf_counter() - t1
    found = report(n, connected, elapsed, complete, delivered)
    if failures:
        found["failed"] = len(failures)
        found["first_failure"] = failures[0][:500]
    return found
