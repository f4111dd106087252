"""One operation at a time: session create and a turn's round trip, through the bus client,
REST and GraphQL."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from praxis.bus import SessionClient
from praxis.schemas import AgentMessage, TokenDelta, TurnCompleted

Timings = dict[str, list[float]]
"""Latencies in seconds: to the first token, to the agent's message, to the turn's end."""

CREATE_MUTATION = 'mutation { createAgentSession(agentName: "echo") { sessionId } }'


def timings() -> Timings:
    return {"first": [], "reply": [], "done": []}


async def bus_creates(client: SessionClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.create("echo")
        out.append(time.perf_counter() - t0)
    return out


async def http_creates(http: httpx.AsyncClient, base: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await http.post(f"{base}/agent-sessions/create", json={"agent_name": "echo"})
        r.raise_for_status()
        out.append(time.perf_counter() - t0)
    return out


async def graphql_creates(http: httpx.AsyncClient, base: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await http.post(f"{base}/graphql", json={"query": CREATE_MUTATION})
        r.raise_for_status()
        if "errors" in r.json():
            raise RuntimeError(f"createAgentSession failed: {r.json()['errors']}")
        out.append(time.perf_counter() - t0)
    return out


async def bus_turns(client: SessionClient, session_id: str, n: int) -> Timings:
    """``SessionClient.turn``: to the first token, the agent message, the turn's end."""
    out = timings()
    for i in range(n):
        t0 = time.perf_counter()
        first = True
        async for item in client.turn(session_id, f"ping pong {i}"):
            ev = item.event
            if isinstance(ev, TokenDelta) and first:
                out["first"].append(time.perf_counter() - t0)
                first = False
            elif isinstance(ev, AgentMessage):
                out["reply"].append(time.perf_counter() - t0)
            elif isinstance(ev, TurnCompleted):
                out["done"].append(time.perf_counter() - t0)
    return out


async def _sse_turns(
    http: httpx.AsyncClient,
    url: str,
    body: Callable[[int], dict[str, object]],
    events: tuple[str, str, str],
    n: int,
) -> Timings:
    """``n`` streamed turns, each stream read line by line: the times to its first
    token, its reply and its end (the ``event:`` names of each, in ``events``)."""
    first_token, reply, done = (f"event: {e}" for e in events)
    out = timings()
    for i in range(n):
        t0 = time.perf_counter()
        first = True
        async with http.stream("POST", url, json=body(i)) as r:
            async for line in r.aiter_lines():
                if line == first_token and first:
                    out["first"].append(time.perf_counter() - t0)
                    first = False
                elif line == reply:
                    out["reply"].append(time.perf_counter() - t0)
                elif line == done:
                    out["done"].append(time.perf_counter() - t0)
    return out


async def openai_turns(http: httpx.AsyncClient, base: str, session_id: str, n: int) -> Timings:
    """``POST /v1/responses`` with ``stream: true`` to the session (as a conversation), the
    OpenAI SDKs' event stream read line by line."""
    return await _sse_turns(
        http,
        f"{base}/v1/responses",
        lambda i: {"conversation": session_id, "input": f"ping pong {i}", "stream": True},
        ("response.output_text.delta", "response.output_text.done", "response.completed"),
        n,
    )


async def http_turns(http: httpx.AsyncClient, base: str, session_id: str, n: int) -> Timings:
    """``POST /messages`` with ``stream: true``, the SSE read line by line."""
    return await _sse_turns(
        http,
        f"{base}/agent-sessions/{session_id}/messages",
        lambda i: {"message": f"ping pong {i}", "stream": True},
        ("token.delta", "agent.message", "turn.completed"),
        n,
    )
