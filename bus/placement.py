"""Where each partition's leaders are, in a cluster: spread over the nodes, and one
partition's stream, record and lease buckets and work consumer led by the same node (a
turn writes to all of them: on one leader, a node's loss stops only its partitions).

JetStream elects each Raft group's leader on its own, so a new stream or a node that
restarted may leave one node leading most partitions. :func:`rebalance` asks each leader
that is not where :func:`plan` wants it to step down in favour of that node (JetStream's
preferred-leader step-down); nothing is moved or copied, and a step-down is a leader
election of a few milliseconds for that group.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from praxis.bus import subjects
from praxis.bus.connection import RETRYABLE, Bus
from praxis.bus.errors import BusError
from praxis.bus.partitions import in_partition

Kind = Literal["stream", "records", "leases", "consumer"]


@dataclass(frozen=True, slots=True)
class Group:
    """One Raft group of a partition: its stream, one of its buckets, or its consumer."""

    partition: int
    kind: Kind
    name: str
    """The stream's name (a consumer's stream, for the consumer)."""
    leader: str | None
    peers: tuple[str, ...]
    """The nodes holding a replica, the leader's included."""


@dataclass(frozen=True, slots=True)
class Move:
    group: Group
    to: str


def plan(groups: list[Group]) -> list[Move]:
    """The step-downs that put partition k's leaders on the k-th node (in name order,
    round the nodes): every node leads about as many partitions as the next, and each
    partition's groups share a leader. Nothing for a single server."""
    nodes = sorted({peer for g in groups for peer in g.peers})
    if len(nodes) < 2:
        return []
    moves = []
    for g in groups:
        want = nodes[g.partition % len(nodes)]
        if g.leader != want and want in g.peers:
            moves.append(Move(g, want))
    return moves


def spread(groups: list[Group]) -> dict[str, list[int]]:
    """Per node, the partitions whose stream it leads."""
    found: dict[str, list[int]] = defaultdict(list)
    for g in groups:
        if g.kind == "stream" and g.leader:
            found[g.leader].append(g.partition)
    return dict(sorted(found.items()))


async def groups(bus: Bus) -> list[Group]:
    """Every partition's groups as the cluster reports them now."""
    s, js = bus.settings, bus.js
    found: list[Group] = []
    for k in bus.partitions.all():
        stream = bus.partitions.stream(k)
        named: list[tuple[Kind, str]] = [
            ("stream", stream),
            ("records", subjects.kv_stream(in_partition(s.sessions_bucket, k))),
            ("leases", subjects.kv_stream(in_partition(s.leases_bucket, k))),
        ]
        infos = await asyncio.gather(*(js.stream_info(name) for _, name in named))
        consumer = await js.consumer_info(stream, s.consumer)
        for (kind, name), info in zip(named, infos, strict=True):
            found.append(_group(k, kind, name, info.cluster))
        found.append(_group(k, "consumer", stream, consumer.cluster))
    return found


def _group(k: int, kind: Kind, name: str, cluster: object) -> Group:
    leader = getattr(cluster, "leader", None)
    replicas = getattr(cluster, "replicas", None) or []
    peers = ([leader] if leader else []) + [r.name for r in replicas if r.name]
    return Group(k, kind, name, leader, tuple(peers))


async def rebalance(bus: Bus) -> list[Move]:
    """Step the leaders down where :func:`plan` wants them; the moves asked for."""
    moves = plan(await groups(bus))
    for move in moves:
        g = move.group
        api = (
            f"$JS.API.CONSUMER.LEADER.STEPDOWN.{g.name}.{bus.settings.consumer}"
            if g.kind == "consumer"
            else f"$JS.API.STREAM.LEADER.STEPDOWN.{g.name}"
        )
        body = json.dumps({"placement": {"preferred": move.to}}).encode()
        answer = json.loads((await bus.nc.request(api, body, timeout=bus.timeout)).data or b"{}")
        error = answer.get("error")
        if error and "already leader" not in str(error.get("description", "")):
            raise BusError(
                f"moving the leader of partition {g.partition}'s {g.kind} to {move.to} "
                f"failed: {error.get('description', error)}"
            )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE
    while moves and loop.time() < deadline:  # the elections take a moment
        try:
            if not plan(await groups(bus)):
                break
        except RETRYABLE:  # a group mid-election may not answer
            pass
        await asyncio.sleep(0.1)
    return moves


SETTLE = 10.0
"""Seconds :func:`rebalance` waits for the elections it asked for."""
