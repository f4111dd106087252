"""The physical floor: the raw JetStream loop with nats-py and no Praxis code (a JetStream
publish, one durable consumer in another process that publishes the reply with JetStream
and acks, the reply on the client's subscription), one at a time or in closed loops."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.aio.msg import Msg

from praxis.cli.bench.stack import RAW_IN, RAW_OUT


async def raw_loop(url: str, options: dict[str, Any], n: int) -> list[float]:
    """``n`` round trips one after another; their latencies in seconds."""
    samples, _ = await raw_load(url, options, sessions=1, duration=None, count=n)
    return samples


async def raw_load(
    url: str,
    options: dict[str, Any],
    *,
    sessions: int,
    duration: float | None,
    count: int | None = None,
) -> tuple[list[float], float]:
    """``sessions`` closed loops (each waits for its reply before the next publish) for
    ``duration`` seconds or ``count`` round trips each; the latencies and the time taken."""
    nc = await nats.connect(url, **options)
    js = nc.jetstream()
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_reply(msg: Msg) -> None:
        fut = waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    await nc.subscribe(f"{RAW_OUT}.*", cb=on_reply)
    samples: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + duration if duration is not None else None

    async def one(i: int) -> None:
        key, done = f"s{i}", 0
        while (end is None or loop.time() < end) and (count is None or done < count):
            fut = loop.create_future()
            waiting[key] = fut
            t0 = time.perf_counter()
            await js.publish(f"{RAW_IN}.{key}", b"ping pong")
            await asyncio.wait_for(fut, 30)
            samples.append(time.perf_counter() - t0)
            done += 1

    try:
        await asyncio.gather(*(one(i) for i in range(sessions)))
    finally:
        await nc.close()
    return samples, loop.time() - start
