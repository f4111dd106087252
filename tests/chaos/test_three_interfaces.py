"""Scenario 6: the CLI, REST and GraphQL send to one session at once: one total order, each
interface's messages in the order it sent them, every message answered exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import pairwise

import httpx
import pytest

from praxis.bus import Receipt, SessionClient, Settings
from tests.conftest import (
    EdgeProcess,
    WorkerProcess,
    env_for,
    live_workers,
    praxis,
    settled_session,
)

# The runner's bound (pytest's timeout) covers the test's own ones: its own bound of 120 s, and
# the set-up.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.partitions(1, 3)]

CLI_MESSAGES = 4
HTTP_MESSAGES = 25


async def test_three_interfaces_at_once(
    client: SessionClient,
    settings: Settings,
    start_edge: Callable[[], EdgeProcess],
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    worker_processes(2)
    await live_workers(client, 2)
    edge = await asyncio.to_thread(start_edge)
    sid = await settled_session(client)
    env = env_for(settings)

    async def cli() -> list[str]:
        sent = []
        for i in range(CLI_MESSAGES):
            text = f"cli-{i}"
            done = await asyncio.to_thread(praxis, env, "agent", "resume", sid, "--message", text)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == text
            sent.append(text)
        return sent

    async def rest(http: httpx.AsyncClient) -> list[str]:
        sent = []
        for i in range(HTTP_MESSAGES):
            text = f"rest-{i}"
            body = {"message": text, "stream": True}
            async with http.stream(
                "POST", f"{edge.url}/agent-sessions/{sid}/messages", json=body
            ) as r:
                assert r.status_code == 200
                lines = [line async for line in r.aiter_lines()]
            assert "event: turn.completed" in lines
            sent.append(text)
        return sent

    async def graphql(http: httpx.AsyncClient) -> list[str]:
        sent = []
        mutation = (
            "mutation($id: String!, $m: String!) "
            "{ sendMessageToSession(sessionId: $id, message: $m) { commandId cursor } }"
        )
        for i in range(HTTP_MESSAGES):
            text = f"graphql-{i}"
            r = await http.post(
                f"{edge.url}/graphql",
                json={"query": mutation, "variables": {"id": sid, "m": text}},
            )
            got = r.json()["data"]["sendMessageToSession"]
            await client.wait(Receipt(sid, got["commandId"], got["cursor"]))
            sent.append(text)
        return sent

    async with httpx.AsyncClient(timeout=60) as http, asyncio.timeout(120):
        sent = await asyncio.gather(cli(), rest(http), graphql(http))

    history = await client.history(sid)
    pairs = list(zip(history[::2], history[1::2], strict=True))
    assert all(u.role == "user" and a.role == "agent" for u, a in pairs)
    assert all(u.content == a.content for u, a in pairs)  # each answered by its own echo
    users = [u.content for u, _ in pairs]
    assert sorted(users) == sorted(m for batch in sent for m in batch)  # each exactly once
    for batch in sent:  # each interface's messages in the order it sent them
        assert [u for u in users if u.split("-")[0] == batch[0].split("-")[0]] == batch
    assert {u.split("-")[0] for u in users} == {"cli", "rest", "graphql"}
    kinds = [u.split("-")[0] for u in users]
    switches = sum(a != b for a, b in pairwise(kinds))
    assert switches >= 10, kinds  # they really were sent at the same time, interleaved
