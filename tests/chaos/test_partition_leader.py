"""A 3-node cluster with three partitions (R3), their leaders spread one per node: kill -9
the node that leads partition 1 under load. The other partitions' turns go on without a
stall; partition 1's wait for its election; nothing accepted is lost or repeated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings, connect, placement
from praxis.bus.embedded import NatsServer
from praxis.bus.partitions import Partitions
from tests.chaos.harness import Load, finish
from tests.chaos.test_cluster import cluster as cluster  # the same three nodes
from tests.conftest import WorkerProcess, live_workers, make_settings

# Bounds: cluster ready <= 30 s, provision and rebalance <= 30, workers <= 20, 3 + 12 + 4 s
# of load around the kill, the node's restart <= 30, the load's end <= 120.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

VICTIM = "n1"
"""The node :func:`placement.plan` puts partition 1's leaders on (nodes in name order)."""
STALL = 1.0
DOWN = 12.0
"""Seconds the node stays down: past JetStream's election time (4-9 s after a leader is
lost), so partition 1 comes back by electing a leader, not by the node's return."""


@pytest.fixture
async def settings(cluster: dict[str, NatsServer], tmp_path: Path) -> Settings:
    """The bus made with three R3 partitions and its leaders spread; the processes under
    test connect to the two nodes that stay up (a client on the killed node reconnects
    elsewhere, which is another fault)."""
    every = ",".join(n.url for n in cluster.values())
    admin = make_settings(every, tmp_path, replicas=3, partitions=3)
    async with connect(admin, every, "provision") as bus:
        await placement.rebalance(bus)
        by_node = placement.spread(await placement.groups(bus))
        assert by_node == {"n0": [0], "n1": [1], "n2": [2]}, by_node
        assert placement.plan(await placement.groups(bus)) == []
    others = ",".join(n.url for name, n in cluster.items() if name != VICTIM)
    return make_settings(others, tmp_path, replicas=3)


def _each_partition(parts: Partitions, per: int) -> list[str]:
    found: dict[int, list[str]] = {k: [] for k in parts.all()}
    i = 0
    while any(len(ids) < per for ids in found.values()):
        sid = f"chaos-{i}"
        ids = found[parts.of(sid)]
        if len(ids) < per:
            ids.append(sid)
        i += 1
    return [sid for k in parts.all() for sid in found[k]]


def _longest_gap(answers: list[float], start: float, end: float) -> float:
    """The longest time without an answer between ``start`` and ``end``."""
    times = [start, *sorted(t for t in answers if start < t < end), end]
    return max(b - a for a, b in pairwise(times))


async def test_losing_one_partitions_leader_stops_only_that_partition(
    cluster: dict[str, NatsServer],
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    parts = client.bus.partitions
    assert parts.count == 3
    worker_processes(2)
    await live_workers(client, 2)
    load = Load(client, sessions=0, answer_within=90, session_ids=_each_partition(parts, 4))
    running = await load.start()
    await asyncio.sleep(3)

    await asyncio.to_thread(cluster[VICTIM].kill)
    killed = time.monotonic()
    load.fault()
    await asyncio.sleep(DOWN)
    await asyncio.to_thread(cluster[VICTIM].start, 30)
    await asyncio.sleep(4)
    report = await finish(load, running, "partition-leader", within=120)
    assert report.lost == report.duplicated == 0 and report.answered == report.accepted

    gaps: dict[int, float] = {}
    for k in parts.all():
        mine = {sid for sid in load.session_ids if parts.of(sid) == k}
        per_session = [
            _longest_gap(
                [t.answered for t in load.log if t.session_id == sid and t.answered],
                killed,
                killed + DOWN,
            )
            for sid in mine
        ]
        gaps[k] = max(per_session)
    print(f"CHAOS partition-leader: longest wait for an answer by partition (s): {gaps}")
    assert gaps[0] <= STALL and gaps[2] <= STALL, gaps
    assert 0 < gaps[1] < DOWN, gaps  # partition 1 waited for its election, not the node
