"""Scenario 3: a 3-node JetStream cluster on loopback, stream and buckets replicated (R3).
Under load, kill -9 the stream's leader and bring it back; then the node the clients are
connected to. Publishes retry through the leader change; nothing accepted is lost."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings
from praxis.bus.embedded import NatsServer, free_port
from tests.chaos.harness import Load, finish
from tests.conftest import WorkerProcess, live_workers, make_settings

# The runner's bound (pytest's timeout) covers the test's own ones: cluster ready <= 30 s,
# workers <= 20, 19 s of pauses, two node restarts <= 30 each, the load's end <= 120 (its turns
# are answered within 90): about 250 s at worst.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NatsServer]]:
    """Three JetStream servers routed to each other on loopback, by server name."""
    home = tmp_path_factory.mktemp("cluster")
    routes = [free_port() for _ in range(3)]
    nodes: dict[str, NatsServer] = {}
    for i, port in enumerate(routes):
        others = ",".join(f"nats://127.0.0.1:{p}" for p in routes if p != port)
        args = (
            *("--server_name", f"n{i}", "--cluster_name", "praxis"),
            *("--cluster", f"nats://127.0.0.1:{port}", "--routes", others),
        )
        node = NatsServer(home / f"n{i}", log_file=home / f"n{i}.log", extra_args=args)
        node.port, node.monitor_port = free_port(), free_port()
        nodes[f"n{i}"] = node
    with ThreadPoolExecutor(3) as pool:  # all at once: none is ready before a quorum is up
        list(pool.map(lambda n: n.start(30), nodes.values()))
    wait_for_meta_leader(nodes)
    yield nodes
    for node in nodes.values():
        node.stop()


def meta_leader(node: NatsServer) -> str | None:
    try:
        url = f"http://127.0.0.1:{node.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=1) as resp:
            leader = json.load(resp).get("meta_cluster", {}).get("leader")
    except (OSError, ValueError):
        return None
    return str(leader) if leader else None


def wait_for_meta_leader(nodes: dict[str, NatsServer], timeout: float = 30) -> None:
    """Healthy servers are not yet a JetStream cluster: wait until they elect a leader."""
    deadline = time.monotonic() + timeout
    while not all(meta_leader(n) for n in nodes.values()):
        if time.monotonic() > deadline:
            raise AssertionError("the cluster elected no JetStream meta leader")
        time.sleep(0.1)


@pytest.fixture
def settings(cluster: dict[str, NatsServer], tmp_path: Path) -> Settings:
    url = ",".join(n.url for n in cluster.values())
    return make_settings(url, tmp_path, replicas=3)


async def test_losing_the_stream_leader_and_the_clients_node(
    cluster: dict[str, NatsServer],
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    worker_processes(2)
    await live_workers(client, 2)
    load = Load(client, sessions=20, answer_within=90)
    running = await load.start()
    await asyncio.sleep(3)

    info = await client.bus.js.stream_info(client.bus.settings.stream)
    assert info.cluster is not None and info.cluster.leader in cluster
    leader = cluster[info.cluster.leader]
    await asyncio.to_thread(leader.kill)
    load.fault()
    await asyncio.sleep(4)
    await asyncio.to_thread(leader.start, 30)

    await asyncio.sleep(4)
    connected = client.bus.nc.connected_url
    assert connected is not None
    mine = next(n for n in cluster.values() if n.port == connected.port)
    await asyncio.to_thread(mine.kill)
    load.fault()
    await asyncio.sleep(4)
    await asyncio.to_thread(mine.start, 30)

    await asyncio.sleep(4)
    await finish(load, running, "cluster", within=120)
