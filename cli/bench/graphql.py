"""GraphQL: a turn seen through an ``agentSessionEvents`` subscription (graphql-transport-ws,
plain websockets), and the fan-out of many subscriptions on one edge process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from bus import SessionClient
from cli.bench.fanout import EXPECTED, report
from cli.bench.latency import Timings

SUBSCRIPTION = """subscription($id: String!, $after: Int) {
  agentSessionEvents(sessionId: $id, after: $after) { type cursor }
}"""
SEND_MUTATION = """mutation($id: String!, $m: String!) {
  sendMessageToSession(sessionId: $id, message: $m) { cursor }
}"""


async def subscribe(ws_url: str, session_id: str, after: int) -> websockets.ClientConnection:
    """An ``agentSessionEvents`` subscription over graphql-transport-ws (plain websockets)."""
    ws = await websockets.connect(
        ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
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
            kind: str = msg["payload"]["data"]["agentSessionEvents"]["type"]
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


async def graphql_fanout(client: SessionClient, base: str, n: int) -> dict[str, Any]:
    """N GraphQL subscriptions on one edge, one per session; one message to every session."""
    created = [await client.create("echo") for _ in range(n)]
    for _, receipt in created:
        await client.wait(receipt)
    ws_url = base.replace("http://", "ws://") + "/graphql"
    t0 = time.perf_counter()
    sockets = await asyncio.gather(
        *(subscribe(ws_url, r.session_id, receipt.cursor) for r, receipt in created)
    )
    connected = time.perf_counter() - t0
    sent_at: dict[str, float] = {}
    delivered: list[float] = []
    complete = 0

    async def watch(sid: str, ws: websockets.ClientConnection) -> None:
        nonlocal complete
        seen: list[str] = []
        while True:
            kind = await next_event(ws)
            seen.append(kind)
            if kind == "turn.completed":
                delivered.append(time.perf_counter() - sent_at[sid])
                complete += [k for k in EXPECTED if k in seen] == EXPECTED
                await ws.close()
                return

    async def send(sid: str) -> None:
        sent_at[sid] = time.perf_counter()
        await client.send(sid, "fan out")

    async def warm(sid: str, ws: websockets.ClientConnection) -> None:
        # GraphQL does not say when the server has set a subscription up: a first turn
        # seen through it shows that it has (token deltas are live only).
        await client.send(sid, "warm up")
        while await next_event(ws) != "turn.completed":
            pass

    await asyncio.gather(
        *(warm(r.session_id, ws) for (r, _), ws in zip(created, sockets, strict=True))
    )
    watchers = [
        asyncio.create_task(watch(r.session_id, ws))
        for (r, _), ws in zip(created, sockets, strict=True)
    ]
    t1 = time.perf_counter()
    await asyncio.gather(*(send(r.session_id) for r, _ in created))
    await asyncio.wait_for(asyncio.gather(*watchers), 300)
    return report(n, connected, time.perf_counter() - t1, complete, delivered)
