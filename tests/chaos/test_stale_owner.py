"""Scenario 5: a stale owner. SIGSTOP a worker past its lease, let another take its sessions
over, SIGCONT it: every write it still attempts is refused, and the histories stay whole."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from praxis.bus import SessionClient, Settings
from tests.chaos.harness import Load, finish
from tests.conftest import WorkerProcess, live_workers

# The runner's bound (pytest's timeout) covers the test's own ones: about 10 s of pauses and the
# load's end <= 60: about 90 s at worst.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(150), pytest.mark.partitions(1, 3)]


async def test_a_frozen_owner_that_wakes_up_writes_nothing(
    client: SessionClient,
    settings: Settings,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    frozen, other = worker_processes(2)
    await live_workers(client, 2)
    load = Load(client, sessions=20)
    running = await load.start()
    await asyncio.sleep(2)
    os.kill(frozen.pid, signal.SIGSTOP)
    load.fault()
    try:
        await asyncio.sleep(settings.lease_ttl + settings.ack_wait + 1)  # taken over by now
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    await asyncio.sleep(3)  # the woken owner tries to go on where it stopped
    report = await finish(load, running, "stale-owner", within=60)
    assert other.proc.poll() is None and frozen.proc.poll() is None
    # It had turns in flight when it froze: on waking, its writes were refused by the fence
    # (or its lease renewal failed first), and it let the sessions go.
    log = frozen.log.read_text()
    assert "no longer the owner" in log, log[-2000:]
    assert report.recovery_p99_s is not None
    assert report.recovery_p99_s < settings.lease_ttl + settings.ack_wait + 2, report
