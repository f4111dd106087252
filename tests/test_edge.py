"""The edge over real HTTP: a ``praxis edge`` process, a real NATS server, httpx and httpx-sse."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
import websockets
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.typing import Origin, Subprotocol

from praxis.bus import Receipt, SessionClient, Settings, leases
from praxis.bus.embedded import NatsServer
from praxis.bus.state import read_events
from praxis.schemas import UserMessageAccepted
from tests.conftest import (
    ROOT,
    EdgeProcess,
    InProcessWorker,
    WorkerProcess,
    edge_env,
    env_for,
    eventually,
    live_count_is,
    live_workers,
    make_settings,
    praxis,
    settled_session,
    slow_turn_streaming,
    stored_events,
)

pytestmark = pytest.mark.partitions(1, 3)

PROBLEM = "application/problem+json"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


def data(sse: ServerSentEvent) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(sse.data)
    return envelope


async def read_sse(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    until: Callable[[list[ServerSentEvent]], bool] | None = None,
    timeout: float = 20,
    **kw: Any,
) -> list[ServerSentEvent]:
    """The events of one SSE response, until it ends or ``until`` holds."""
    got: list[ServerSentEvent] = []
    async with asyncio.timeout(timeout), aconnect_sse(http, method, url, **kw) as es:
        assert es.response.status_code == 200, await es.response.aread()
        assert es.response.headers["content-type"].startswith("text/event-stream")
        async for sse in es.aiter_sse():
            got.append(sse)
            if until is not None and until(got):
                break
    return got


def durable(events: list[ServerSentEvent]) -> list[tuple[int, str]]:
    """(cursor, type) of the durable events, checking ``id:`` against the envelope."""
    out = []
    for e in events:
        env = data(e)
        if env["cursor"] is not None:
            assert e.id == str(env["cursor"]) and e.event == env["type"]
            out.append((env["cursor"], env["type"]))
    return out


async def stored(client: SessionClient, session_id: str, after: int = 0) -> list[tuple[int, str]]:
    """(sequence, type) of the session's events on the stream: the truth to compare with."""
    return [(i, e.type) for i, e in await read_events(client.bus, session_id, after=after)]


def ends_turns(n: int) -> Callable[[list[ServerSentEvent]], bool]:
    return lambda got: sum(e.event in ("turn.completed", "turn.failed") for e in got) >= n


async def create(
    http: httpx.AsyncClient, edge: EdgeProcess, settle: SessionClient | None = None, **body: Any
) -> dict[str, Any]:
    """Create over REST; with ``settle``, wait until a worker has handled the creation."""
    r = await http.post(f"{edge.url}/agent-sessions/create", json=body)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    if settle is not None:
        sid = created["session_id"]
        await settle.wait(Receipt(sid, created["command_id"], created["cursor"]))
    return created


# -- the documented workflow ------------------------------------------------------------


async def test_api_workflow_create_stream_history(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient
) -> None:
    created = await create(
        http, edge, agent_name="echo", initial_message="Help me with coding", task_id="task-api"
    )
    sid = created["session_id"]
    assert created["task_id"] == "task-api" and created["agent_name"] == "echo"
    assert created["state"] == "CREATED" and created["cursor"] == 0  # follow from the start

    url = f"{edge.url}/agent-sessions/{sid}/messages"
    events = await read_sse(
        http, "POST", url, json={"message": "How do I handle errors?", "stream": True}
    )
    types = [e.event for e in events]
    assert types[:2] == ["command.accepted", "user.message"], types
    assert types[-1] == "turn.completed" and "turn.started" in types and "agent.message" in types
    # Stored before anything else: the command id and the cursor to follow it from.
    accepted = data(events[0])
    assert accepted["cursor"] is None and events[0].id == ""
    assert accepted["data"]["command_id"] == data(events[1])["data"]["command_id"]
    assert accepted["data"]["cursor"] < data(events[1])["cursor"]
    text = "".join(data(e)["data"]["text"] for e in events if e.event == "token.delta")
    reply = next(data(e)["data"]["content"] for e in events if e.event == "agent.message")
    assert text == reply == "How do I handle errors?"
    assert all(data(e)["cursor"] is None for e in events if e.event == "token.delta")
    cursors = [c for c, _ in durable(events)]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    stored = [e for e in events if e.event not in ("token.delta", "command.accepted")]
    assert all(data(e)["data"]["interface"] == "api" for e in stored)

    r = await http.get(f"{edge.url}/agent-sessions/{sid}/history")
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(i["role"], i["content"]) for i in items] == [
        ("user", "Help me with coding"),
        ("agent", "Help me with coding"),
        ("user", "How do I handle errors?"),
        ("agent", "How do I handle errors?"),
    ]
    assert r.json()["next_before"] is None

    older = await http.get(f"{edge.url}/agent-sessions/{sid}/history", params={"limit": 2})
    assert [i["content"] for i in older.json()["items"]] == ["How do I handle errors?"] * 2
    before = older.json()["next_before"]
    first = await http.get(
        f"{edge.url}/agent-sessions/{sid}/history", params={"limit": 2, "before": before}
    )
    assert [i["role"] for i in first.json()["items"]] == ["user", "agent"]
    assert first.json()["next_before"] is None

    got = (await http.get(f"{edge.url}/agent-sessions/{sid}")).json()
    assert got["state"] == "ACTIVE" and got["message_count"] == 4 and got["task_id"] == "task-api"


async def test_send_without_stream_answers_202_with_a_cursor_to_follow(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, edge, agent_name="echo"))["session_id"]
    r = await http.post(f"{edge.url}/agent-sessions/{sid}/messages", json={"message": "later"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["session_id"] == sid and accepted["command_id"].startswith("cmd_")
    events = await read_sse(
        http,
        "GET",
        f"{edge.url}/agent-sessions/{sid}/events",
        params={"after": accepted["cursor"]},
        until=ends_turns(1),
    )
    mine = [
        data(e)["data"]
        for e in events
        if e.event != "token.delta" and data(e)["data"]["command_id"] == accepted["command_id"]
    ]
    assert mine[0]["type"] == "user.message" and mine[-1]["type"] == "turn.completed"
    assert any(d["type"] == "agent.message" and d["content"] == "later" for d in mine)


async def test_instructions_go_with_a_message_to_its_turn_only(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, client: SessionClient
) -> None:
    created = await create(
        http, edge, agent_name="recall", initial_message="one", instructions="be terse"
    )
    sid = created["session_id"]
    await client.wait(Receipt(sid, created["command_id"], created["cursor"]))
    url = f"{edge.url}/agent-sessions/{sid}/messages"
    events = await read_sse(
        http, "POST", url, json={"message": "two", "instructions": "rhyme", "stream": True}
    )
    [reply] = [data(e)["data"]["content"] for e in events if e.event == "agent.message"]
    assert json.loads(reply) == {"seen": ["one", ANY], "summary": None, "instructions": "rhyme"}
    events = await read_sse(http, "POST", url, json={"message": "three", "stream": True})
    [reply] = [data(e)["data"]["content"] for e in events if e.event == "agent.message"]
    assert "instructions" not in json.loads(reply)
    said = [e for e in await stored_events(client, sid) if isinstance(e, UserMessageAccepted)]
    assert [e.instructions for e in said] == ["be terse", "rhyme", None]


async def test_lifecycle_list_and_delete(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, client: SessionClient
) -> None:
    base = f"{edge.url}/agent-sessions"
    task = "task-lifecycle"
    sids = [
        (await create(http, edge, client, agent_name="echo", task_id=task))["session_id"]
        for _ in range(3)
    ]

    r = await http.post(f"{base}/{sids[0]}/suspend", json={"reason": "lunch"})
    assert r.status_code == 200 and r.json()["state"] == "SUSPENDED"
    r = await http.post(f"{base}/{sids[0]}/resume")
    assert r.status_code == 200 and r.json()["state"] == "ACTIVE"
    r = await http.post(f"{base}/{sids[1]}/complete")
    assert r.status_code == 200 and r.json()["state"] == "COMPLETED"

    page = (await http.post(f"{base}/list", json={"task_id": task, "limit": 2})).json()
    assert [s["session_id"] for s in page["items"]] == sids[::-1][:2]  # newest first
    rest = (
        await http.post(f"{base}/list", json={"task_id": task, "cursor": page["next_cursor"]})
    ).json()
    assert [s["session_id"] for s in rest["items"]] == [sids[0]] and rest["next_cursor"] is None
    done = (await http.post(f"{base}/list", json={"task_id": task, "state": "COMPLETED"})).json()
    assert [s["session_id"] for s in done["items"]] == [sids[1]]
    since = page["items"][0]["created_at"]
    newest = (
        await http.post(f"{base}/list", json={"task_id": task, "created_after": since})
    ).json()
    assert [s["session_id"] for s in newest["items"]] == [sids[2]]
    older = (
        await http.post(f"{base}/list", json={"task_id": task, "created_before": since})
    ).json()
    assert {s["session_id"] for s in older["items"]} == set(sids[:2])

    r = await http.delete(f"{base}/{sids[2]}")
    assert r.status_code == 204
    assert (await http.get(f"{base}/{sids[2]}")).status_code == 404
    assert await stored(client, sids[2]) == []
    assert (await http.delete(f"{base}/{sids[2]}")).status_code == 404


async def test_cancel_ends_the_turn_in_flight(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, client: SessionClient
) -> None:
    record, sent = await slow_turn_streaming(client, pieces=200, delay=0.05)
    r = await http.post(f"{edge.url}/agent-sessions/{record.session_id}/cancel")
    assert r.status_code == 202
    events = await client.wait(sent)
    assert events[-1].type == "turn.failed" and getattr(events[-1], "cancelled", False)


# -- handoff between interfaces -----------------------------------------------------------


async def test_handoff_cli_to_rest_and_back(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, settings: Settings
) -> None:
    env = env_for(settings)
    run = await asyncio.to_thread(
        praxis, env, "agent", "run", "hello-world", "--message", "I am Ada"
    )
    assert run.returncode == 0, run.stderr
    sid = next(
        ln.split(": ", 1)[1] for ln in run.stderr.splitlines() if ln.startswith("Session created")
    )
    history = (await http.get(f"{edge.url}/agent-sessions/{sid}/history")).json()["items"]
    assert [i["content"] for i in history if i["role"] == "user"] == ["I am Ada"]

    events = await read_sse(
        http,
        "POST",
        f"{edge.url}/agent-sessions/{sid}/messages",
        json={"message": "What did I say?", "stream": True},
    )
    reply = next(data(e)["data"]["content"] for e in events if e.event == "agent.message")
    assert '"I am Ada"' in reply and "2nd message" in reply  # it saw the CLI's history

    shown = await asyncio.to_thread(praxis, env, "agent", "show-session", sid, "--json")
    assert shown.returncode == 0, shown.stderr
    contents = [h["content"] for h in json.loads(shown.stdout)["history"]]
    assert "What did I say?" in contents and reply in contents


# -- SSE: resume, restarts, joining mid-turn, keep-alive -----------------------------------


async def test_sse_resume_with_last_event_id_gets_exactly_the_missed_events(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, client: SessionClient
) -> None:
    sid = (await create(http, edge, settle=client, agent_name="echo"))["session_id"]
    url = f"{edge.url}/agent-sessions/{sid}/events"
    start = (await stored(client, sid))[-1][0]

    async def send(text: str) -> None:
        await client.wait(await client.send(sid, text))

    first_part = asyncio.create_task(
        read_sse(http, "GET", url, params={"after": start}, until=ends_turns(1))
    )
    await send("one")
    seen = durable(await first_part)
    last = seen[-1][0]

    await send("two")  # while nobody is connected
    await send("three")
    rest = await read_sse(
        http, "GET", url, headers={"Last-Event-ID": str(last)}, until=ends_turns(2)
    )
    again = durable(rest)
    assert again == await stored(client, sid, after=last)
    assert seen + again == await stored(client, sid, after=start)
    # Last-Event-ID wins over ?after= (a browser reconnects to the same URL with both).
    both = await read_sse(
        http,
        "GET",
        url,
        params={"after": 0},
        headers={"Last-Event-ID": str(last)},
        until=ends_turns(2),
    )
    assert durable(both) == again


async def test_sse_resume_across_an_edge_restart(
    start_edge: Callable[[], EdgeProcess],
    worker: InProcessWorker,
    http: httpx.AsyncClient,
    client: SessionClient,
) -> None:
    edge = await asyncio.to_thread(start_edge)
    sid = (await create(http, edge, agent_name="echo", initial_message="before"))["session_id"]
    url = f"{edge.url}/agent-sessions/{sid}/events"
    seen = durable(await read_sse(http, "GET", url, params={"after": 0}, until=ends_turns(1)))

    await asyncio.to_thread(edge.stop)
    for text in ("while", "down"):
        await client.wait(await client.send(sid, text))
    await asyncio.to_thread(edge.start)

    url = f"{edge.url}/agent-sessions/{sid}/events"
    rest = await read_sse(
        http, "GET", url, headers={"Last-Event-ID": str(seen[-1][0])}, until=ends_turns(2)
    )
    assert seen + durable(rest) == await stored(client, sid)


async def test_sse_resume_across_kill_9_of_the_worker_mid_turn(
    edge: EdgeProcess,
    worker_processes: Callable[[int], list[WorkerProcess]],
    http: httpx.AsyncClient,
    client: SessionClient,
) -> None:
    first = worker_processes(1)[0]
    await live_workers(client, 1)
    record, sent = await slow_turn_streaming(client, pieces=40, delay=0.05, at_least=3)
    sid = record.session_id
    url = f"{edge.url}/agent-sessions/{sid}/events"
    before = await read_sse(
        http,
        "GET",
        url,
        params={"after": 0},
        until=lambda got: any(e.event == "token.delta" for e in got),
    )
    seen = durable(before)
    os.kill(first.pid, signal.SIGKILL)
    worker_processes(1)  # another worker takes the session over after the lease
    rest = await read_sse(
        http,
        "GET",
        url,
        headers={"Last-Event-ID": str(seen[-1][0])},
        until=lambda got: any(
            data(e)["data"].get("command_id") == sent.command_id and data(e)["data"]["final"]
            for e in got
            if e.event != "token.delta"
        ),
        timeout=60,
    )
    assert seen + durable(rest) == await stored(client, sid)
    assert any(e.event == "turn.completed" for e in rest)
    replies = [
        e
        for e in before + rest
        if e.event == "agent.message" and data(e)["data"]["command_id"] == sent.command_id
    ]
    assert len(replies) == 1  # the new owner answered once


async def test_joining_mid_turn_gets_the_text_so_far_then_the_rest(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, client: SessionClient
) -> None:
    record, sent = await slow_turn_streaming(client, pieces=30, delay=0.03, at_least=5)
    events = await read_sse(
        http,
        "GET",
        f"{edge.url}/agent-sessions/{record.session_id}/events",
        until=lambda got: got[-1].event == "agent.message",
    )
    assert events[0].event == "token.delta"  # the text so far, as one delta
    assert len(data(events[0])["data"]["text"].split()) >= 5
    text = "".join(data(e)["data"]["text"] for e in events if e.event == "token.delta")
    assert text == data(events[-1])["data"]["content"] == "".join(f"w{i} " for i in range(30))
    await client.wait(sent)


async def test_idle_sse_gets_keep_alive_comments(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, edge, agent_name="echo"))["session_id"]
    comments = 0
    async with (
        asyncio.timeout(10),
        http.stream("GET", f"{edge.url}/agent-sessions/{sid}/events") as r,
    ):
        async for line in r.aiter_lines():
            if line == ": keep-alive":  # PRAXIS_SSE_KEEPALIVE is 0.5 s for the tests
                comments += 1
                if comments == 2:
                    break
    assert comments == 2


# -- many clients at once -------------------------------------------------------------------


async def test_messages_from_several_clients_at_once_are_each_answered_once_in_order(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    async with httpx.AsyncClient(timeout=30) as one:
        sid = (await create(one, edge, agent_name="echo"))["session_id"]

    async def sender(n: int) -> list[str]:
        async with httpx.AsyncClient(timeout=30) as http:
            sent = []
            for i in range(5):
                text = f"client{n}-msg{i}"
                r = await http.post(
                    f"{edge.url}/agent-sessions/{sid}/messages", json={"message": text}
                )
                assert r.status_code == 202, r.text
                sent.append(text)
            return sent

    sent = [m for batch in await asyncio.gather(*(sender(n) for n in range(3))) for m in batch]

    async def all_answered() -> bool:
        done = [t for _, t in await stored(client, sid)].count("turn.completed")
        return done == len(sent)

    await eventually(all_answered, 30, "every message answered")
    history = await client.history(sid)
    pairs = list(zip(history[::2], history[1::2], strict=True))
    assert all(u.role == "user" and a.role == "agent" and u.content == a.content for u, a in pairs)
    assert sorted(u.content for u, _ in pairs) == sorted(sent)  # each once
    for n in range(3):  # each client's messages in the order it sent them
        mine = [u.content for u, _ in pairs if u.content.startswith(f"client{n}-")]
        assert mine == [f"client{n}-msg{i}" for i in range(5)]


# -- errors: problem+json, one status each --------------------------------------------------


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["code"] == code and body["title"]
    assert body["type"].startswith("urn:praxis:problem:") and body["instance"]
    assert "Traceback" not in r.text
    return body


async def test_unknown_session_is_404_everywhere(
    edge: EdgeProcess, http: httpx.AsyncClient
) -> None:
    base = f"{edge.url}/agent-sessions/ses_nope"
    calls = [
        http.get(base),
        http.get(f"{base}/history"),
        http.get(f"{base}/events"),
        http.post(f"{base}/messages", json={"message": "hi"}),
        http.post(f"{base}/messages", json={"message": "hi", "stream": True}),
        http.post(f"{base}/suspend"),
        http.post(f"{base}/resume"),
        http.post(f"{base}/complete"),
        http.post(f"{base}/cancel"),
        http.delete(base),
    ]
    for r in await asyncio.gather(*calls):
        body = assert_problem(r, 404, "NOT_FOUND")
        assert "ses_nope" in body["detail"]


async def test_illegal_transitions_are_409_with_the_current_state(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, edge, agent_name="echo"))["session_id"]
    base = f"{edge.url}/agent-sessions/{sid}"
    body = assert_problem(await http.post(f"{base}/resume"), 409, "CONFLICT")
    assert body["state"] in ("CREATED", "ACTIVE")
    assert (await http.post(f"{base}/complete")).status_code == 200
    for r in (
        await http.post(f"{base}/messages", json={"message": "hi"}),
        await http.post(f"{base}/messages", json={"message": "hi", "stream": True}),
        await http.post(f"{base}/suspend"),
    ):
        assert assert_problem(r, 409, "CONFLICT")["state"] == "COMPLETED"
    r = await http.post(
        f"{edge.url}/agent-sessions/create", json={"agent_name": "echo", "session_id": sid}
    )
    assert_problem(r, 409, "CONFLICT")


async def test_validation_errors_are_422_naming_the_field(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, edge, agent_name="echo"))["session_id"]
    base = f"{edge.url}/agent-sessions"
    cases = [
        (await http.post(f"{base}/create", json={}), "agent_name"),
        (await http.post(f"{base}/create", json={"agent_name": "no-such-agent"}), "agent_name"),
        (await http.post(f"{base}/create", json={"agent_name": "a.b"}), "agent_name"),
        (
            await http.post(f"{base}/create", json={"agent_name": "echo", "task_id": "t*"}),
            "task_id",
        ),
        (await http.post(f"{base}/create", json={"agent_name": "echo", "colour": 1}), "colour"),
        (await http.post(f"{base}/{sid}/messages", json={"message": ""}), "message"),
        (await http.post(f"{base}/{sid}/messages", json={"text": "hi"}), "message"),
        (
            await http.post(f"{base}/{sid}/messages", json={"message": "hi", "instructions": ""}),
            "instructions",
        ),
        (await http.post(f"{base}/list", json={"limit": 0}), "limit"),
        (await http.post(f"{base}/list", json={"state": "SLEEPING"}), "state"),
        (await http.get(f"{base}/{sid}/history", params={"limit": 5000}), "limit"),
        (await http.get(f"{base}/{sid}/history", params={"before": "x"}), "before"),
        (await http.get(f"{base}/{sid}/events", params={"after": -1}), "after"),
    ]
    for r, field in cases:
        body = assert_problem(r, 422, "BAD_USER_INPUT")
        assert field in {e["field"] for e in body["errors"]}, body


async def test_malformed_json_is_400(edge: EdgeProcess, http: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    for raw in (b'{"agent_name": "echo"', b"\xff\xfe", b"not json"):
        r = await http.post(f"{edge.url}/agent-sessions/create", content=raw, headers=headers)
        assert_problem(r, 400, "BAD_REQUEST")


async def test_body_over_the_limit_is_413_and_nothing_is_sent(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient, client: SessionClient
) -> None:
    sid = await settled_session(client)
    before = await stored(client, sid)
    big = "x" * (64 * 1024 + 1)
    r = await http.post(f"{edge.url}/agent-sessions/{sid}/messages", json={"message": big})
    assert_problem(r, 413, "PAYLOAD_TOO_LARGE")
    assert await stored(client, sid) == before


async def test_invalid_ids_and_cursors_are_400(
    edge: EdgeProcess, worker: InProcessWorker, http: httpx.AsyncClient
) -> None:
    sid = (await create(http, edge, agent_name="echo"))["session_id"]
    base = f"{edge.url}/agent-sessions"
    for bad in ("a.b", "a*", "%3E", "x" * 200, "sp%20ace"):
        body = assert_problem(await http.get(f"{base}/{bad}"), 400, "BAD_REQUEST")
        assert body["errors"][0]["field"] == "session_id"
        assert_problem(
            await http.post(f"{base}/{bad}/messages", json={"message": "hi"}), 400, "BAD_REQUEST"
        )
    r = await http.get(f"{base}/{sid}/events", headers={"Last-Event-ID": "abc"})
    assert_problem(r, 400, "BAD_REQUEST")
    r = await http.get(f"{base}/{sid}/events", params={"after": 10**12})
    assert "beyond" in assert_problem(r, 400, "BAD_REQUEST")["detail"]
    r = await http.post(f"{base}/list", json={"cursor": "bm90IGEgY3Vyc29y"})
    assert_problem(r, 400, "BAD_REQUEST")


async def test_health_readiness_and_docs(edge: EdgeProcess, http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{edge.url}/healthz")).json() == {"status": "ok"}
    assert (await http.get(f"{edge.url}/readyz")).json() == {"status": "ready"}
    spec = (await http.get(f"{edge.url}/schema/openapi.json")).json()
    models = spec["components"]["schemas"]
    for name in ("CreateSessionRequest", "SessionView", "EventEnvelope", "Problem", "HistoryPage"):
        assert name in models
    send = spec["paths"]["/agent-sessions/{session_id}/messages"]["post"]["responses"]
    accepted = {"$ref": "#/components/schemas/Accepted"}
    assert send["202"]["content"]["application/json"]["schema"] == accepted
    assert "text/event-stream" in send["200"]["content"]
    for name, model in models.items():  # every model and every field is described
        assert model.get("description"), name
        for field, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field}"
    r = await http.get(f"{edge.url}/schema/swagger")
    assert r.status_code == 200 and "<html" in r.text.lower()
    for asset in re.findall(r'(?:src|href)="(/ui/vendor/[^"]+)"', r.text):  # served here
        script = await http.get(f"{edge.url}{asset}")
        assert script.status_code == 200 and len(script.content) > 10_000, asset
    assert (await http.get(f"{edge.url}/ui/vendor/..%2Fchat.js")).status_code in (400, 404)
    assert_problem(await http.get(f"{edge.url}/no/such/page"), 404, "NOT_FOUND")


async def test_readyz_follows_the_bus(tmp_path: Path, http: httpx.AsyncClient) -> None:
    server = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log").start()
    edge = EdgeProcess(edge_env(make_settings(server.url, tmp_path)), tmp_path / "edge.log")
    try:
        await asyncio.to_thread(edge.start)
        assert (await http.get(f"{edge.url}/readyz")).status_code == 200
        await asyncio.to_thread(server.stop)

        async def status(code: int) -> bool:
            return (await http.get(f"{edge.url}/readyz")).status_code == code

        await eventually(lambda: status(503), 20, "readyz to answer 503")
        r = await http.get(f"{edge.url}/readyz")
        assert_problem(r, 503, "UNAVAILABLE")
        assert (await http.get(f"{edge.url}/healthz")).status_code == 200  # the process is up
        await asyncio.to_thread(server.start)
        await eventually(lambda: status(200), 20, "readyz to answer 200 again")
    finally:
        await asyncio.to_thread(edge.stop)
        server.stop()


async def test_edges_side_by_side_serve_the_same_sessions(
    edge: EdgeProcess,
    start_edge: Callable[[], EdgeProcess],
    worker: InProcessWorker,
    http: httpx.AsyncClient,
) -> None:
    other = await asyncio.to_thread(start_edge)
    sid = (await create(http, edge, agent_name="echo", initial_message="on the first"))[
        "session_id"
    ]
    events = await read_sse(
        http,
        "POST",
        f"{other.url}/agent-sessions/{sid}/messages",
        json={"message": "on the second", "stream": True},
    )
    assert events[-1].event == "turn.completed"
    for e in (edge, other):
        items = (await http.get(f"{e.url}/agent-sessions/{sid}/history")).json()["items"]
        assert [i["content"] for i in items if i["role"] == "user"] == [
            "on the first",
            "on the second",
        ]


async def test_a_slow_turn_streams_with_keep_alives_past_the_command_timeout(
    settings: Settings,
    tmp_path: Path,
    worker: InProcessWorker,
    http: httpx.AsyncClient,
    client: SessionClient,
) -> None:
    """Silences between tokens longer than PRAXIS_COMMAND_TIMEOUT (1 s here) are fine once
    the turn has started (the worker's turn timeout bounds it); the stream shows it lives."""
    env = edge_env(settings, PRAXIS_COMMAND_TIMEOUT="1", PRAXIS_SSE_KEEPALIVE="0.3")
    edge = EdgeProcess(env, tmp_path / "slow-edge.log")
    await asyncio.to_thread(edge.start)
    try:
        sid = await settled_session(client, "slow", metadata={"pieces": 2, "delay": 1.5})
        url = f"{edge.url}/agent-sessions/{sid}/messages"
        lines: list[str] = []
        async with asyncio.timeout(20):
            body = {"message": "take your time", "stream": True}
            async with http.stream("POST", url, json=body) as r:
                assert r.status_code == 200
                lines = [line async for line in r.aiter_lines()]
        assert lines.count(": keep-alive") >= 2, lines
        assert "event: turn.completed" in lines and "event: error" not in lines
    finally:
        await asyncio.to_thread(edge.stop)


async def test_a_closed_sse_stream_leaves_nothing_on_the_bus(
    edge: EdgeProcess, nats: NatsServer, worker: InProcessWorker, client: SessionClient
) -> None:
    sid = await settled_session(client)

    url = f"{edge.url}/agent-sessions/{sid}/events"
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url) as r:
        assert r.status_code == 200
        await eventually(live_count_is(nats, sid, 1), 10, "the edge to follow the session")
    await eventually(
        live_count_is(nats, sid, 0), 10, "the edge to drop the session's live subscription"
    )


async def test_deep_or_huge_json_is_refused_clearly(
    edge: EdgeProcess, http: httpx.AsyncClient, worker: InProcessWorker
) -> None:
    """Nesting and size are bounded: a clear 4xx, never a 5xx, nothing stored."""
    base = f"{edge.url}/agent-sessions"
    deep: Any = "leaf"
    for _ in range(20):
        deep = {"d": deep}
    r = await http.post(f"{base}/create", json={"agent_name": "echo", "metadata": deep})
    body = assert_problem(r, 422, "BAD_USER_INPUT")
    assert body["errors"][0]["field"].endswith("metadata")
    assert "deeper than 16" in body["errors"][0]["message"]
    wide = {"k": "x" * 20_000}
    r = await http.post(f"{base}/create", json={"agent_name": "echo", "metadata": wide})
    assert "more than 16384" in assert_problem(r, 422, "BAD_USER_INPUT")["errors"][0]["message"]
    for raw in ("[" * 60_000, '{"a":' * 30_000, '"\\ud800"'):
        r = await http.post(
            f"{base}/create", content=raw, headers={"content-type": "application/json"}
        )
        assert 400 <= r.status_code < 500, (raw[:20], r.status_code, r.text[:200])
        g = await http.post(
            f"{edge.url}/graphql", content=raw, headers={"content-type": "application/json"}
        )
        assert 400 <= g.status_code < 500, (raw[:20], g.status_code, g.text[:200])
    ok = await http.post(
        f"{base}/create", json={"agent_name": "echo", "metadata": {"emoji": "🚀", "n": [1, 2]}}
    )
    assert ok.status_code == 201 and ok.json()["session_id"]


async def test_delete_without_a_worker_is_a_timeout_and_keeps_the_session(
    settings: Settings, http: httpx.AsyncClient, client: SessionClient, tmp_path: Path
) -> None:
    """A worker purges for the edge (its bus user may not): with none running, DELETE is a
    504 that says so, and the session is still there."""
    edge = EdgeProcess(edge_env(settings, PRAXIS_COMMAND_TIMEOUT="1"), tmp_path / "edge.log")
    await asyncio.to_thread(edge.start)
    try:
        record, _ = await client.create("echo")
        r = await http.delete(f"{edge.url}/agent-sessions/{record.session_id}")
        assert r.status_code == 504 and r.json()["code"] == "TIMEOUT", r.text
        assert "worker" in r.json()["detail"]
        assert (await client.get(record.session_id)).session_id == record.session_id
    finally:
        await asyncio.to_thread(edge.stop)


async def _sse_lines(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[str]:
    """Every line of a streamed POST (comments too), until the stream ends."""
    lines: list[str] = []
    async with asyncio.timeout(30), http.stream("POST", url, json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            lines.append(line)
    return lines


def _events_of(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    events = [ln.removeprefix("event: ") for ln in lines if ln.startswith("event: ")]
    datas = [json.loads(ln.removeprefix("data: ")) for ln in lines if ln.startswith("data: ")]
    return list(zip(events, datas, strict=True))


async def test_a_streamed_message_waits_for_live_workers_past_the_command_timeout(
    settings: Settings,
    http: httpx.AsyncClient,
    client: SessionClient,
    worker: InProcessWorker,
    tmp_path: Path,
) -> None:
    """A message that no worker can take for a while (its session's previous owner died
    holding the lease, which lasts a lease time) is stored, said to be so at once, kept
    alive while live workers can answer it, and answered: it was a 504 after the command
    timeout ('is a worker running?') while the workers were live."""
    edge = EdgeProcess(
        edge_env(settings, PRAXIS_COMMAND_TIMEOUT="0.5", PRAXIS_SSE_KEEPALIVE="0.2"),
        tmp_path / "edge.log",
    )
    await asyncio.to_thread(edge.start)
    try:
        sid = await settled_session(client, "echo")

        async def free() -> bool:
            return await leases.holder(client.bus.leases_of(sid), sid) is None

        await eventually(free, what="the worker to let the session go")
        dead = await leases.claim(client.bus.leases_of(sid), sid, "a-worker-that-died")
        assert dead is not None  # held for a lease time (2 s) by nobody alive
        url = f"{edge.url}/agent-sessions/{sid}/messages"
        lines = await _sse_lines(http, url, {"message": "still there?", "stream": True})
    finally:
        await asyncio.to_thread(edge.stop)
    events = _events_of(lines)
    kinds = [k for k, _ in events]
    assert kinds[0] == "command.accepted" and kinds[-1] == "turn.completed", kinds
    accepted = events[0][1]["data"]
    assert accepted["session_id"] == sid and accepted["command_id"].startswith("cmd_")
    assert events[-1][1]["data"]["command_id"] == accepted["command_id"]
    first_stored = lines.index(next(ln for ln in lines if ln == "event: user.message"))
    assert ": keep-alive" in lines[:first_stored]  # quiet while it waited, not closed


async def test_when_no_worker_answers_the_edge_says_it_is_stored_and_where_to_follow(
    settings: Settings,
    http: httpx.AsyncClient,
    client: SessionClient,
    start_worker: Callable[[], Any],
    tmp_path: Path,
) -> None:
    """No live worker: the streamed message ends with an error that says it is stored and
    not answered yet, with its command id and the cursor to follow; so does a suspend's
    504. A worker started later answers both."""
    first = await start_worker()
    sid = await settled_session(client, "echo")
    await first.stop()
    await eventually(lambda: _no_workers(client), what="the workers to be gone")
    edge = EdgeProcess(edge_env(settings, PRAXIS_COMMAND_TIMEOUT="1"), tmp_path / "edge.log")
    await asyncio.to_thread(edge.start)
    try:
        url = f"{edge.url}/agent-sessions/{sid}/messages"
        lines = await _sse_lines(http, url, {"message": "anyone?", "stream": True})
        suspended = await http.post(f"{edge.url}/agent-sessions/{sid}/suspend")
    finally:
        await asyncio.to_thread(edge.stop)
    events = _events_of(lines)
    assert [k for k, _ in events] == ["command.accepted", "error"]
    accepted, problem = events[0][1]["data"], events[1][1]
    assert problem["code"] == "TIMEOUT" and problem["type"].endswith("command-not-answered-yet")
    assert "stored but not answered" in problem["detail"]
    assert "no worker is running" in problem["detail"]
    assert "is a worker running" not in problem["detail"]
    assert (problem["command_id"], problem["cursor"]) == (
        accepted["command_id"],
        accepted["cursor"],
    )
    assert suspended.status_code == 504, suspended.text
    pending = suspended.json()
    assert pending["command_id"] and pending["cursor"] >= 0
    await start_worker()  # stored means answered: the message, then the suspend
    events_after = await client.wait(Receipt(sid, accepted["command_id"], accepted["cursor"]))
    assert events_after[-1].type == "turn.completed"
    await client.wait(Receipt(sid, pending["command_id"], pending["cursor"]))
    assert (await client.get(sid)).state.value == "SUSPENDED"


async def _no_workers(client: SessionClient) -> bool:
    return not await client.workers()


# -- a local edge and the web pages a browser shows ----------------------------------------


async def test_state_changing_requests_must_be_json(
    edge: EdgeProcess, http: httpx.AsyncClient, client: SessionClient
) -> None:
    """A form or text/plain body is what any page may send to another origin without a
    CORS preflight: refused (415), and nothing is created."""
    before = len(await client.records())
    url = f"{edge.url}/agent-sessions/create"
    body = json.dumps({"agent_name": "echo"})
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = await http.post(url, content=body, headers={"content-type": kind})
        assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert kind in r.json()["detail"]
    r = await http.post(url, content=body, headers={"content-type": ""})
    assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert len(await client.records()) == before
    ok = await http.post(url, content=body, headers={"content-type": "application/json"})
    assert ok.status_code == 201, ok.text
    # A request without a body needs no type (curl -X POST .../suspend).
    sid = ok.json()["session_id"]
    bare = await http.post(f"{edge.url}/agent-sessions/{sid}/cancel")
    assert bare.status_code == 202, bare.text


async def test_pages_of_other_origins_are_refused(
    edge: EdgeProcess, http: httpx.AsyncClient, client: SessionClient
) -> None:
    before = len(await client.records())
    own = edge.url  # the chat page's origin: the edge's own
    for method, path, body in (
        ("POST", "/agent-sessions/create", {"agent_name": "echo"}),
        ("POST", "/agent-sessions/list", {}),
        ("GET", "/agents", None),
    ):
        for origin in ("http://evil.example", "null", own.replace("127.0.0.1", "localhost")):
            r = await http.request(
                method, f"{edge.url}{path}", json=body, headers={"origin": origin}
            )
            assert_problem(r, 403, "FORBIDDEN")
        mine = await http.request(method, f"{edge.url}{path}", json=body, headers={"origin": own})
        assert mine.status_code < 300, mine.text
    assert len(await client.records()) == before + 1  # only the chat page's own
    # A GraphQL subscription's WebSocket from another page is refused at the handshake.
    ws = edge.url.replace("http", "ws") + "/graphql"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            ws, origin=Origin("http://evil.example"), subprotocols=[Subprotocol("graphql-ws")]
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_an_edge_on_loopback_answers_only_to_its_own_name(
    edge: EdgeProcess, http: httpx.AsyncClient
) -> None:
    """A page whose name resolves to 127.0.0.1 (DNS rebinding) is same-origin for the
    browser, but its requests carry its name in Host."""
    port = edge.url.rsplit(":", 1)[1]
    for host in (f"rebind.example:{port}", "127.0.0.1", f"127.0.0.1:{int(port) + 1}"):
        r = await http.get(f"{edge.url}/agents", headers={"host": host})
        assert_problem(r, 400, "BAD_REQUEST")
        assert "not this edge's address" in r.json()["detail"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        r = await http.get(f"{edge.url}/agents", headers={"host": host})
        assert r.status_code == 200, r.text


async def test_origins_allowed_by_setting_get_cors_answers(
    settings: Settings, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    app = "http://127.0.0.1:5173"
    env = edge_env(settings, PRAXIS_CORS_ORIGINS=f"{app}, https://app.example.com")
    edge = EdgeProcess(env, tmp_path / "edge.log")
    await asyncio.to_thread(edge.start)
    try:
        pre = await http.options(
            f"{edge.url}/agent-sessions/create",
            headers={
                "origin": app,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert pre.status_code in (200, 204), pre.text
        assert pre.headers["access-control-allow-origin"] == app
        r = await http.post(f"{edge.url}/agent-sessions/list", json={}, headers={"origin": app})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app
        other = await http.post(
            f"{edge.url}/agent-sessions/list", json={}, headers={"origin": "http://x.example"}
        )
        assert_problem(other, 403, "FORBIDDEN")
    finally:
        await asyncio.to_thread(edge.stop)


# -- the OpenAPI document against what the edge does ---------------------------------------


async def test_the_document_says_what_the_edge_answers(
    edge: EdgeProcess, http: httpx.AsyncClient
) -> None:
    """What schemathesis's checks found: OPTIONS listing one method of two, optional bodies
    documented as required, 413 and 415 undocumented where a body can bring them, and a
    turn's SSE answer described as one JSON object."""
    spec = (await http.get(f"{edge.url}/schema/openapi.json")).json()
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item} | {"OPTIONS"}
        url = edge.url + path.replace("{session_id}", "ses_x").replace("{call_id}", "c1")
        allow = (await http.options(url)).headers["allow"]
        assert set(allow.split(", ")) == documented, (path, allow)
        for method, op in item.items():
            assert {"400", "403"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert {"413", "415"} <= set(op["responses"]), (method, path)
    for action in ("suspend", "complete"):
        body = spec["paths"][f"/agent-sessions/{{session_id}}/{action}"]["post"]["requestBody"]
        assert body["required"] is False
    create = spec["paths"]["/agent-sessions/create"]["post"]["requestBody"]
    assert create["required"] is True
    turn = spec["paths"]["/agent-sessions/{session_id}/messages"]["post"]["responses"]["200"]
    event = turn["content"]["text/event-stream"]["schema"]
    assert set(event["properties"]) == {"data", "event", "id"}
    assert event["properties"]["data"]["contentMediaType"] == "application/json"


async def test_values_must_have_their_json_types(
    edge: EdgeProcess, http: httpx.AsyncClient, client: SessionClient, worker: InProcessWorker
) -> None:
    """Booleans are booleans, integers integers, times strings: lax coercion took `0` for
    false, "5" for 5 and 0 for a time."""
    sid = await settled_session(client, "echo")
    for body in (
        {"message": "x", "queue": 0},
        {"message": "x", "stream": "true"},
        {"message": "x", "stream": 1},
    ):
        r = await http.post(f"{edge.url}/agent-sessions/{sid}/messages", json=body)
        assert_problem(r, 422, "BAD_USER_INPUT")
    for body in ({"limit": "5"}, {"limit": 5.0}, {"limit": True}, {"created_before": 0}):
        r = await http.post(f"{edge.url}/agent-sessions/list", json=body)
        assert_problem(r, 422, "BAD_USER_INPUT")
    r = await http.post(
        f"{edge.url}/agent-sessions/create", json={"agent_name": "echo", "idle_timeout": "60"}
    )
    assert_problem(r, 422, "BAD_USER_INPUT")
    ok = await http.post(
        f"{edge.url}/agent-sessions/list",
        json={"limit": 5, "created_after": "2020-01-01T00:00:00Z", "state": "ACTIVE"},
    )
    assert ok.status_code == 200, ok.text
    assert len(await client.history(sid)) == 0  # none of the refused messages was sent


def _without_times(document: object) -> str:
    """The document as text, with the generated examples' timestamps (made from the time
    it was generated) left out."""
    return re.sub(r'"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)?"', '"T"', json.dumps(document))


async def test_the_committed_openapi_document_is_the_served_one(
    edge: EdgeProcess, http: httpx.AsyncClient
) -> None:
    """schemas/openapi.json (which the documentation site renders) is what a running edge
    serves."""
    openapi = json.loads((ROOT / "schemas" / "openapi.json").read_text())
    served = (await http.get(f"{edge.url}/schema/openapi.json")).json()
    assert _without_times(served) == _without_times(openapi), (
        "run: python -m praxis.edge.openapi > schemas/openapi.json"
    )
