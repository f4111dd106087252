"""The pull loop over several consumers (a worker's partitions): one pool of slots, a busy
consumer served, consumers added while it runs, and none asked in a tight loop."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from praxis.bus import Bus, PullLoop
from praxis.bus.pull import REFUSED_BACKOFF
from tests.conftest import eventually


async def _stream(bus: Bus, messages: int) -> str:
    name = f"PULL_{uuid.uuid4().hex[:8]}"
    await bus.js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    await bus.js.add_consumer(name, ConsumerConfig(durable_name="w", ack_policy=AckPolicy.EXPLICIT))
    for i in range(messages):
        await bus.js.publish(f"{name.lower()}.{i}", b"")
    return name


async def test_consumers_share_one_pool_of_slots_and_one_can_be_added(bus: Bus) -> None:
    busy, quiet = await _stream(bus, 40), await _stream(bus, 3)
    running, peak = 0, 0
    seen: Counter[str] = Counter()

    async def handle(msg: Msg) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        seen[msg.subject.split(".")[0]] += 1
        await asyncio.sleep(0.01)
        running -= 1
        await msg.ack()

    pull = PullLoop(bus.nc, [(busy, "w"), (quiet, "w")], handle, capacity=4, expires=0.2)
    task = asyncio.create_task(pull.run())
    try:

        async def all_taken() -> bool:
            return seen == {busy.lower(): 40, quiet.lower(): 3}

        await eventually(all_taken, what="every message of both consumers")
        later = await _stream(bus, 5)
        pull.add_source(later, "w")

        async def added() -> bool:
            return seen[later.lower()] == 5

        await eventually(added, what="the consumer added while running")
        assert peak <= 4  # never more at once than the worker's slots
    finally:
        pull.stop()
        await task


class _Counting:
    """A connection that counts the pull requests sent through it."""

    def __init__(self, nc: Any) -> None:
        self._nc = nc
        self.pulls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nc, name)

    async def publish(self, subject: str, payload: bytes = b"", **kw: Any) -> None:
        self.pulls += subject.startswith("$JS.API.CONSUMER.MSG.NEXT.")
        await self._nc.publish(subject, payload, **kw)


async def test_a_consumer_without_a_leader_is_asked_again_at_a_pace(bus: Bus) -> None:
    """A pull nobody can answer (here no such consumer; in a cluster, one whose leader is
    being elected) is refused at once: the loop waits a moment before asking again."""
    nc = _Counting(bus.nc)

    async def never(msg: Msg) -> None:
        raise AssertionError("nothing to deliver")

    pull = PullLoop(nc, [("PULL_NONE", "w")], never, capacity=4, expires=0.2)  # type: ignore[arg-type]
    task = asyncio.create_task(pull.run())
    await asyncio.sleep(1.0)  # the window the pace is measured over
    pull.stop()
    await task
    assert pull.refusals >= 3  # refused, asked again ...
    assert nc.pulls <= 1.0 / REFUSED_BACKOFF + 2  # ... at most every REFUSED_BACKOFF
