"""``praxis status``: the NATS server(s), the stream and its work queue, the buckets, the
live workers and the sessions by state, in one look."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from praxis.bus import Bus, SessionClient, placement, subjects
from praxis.bus.partitions import in_partition
from praxis.cli.render import worker_rows
from praxis.cli.term import table
from praxis.schemas import SessionState, WorkerInfo


async def gather(bus: Bus, client: SessionClient) -> dict[str, Any]:
    """What ``praxis status`` shows (its ``--json`` document)."""
    s = bus.settings
    nc, js = bus.nc, bus.js
    await bus.refresh_partitions()
    groups = await placement.groups(bus)
    account, workers, records, *parts = await asyncio.gather(
        js.account_info(),
        client.workers(),
        client.records(),
        *(_partition(bus, k) for k in bus.partitions.all()),
    )
    buckets = {}
    for bucket in (
        s.sessions_bucket,
        s.leases_bucket,
        s.workers_bucket,
        s.dead_letters_bucket,
    ):
        shared = bucket in (s.workers_bucket, s.dead_letters_bucket)
        names = [bucket] if shared else [in_partition(bucket, k) for k in bus.partitions.all()]
        infos = [await js.stream_info(subjects.kv_stream(name)) for name in names]
        buckets[bucket] = {  # every partition's
            "entries": sum(info.state.messages for info in infos),
            "bytes": sum(info.state.bytes for info in infos),
        }
    by_state = Counter(r.state.value for r in records)
    return {
        "nats": {
            "connected_to": nc.connected_url.netloc if nc.connected_url else None,
            "server_version": _version(nc.connected_server_version),
            "servers_known": [u.netloc for u in nc.servers],
            "jetstream": {
                "storage_bytes": account.storage,
                "memory_bytes": account.memory,
                "streams": account.streams,
                "consumers": account.consumers,
            },
        },
        "stream": {k: v for k, v in parts[0].items() if k not in _WORK},  # partition 0's
        "work_queue": {
            "consumer": s.consumer,
            **{key: sum(p[key] for p in parts) for key in _WORK},  # all partitions'
        },
        "partitions": parts,
        "leaders": {"by_node": placement.spread(groups), "to_move": len(placement.plan(groups))},
        "buckets": buckets,
        "workers": [w.model_dump(mode="json") for w in workers],
        "sessions": {
            "total": len(records),
            "by_state": {state.value: by_state.get(state.value, 0) for state in SessionState},
        },
    }


_WORK = ("waiting", "in_progress", "redelivered")


async def _partition(bus: Bus, k: int) -> dict[str, Any]:
    """One partition's stream and work consumer: its size, leader, replicas and backlog."""
    name = bus.partitions.stream(k)
    stream, consumer = await asyncio.gather(
        bus.js.stream_info(name), bus.js.consumer_info(name, bus.settings.consumer)
    )
    cluster = stream.cluster
    return {
        "partition": k,
        "name": name,
        "messages": stream.state.messages,
        "bytes": stream.state.bytes,
        "replicas": stream.config.num_replicas,
        "leader": cluster.leader if cluster and (stream.config.num_replicas or 1) > 1 else None,
        "replicas_current": (
            [r.name for r in cluster.replicas or [] if r.current] if cluster else []
        ),
        "waiting": consumer.num_pending,  # commands no worker has taken yet
        "in_progress": consumer.num_ack_pending,
        "redelivered": consumer.num_redelivered,
    }


def show(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(found, indent=2))
        return
    n, st, q = found["nats"], found["stream"], found["work_queue"]
    print(f"NATS      {n['connected_to']} (nats-server {n['server_version']})")
    if len(n["servers_known"]) > 1:
        print(f"          cluster: {', '.join(n['servers_known'])}")
    leader = f", leader {st['leader']}" if st["leader"] else ""
    print(
        f"Stream    {st['name']}: {st['messages']:,} messages, {_size(st['bytes'])}, "
        f"{st['replicas']} replica(s){leader}"
    )
    print(
        f"Work      {q['waiting']:,} commands waiting for a worker, {q['in_progress']:,} in "
        f"progress, {q['redelivered']:,} redelivered"
    )
    if len(found["partitions"]) > 1:
        print()
        table(_partition_rows(found["partitions"]))
        print()
    if found["leaders"]["to_move"]:
        print(
            f"Leaders   {found['leaders']['to_move']} not spread over the nodes as they should "
            "be: run 'praxis bus rebalance'"
        )
    buckets = ", ".join(f"{k} {v['entries']:,}" for k, v in found["buckets"].items())
    print(f"Buckets   {buckets} (entries, deletion markers included)")
    states = found["sessions"]["by_state"]
    shown = ", ".join(f"{count:,} {state}" for state, count in states.items() if count)
    print(f"Sessions  {found['sessions']['total']:,}" + (f": {shown}" if shown else ""))
    if found["workers"]:
        print()
        table(worker_rows([WorkerInfo.model_validate(w) for w in found["workers"]]))
    else:
        print("Workers   none live")


def _partition_rows(parts: list[dict[str, Any]]) -> list[list[str]]:
    head = ["partition", "stream", "leader", "replicas", "messages", "waiting", "in progress"]
    return [head] + [
        [
            str(p["partition"]),
            p["name"],
            p["leader"] or "-",
            f"{p['replicas']} ({len(p['replicas_current'])} current)" if p["leader"] else "1",
            f"{p['messages']:,}",
            f"{p['waiting']:,}",
            f"{p['in_progress']:,}",
        ]
        for p in parts
    ]


def _version(v: Any) -> str:
    return f"{v.major}.{v.minor}.{v.patch}" + (f"-{v.prerelease}" if v.prerelease else "")


def _size(n: int) -> str:
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
