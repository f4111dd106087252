"""Scenario 2: the (single, file-backed) NATS server restarts under load. Clients and
workers reconnect by themselves; nothing accepted is lost, nothing is answered twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from praxis.bus import SessionClient
from praxis.bus.embedded import NatsServer
from tests.chaos.harness import Load, finish
from tests.conftest import WorkerProcess, live_workers

# The runner's bound (pytest's timeout) covers the test's own ones: workers <= 20 s, two
# restarts of <= 25 s (a stop, 2 s down, a start), 5 s, the load's end <= 120: about 200 s at
# worst.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.partitions(1, 3)]

RESTARTS = 2
DOWN = 2.0  # seconds the server stays down each time


async def test_nats_restart_under_load(
    nats: NatsServer,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    worker_processes(2)
    await live_workers(client, 2)
    load = Load(client, sessions=20, answer_within=90)
    running = await load.start()
    for _ in range(RESTARTS):
        await asyncio.sleep(3)
        await asyncio.to_thread(nats.stop)
        load.fault()
        await asyncio.sleep(DOWN)
        await asyncio.to_thread(nats.start)  # same port, same JetStream directory
    await asyncio.sleep(5)
    report = await finish(load, running, "nats-restart", within=120)
    # answered again after each restart (the load went on)
    assert report.recovery_p99_s is not None, report
