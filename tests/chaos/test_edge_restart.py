"""Scenario 4: the edge is killed (-9) and restarted, again and again, while SSE and GraphQL
subscribers follow sessions under load. Each reconnects from its last cursor; in the end
each has every durable event of its session exactly once, in order."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from httpx_sse import aconnect_sse

from praxis.bus import SessionClient
from praxis.bus.state import read_events
from tests.chaos.harness import Load, finish
from tests.conftest import EdgeProcess, WorkerProcess, eventually, live_workers

# The runner's bound (pytest's timeout) covers the test's own ones: three kills of <= 32.5 s (2
# s, 0.5 s, a start <= 30), 2 s, the load's end <= 60, the subscribers' catch-up <= 60: about
# 220 s at worst.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.partitions(1, 3)]

KILLS = 3
EVENTS = (
    "subscription($id: String!, $after: Int) "
    "{ agentSessionEvents(sessionId: $id, after: $after) { type cursor } }"
)


class Follower:
    """A subscriber that reconnects from its last durable cursor whatever happens."""

    def __init__(self, edge: EdgeProcess, session_id: str, after: int) -> None:
        self.edge, self.session_id, self.last = edge, session_id, after
        self.got: list[int] = []
        self.reconnects = 0
        self.target: int | None = None

    def take(self, cursor: int | None) -> bool:
        """Record a durable event; True once everything up to the target is in."""
        if cursor is not None:
            self.got.append(cursor)
            self.last = cursor
        return self.target is not None and self.last >= self.target

    async def run(self) -> None:
        while not (self.target is not None and self.last >= self.target):
            try:
                if await self.once():
                    return
            except Exception:  # the edge went away mid-stream, or is not up yet
                self.reconnects += 1
                await asyncio.sleep(0.1)

    async def once(self) -> bool:
        raise NotImplementedError


class SseFollower(Follower):
    async def once(self) -> bool:
        url = f"{self.edge.url}/agent-sessions/{self.session_id}/events"
        headers = {"Last-Event-ID": str(self.last)}
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5, read=2)) as http,
            aconnect_sse(http, "GET", url, headers=headers) as es,
        ):
            async for sse in es.aiter_sse():
                if sse.event and sse.data and self.take(json.loads(sse.data)["cursor"]):
                    return True
        return False


class GraphQLFollower(Follower):
    async def once(self) -> bool:
        url = self.edge.url.replace("http://", "ws://") + "/graphql"
        transport = WebsocketsTransport(url=url, ping_interval=1, pong_timeout=2)
        request = GraphQLRequest(
            EVENTS, variable_values={"id": self.session_id, "after": self.last}
        )
        async with Client(transport=transport, fetch_schema_from_transport=False) as session:
            async for result in session.subscribe(request):
                if self.take(result["agentSessionEvents"]["cursor"]):
                    return True
        return False


async def test_subscribers_resume_across_edge_kills_with_no_gap_and_no_duplicate(
    client: SessionClient,
    start_edge: Callable[[], EdgeProcess],
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    worker_processes(2)
    await live_workers(client, 2)
    edge = await asyncio.to_thread(start_edge)
    load = Load(client, sessions=10)
    running = await load.start()
    start = {sid: await tail(client, sid) for sid in load.session_ids}
    followers: list[Follower] = [
        kind(edge, sid, start[sid])
        for sid in load.session_ids
        for kind in (SseFollower, GraphQLFollower)
    ]
    following = [asyncio.create_task(f.run()) for f in followers]
    for _ in range(KILLS):
        await asyncio.sleep(2)
        await asyncio.to_thread(edge.stop, signal.SIGKILL)
        load.fault()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(edge.start)
    await asyncio.sleep(2)
    report = await finish(load, running, "edge-kill", within=60)
    for f in followers:
        f.target = await tail(client, f.session_id)

    async def caught_up() -> bool:
        return all(f.target is not None and f.last >= f.target for f in followers)

    await eventually(caught_up, 60, "every subscriber to reach its session's last event")
    for task in following:  # a caught-up one may be idling on a live stream
        task.cancel()
    await asyncio.gather(*following, return_exceptions=True)

    for f in followers:
        stored = await cursors(client, f.session_id, after=start[f.session_id])
        assert f.got == stored, (type(f).__name__, f.session_id, len(f.got), len(stored))
    assert all(f.reconnects >= KILLS for f in followers)  # each lived through every kill
    assert report.faults == KILLS


async def tail(client: SessionClient, session_id: str) -> int:
    found = await cursors(client, session_id)
    return found[-1] if found else 0


async def cursors(client: SessionClient, session_id: str, after: int = 0) -> list[int]:
    return [i for i, _ in await read_events(client.bus, session_id, after=after)]
