"""A worker with more sessions than slots: sessions are taken in turn (none keeps its slot
while it waits for its next message), and clients whose commands wait for a slot wait
their turn instead of giving up after the command timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings, connect
from praxis.bus.embedded import NatsServer
from praxis.bus.permissions import Role
from praxis.schemas import AgentMessage, Interface, TurnCompleted
from praxis.workers import Worker, registry_for
from tests.conftest import credentials, make_settings


@pytest.fixture
async def one_slot(nats: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[SessionClient, Worker]]:
    """A client and a worker with one slot; the client gives up on a command no worker has
    taken within a second, unless the workers say they are busy. A session lingers 30 s
    after its last input (before, that kept the slot: a session in a loop kept it)."""
    s: Settings = make_settings(
        nats.url,
        tmp_path,
        worker_concurrency=1,
        command_timeout=1.0,
        linger=30.0,
    )
    async with _running(s) as (client, worker):
        yield client, worker


@contextlib.asynccontextmanager
async def _running(s: Settings) -> AsyncIterator[tuple[SessionClient, Worker]]:
    """A client and a worker on ``s``, the worker running until the block ends."""
    assert s.nats_url
    creds = credentials(s.nats_url, Role.WORKER)
    async with (
        connect(s, s.nats_url, "test-client") as bus,
        connect(s, s.nats_url, "test-worker", Role.WORKER, creds) as worker_bus,
    ):
        worker = Worker(worker_bus, registry_for(s))
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            yield SessionClient(bus, Interface.API), worker
        finally:
            stop.set()
            await running


async def _turn(client: SessionClient, sid: str, message: str) -> str:
    reply = ""
    async for item in client.turn(sid, message):
        if isinstance(item.event, AgentMessage):
            reply = item.event.content
        if isinstance(item.event, TurnCompleted):
            return reply
    raise AssertionError(f"the turn of {sid} did not complete")


async def _session(client: SessionClient, agent: str, **metadata: float) -> str:
    record, receipt = await client.create(agent, metadata=metadata)
    await client.wait(receipt)
    return record.session_id


async def test_a_session_in_a_fast_loop_does_not_keep_the_only_slot(
    one_slot: tuple[SessionClient, Worker],
) -> None:
    client, _ = one_slot
    hog, other = await _session(client, "echo"), await _session(client, "echo")
    other_done = asyncio.Event()

    async def fast_loop() -> int:
        turns = 0
        while not other_done.is_set() and turns < 5000:
            await _turn(client, hog, f"again {turns}")
            turns += 1
        return turns

    looping = asyncio.create_task(fast_loop())
    try:
        await _turn(client, hog, "warm")  # the loop's session is in the worker by now
        assert await _turn(client, other, "my turn") == "my turn"
        assert not looping.done(), "answered while the other session kept sending"
    finally:
        other_done.set()
        assert await looping > 0


async def test_a_command_waiting_for_a_busy_worker_waits_past_the_command_timeout(
    one_slot: tuple[SessionClient, Worker],
) -> None:
    client, worker = one_slot
    slow = await _session(client, "slow", pieces=20, delay=0.1)  # a 2 s turn
    waiting = await _session(client, "echo")
    busy = asyncio.create_task(_turn(client, slow, "take your time"))
    await asyncio.wait_for(worker.ctx.crowded.wait(), 10)  # the slow turn has the only slot
    # Not taken for about 2 s, twice the command timeout: the heartbeats say why.
    assert await _turn(client, waiting, "after you") == "after you"
    assert (await busy).startswith("w0 w1")
    assert any(w.busy for w in await client.workers())


@pytest.mark.slow
async def test_more_slots_than_sessions_no_command_is_given_up(
    nats: NatsServer, tmp_path: Path
) -> None:
    """1,000 sessions in closed loops on a worker with 1,024 slots, the clients' command
    timeout one second: a worker with free slots never says it is busy, and still no
    client gives up on a command a worker will run (they wait while workers are live)."""
    s = make_settings(nats.url, tmp_path, worker_concurrency=1024, command_timeout=1.0)
    async with _running(s) as (client, _):
        gate = asyncio.Semaphore(200)

        async def loop(i: int) -> list[str]:
            async with gate:
                sid = await _session(client, "echo")
            return [await _turn(client, sid, f"s{i} turn {t}") for t in range(2)]

        replies = await asyncio.wait_for(asyncio.gather(*(loop(i) for i in range(1000))), 240)
        assert all(r == [f"s{i} turn 0", f"s{i} turn 1"] for i, r in enumerate(replies)), (
            "every turn answered, in order"
        )
