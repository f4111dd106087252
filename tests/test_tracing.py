"""OpenTelemetry through the bus: an edge with PRAXIS_TRACING continues its caller's trace,
the command carries it in its NATS headers, and the worker records its trace id in every
event the command causes; off by default."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest

from praxis.bus import Receipt, SessionClient
from praxis.bus.embedded import NatsServer
from praxis.bus.state import read_events
from praxis.schemas import Event
from tests.conftest import EdgeProcess, InProcessWorker, edge_env, make_settings


@pytest.fixture
def traced_edge(nats: NatsServer, tmp_path: Path) -> EdgeProcess:
    settings = make_settings(nats.url, tmp_path)
    edge = EdgeProcess(edge_env(settings, PRAXIS_TRACING="console"), tmp_path / "edge.log")
    try:
        yield edge.start()
    finally:
        edge.stop()


async def _session_through(
    http: httpx.AsyncClient, base: str, client: SessionClient, headers: dict[str, str]
) -> list[Event]:
    """A session created and talked to through the edge; its stored events."""
    r = await http.post(
        f"{base}/agent-sessions/create", json={"agent_name": "echo"}, headers=headers
    )
    assert r.status_code == 201, r.text
    created = r.json()
    sid = created["session_id"]
    await client.wait(Receipt(sid, created["command_id"], created["cursor"]))
    r = await http.post(
        f"{base}/agent-sessions/{sid}/messages", json={"message": "trace me"}, headers=headers
    )
    assert r.status_code == 202, r.text
    await client.wait(Receipt(sid, r.json()["command_id"], r.json()["cursor"]))
    return [e for _, e in await read_events(client.bus, sid, after=0)]


async def test_a_trace_from_the_edge_is_in_the_workers_events(
    traced_edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    trace_id = secrets.token_hex(16)
    caller = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    async with httpx.AsyncClient(timeout=30) as http:
        events = await _session_through(http, traced_edge.url, client, caller)
        own = await _session_through(http, traced_edge.url, client, {})
    kinds = [e.type for e in events]
    assert "user.message" in kinds and "turn.completed" in kinds
    caused = [e for e in events if e.command_id is not None]
    assert caused and all(e.trace_id == trace_id for e in caused), [
        (e.type, e.trace_id) for e in events
    ]
    # Without a caller's trace the edge starts one of its own.
    started = {e.trace_id for e in own if e.command_id is not None}
    assert len(started) == 2 and all(t and len(t) == 32 and t != trace_id for t in started)
    # The edge's spans, printed by the console exporter, name the session and the task.
    spans = traced_edge.log.read_text()
    assert f'"trace_id": "0x{trace_id}"' in spans
    assert f'"praxis.session_id": "{events[0].session_id}"' in spans
    assert f'"praxis.task_id": "{events[0].task_id}"' in spans


async def test_tracing_is_off_unless_configured(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    caller = {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
    async with httpx.AsyncClient(timeout=30) as http:
        events = await _session_through(http, edge.url, client, caller)
    assert [e.trace_id for e in events] == [None] * len(events)
    assert "trace_id" in json.loads(events[0].model_dump_json())  # the field, empty
