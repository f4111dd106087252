"""GraphQL: a turn seen through an ``agentSessionEvents`` subscription (graphql-transport-ws,
plain websockets), and the fan-out of many subscriptions on one edge process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from praxis.bus import Receipt, SessionClient
from praxis.cli.bench.fanout import CREATE_CONCURRENCY, EXPECTED, gated_send, report
from praxis.cli.bench.latency import Timings
from praxis.schemas import SessionRecord

SUBSCRIPTION = """subscription($id: String!, $after: Int) {
  agentSessionEvents(sessionId: $id, after: $after) { type cursor }
}"""
SEND_MUTATION = """mutation($id: String!, $m: String!) {
  sendMessageToSession(sessionId: $id, message: $m) { cursor }
}"""


async def subscribe(ws_url: str, session_id: str, after: int) -> websockets.ClientConnection:
    """An ``agentSessionEvents`` subscription over graphql-transport-ws (plain websockets)."""
    ws = await websockets.connect(
        ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")], open_timeout=60
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    while json.loads(await ws.recv())["type"] != "connection_ack":
        pass
    variables = {"id": session_id, "after": after}
    payload = {"query": SUBSCRIPTION, "variables": variables}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def next_event(ws: websockets.ClientConnection) -> str:
    """The type of the next event on the subscription (pings are answered)."""
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] == "next":
            payload = msg["payload"]
            if payload.get("errors") or not payload.get("data"):
                raise RuntimeError(f"subscription error: {payload.get('errors')}")
            kind: str = payload["data"]["agentSessionEvents"]["type"]
            return kind
        if msg["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif msg["type"] in ("error", "complete"):
            raise RuntimeError(f"subscription ended: {msg}")


async def graphql_turns(
    client: SessionClient, http: httpx.AsyncClient, base: str, n: int
) -> Timings:
    """Mutation over HTTP -> the first subscription event, and -> turn.completed."""
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    ws = await subscribe(
        base.replace("http://", "ws://") + "/graphql", record.session_id, receipt.cursor
    )
    out: Timings = {"first": [], "done": []}
    try:
        for i in range(n):
            t0 = time.perf_counter()
            body = {"query": SEND_MUTATION, "variables": {"id": record.session_id, "m": f"m{i}"}}
            r = await http.post(f"{base}/graphql", json=body)
            r.raise_for_status()
            first = True
            while True:
                kind = await next_event(ws)
                if first and kind == "user.message":
                    out["first"].append(time.perf_counter() - t0)
                    first = False
                if kind == "turn.completed":
                    out["done"].append(time.perf_counter() - t0)
                    break
    finally:
        await ws.close()
    return out


async def _subscriptions(
    client: SessionClient, base: str, n: int
) -> tuple[list[tuple[SessionRecord, Receipt]], list[websockets.ClientConnection], float]:
    """``n`` new sessions, a subscription to each, and the seconds the subscribing took."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create() -> tuple[SessionRecord, Receipt]:
        async with gate:
            record, receipt = await client.create("echo")
            await client.wait(receipt)
            return record, receipt

    created = await asyncio.gather(*(create() for _ in range(n)))
    ws_url = base.replace("http://", "ws://") + "/graphql"
    t0 = time.perf_counter()
    opening = asyncio.Semaphore(CREATE_CONCURRENCY)  # an edge takes handshakes in turn

    async def open_one(record: SessionRecord, receipt: Receipt) -> websockets.ClientConnection:
        async with opening:
            return await subscribe(ws_url, record.session_id, receipt.cursor)

    sockets = await asyncio.gather(*(open_one(r, receipt) for r, receipt in created))
    return created, sockets, time.perf_counter() - t0


async def graphql_fanout(client: SessionClient, base: str, n: int) -> dict[str, Any]:
    """N GraphQL subscriptions on one edge, one per session; one message to every session."""
    created, sockets, connected = await _subscriptions(client, base, n)
    sent_at: dict[str, float] = {}
    delivered: list[float] = []
    complete = 0

    failures: list[str] = []

    async def watch(sid: str, ws: websockets.ClientConnection) -> None:
        nonlocal complete
        seen: list[str] = []
        while True:
            try:
                kind = await next_event(ws)
            except Exception as e:  # counted and shown: a bench reports, it does not stop
                failures.append(str(e))
                return
            seen.append(kind)
            if kind == "turn.completed":
                delivered.append(time.perf_counter() - sent_at[sid])
                complete += [k for k in EXPECTED if k in seen] == EXPECTED
                await ws.close()
                return

    send = gated_send(client, sent_at)

    async def warm(sid: str, ws: websockets.ClientConnection) -> None:
        # GraphQL does not say when the server has set a subscription up: a first turn
        # seen through it shows that it has (token deltas are live only).
        await send(sid, "warm up")
        try:
            while await next_event(ws) != "turn.completed":
                pass
        except Exception as e:
            failures.append(f"warm-up: {e}")

    await asyncio.gather(
        *(warm(r.session_id, ws) for (r, _), ws in zip(created, sockets, strict=True))
    )
    watchers = [
        asyncio.create_task(watch(r.session_id, ws))
        for (r, _), ws in zip(created, sockets, strict=True)
    ]
    t1 = time.perf_counter()
    await asyncio.gather(*(send(r.session_id, "fan out") for r, _ in created))
    await asyncio.wait_for(asyncio.gather(*watchers), 300)
    found = report(n, connected, time.perf_counter() - t1, complete, delivered)
    if failures:
        found["failed"] = len(failures)
        found["first_failure"] = failures[0][:500]
    return found
