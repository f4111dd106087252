"""Prometheus metrics, present and moving after turns: a worker process's (on
PRAXIS_METRICS_PORT, found through its heartbeat) and the edge's (GET /metrics, with its
live SSE and GraphQL subscribers)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from praxis.bus import SessionClient
from praxis.schemas import TurnCompleted
from tests.conftest import EdgeProcess, InProcessWorker, WorkerProcess, eventually, live_workers

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    r = await http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_workers_metrics_move_with_its_turns(
    client: SessionClient, worker_processes: Callable[..., list[WorkerProcess]]
) -> None:
    (proc,) = worker_processes(1, PRAXIS_METRICS_PORT="0")
    await live_workers(client, 1)
    (info,) = [w for w in await client.workers() if w.pid == proc.pid]
    assert info.metrics_url and info.metrics_url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(timeout=10) as http:
        before = await scrape(http, info.metrics_url)
        for name in (
            "praxis_active_sessions",
            "praxis_leases_taken_over_total",
            "praxis_redeliveries_total",
            "praxis_dead_letters_total",
        ):
            assert any(key[0] == name for key in before), name
        assert not any(key[0] == "praxis_subscribers" for key in before), "the edge's"
        assert any(key[0] == "process_cpu_seconds_total" for key in before)
        record, receipt = await client.create("echo")
        await client.wait(receipt)
        for i in range(3):
            events = await client.wait(await client.send(record.session_id, f"m{i}"))
            assert isinstance(events[-1], TurnCompleted)
        after = await scrape(http, info.metrics_url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("praxis_turns_total", outcome="completed") == 3
    assert grew("praxis_turn_seconds_count") == 3
    assert grew("praxis_commands_total", kind="user_message") == 3
    assert value(after, "praxis_commands_total", kind="create_session") >= 1


async def test_the_edge_counts_its_live_subscribers(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    sid = record.session_id
    metrics_url = f"{edge.url}/metrics"
    async with httpx.AsyncClient(timeout=30) as http:
        base = await scrape(http, metrics_url)
        names = {key[0] for key in base}
        # Only what the edge measures (it runs no worker here): no worker family at 0.
        assert not names & {"praxis_turns_total", "praxis_dead_letters_total"}, names
        assert "process_cpu_seconds_total" in names
        sse_before = value(base, "praxis_subscribers", interface="sse")
        gql_before = value(base, "praxis_subscribers", interface="graphql")
        ws = await websockets.connect(
            edge.url.replace("http://", "ws://") + "/graphql",
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        )
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription($id: String!) { agentSessionEvents(sessionId: $id) { type } }"
        subscribe = {"query": query, "variables": {"id": sid}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        async with http.stream("GET", f"{edge.url}/agent-sessions/{sid}/events") as stream:
            assert stream.status_code == 200

            async def both_counted() -> bool:
                now = await scrape(http, metrics_url)
                return (
                    value(now, "praxis_subscribers", interface="sse") == sse_before + 1
                    and value(now, "praxis_subscribers", interface="graphql") == gql_before + 1
                )

            await eventually(both_counted, 10, "an SSE and a GraphQL subscriber counted")
        await ws.close()

        async def gone() -> bool:
            now = await scrape(http, metrics_url)
            return (
                value(now, "praxis_subscribers", interface="sse") == sse_before
                and value(now, "praxis_subscribers", interface="graphql") == gql_before
            )

        await eventually(gone, 10, "both subscribers gone")
