"""Issue 7: the lifecycle on a real bus: expiry by timers on the bus, with no client
around; the state machine from every interface."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx
import pytest

from bus import IllegalTransitionError, SessionClient, Settings, direct, subjects
from schemas import SessionState, StateChanged, UserMessageAccepted
from tests.conftest import EdgeProcess, InProcessWorker, env_for, praxis, settled_session
from workers.runner import EXPIRY_SLACK


async def expired_event(client: SessionClient, sid: str, within: float) -> StateChanged:
    """Follow the session's events until it expires (nobody touches it meanwhile)."""
    async with asyncio.timeout(within):
        async for item in client.events(sid, after=0):
            ev = item.event
            if isinstance(ev, StateChanged) and ev.to_state is SessionState.EXPIRED:
                return ev
    raise AssertionError("the event stream ended")


async def test_an_idle_session_expires_on_its_own(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid = await settled_session(client, "echo", idle_timeout=1.0)
    await client.wait(await client.send(sid, "hello"))
    record = await client.get(sid)
    assert record.idle_timeout == 1.0 and record.expires_at is not None
    ev = await expired_event(client, sid, within=10)
    assert ev.reason == "expired" and ev.detail == "idle for 1s" and ev.final
    assert ev.interface is not None and ev.interface.value == "system"
    assert record.active_at is not None
    assert ev.ts - record.active_at >= timedelta(seconds=1 - EXPIRY_SLACK)
    after = await client.get(sid)
    assert after.state is SessionState.EXPIRED and after.expires_at is None
    with pytest.raises(IllegalTransitionError, match="EXPIRED"):
        await client.send(sid, "too late")
    with pytest.raises(IllegalTransitionError):
        await client.resume(sid)
    # The timer is gone with the session's end: nothing is scheduled any more.
    assert await _stored(client, subjects.timer(sid)) == []


async def test_activity_postpones_idle_expiry_but_not_the_lifetime(
    client: SessionClient, worker: InProcessWorker
) -> None:
    idle = await settled_session(client, "echo", idle_timeout=1.5)
    both = await settled_session(client, "echo", idle_timeout=1.5, max_lifetime=2.5)

    async def turn(sid: str, text: str) -> None:
        await client.wait(await client.send(sid, text))

    for i in range(8):  # a message every 0.4 s for 3.2 s: neither is idle for 1.5 s
        await asyncio.gather(*(turn(s, f"m{i}") for s in ((idle, both) if i < 5 else (idle,))))
        await asyncio.sleep(0.4)
    assert (await client.get(idle)).state is SessionState.ACTIVE
    lived = await expired_event(client, both, within=5)
    assert lived.detail == "its lifetime of 2.5s ended"
    record = await client.get(both)
    assert lived.ts - record.created_at >= timedelta(seconds=2.5 - EXPIRY_SLACK)
    messages = [e async for e in _events(client, both) if isinstance(e, UserMessageAccepted)]
    assert lived.ts < messages[-1].ts + timedelta(seconds=1.5)  # it was not idle
    ev = await expired_event(client, idle, within=10)
    assert ev.detail == "idle for 1.5s"


async def test_expiry_defaults_come_from_settings(
    client: SessionClient, worker: InProcessWorker, settings: Settings
) -> None:
    sid = await settled_session(client, "echo")
    record = await client.get(sid)
    assert record.idle_timeout == settings.session_idle_timeout == 30 * 86400
    assert record.max_lifetime == 0
    assert record.expires_at == record.active_at + timedelta(days=30)  # type: ignore[operator]
    never = await settled_session(client, "echo", idle_timeout=0)
    assert (await client.get(never)).expires_at is None


async def test_completing_cancels_the_timer_and_purge_leaves_nothing(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid = await settled_session(client, "echo", idle_timeout=60)
    await client.wait(await client.send(sid, "hi"))
    assert len(await _stored(client, subjects.timer(sid))) == 1
    await client.complete(sid)
    assert await _stored(client, subjects.timer(sid)) == []
    await client.purge(sid)
    assert await _stored(client, subjects.session_all(sid)) == []


async def _stored(client: SessionClient, subject: str) -> list[int]:
    msgs = await direct.read_subject(client.bus.nc, client.bus.stream, subject, after=0, timeout=5)
    return [m.seq for m in msgs]


async def _events(client: SessionClient, sid: str):  # type: ignore[no-untyped-def]
    msgs = await direct.read_subject(
        client.bus.nc, client.bus.stream, subjects.events(sid), after=0, timeout=5
    )
    from schemas import decode_event

    for m in msgs:
        yield decode_event(m.data)


async def test_expiry_from_every_interface(
    client: SessionClient, worker: InProcessWorker, edge: EdgeProcess, settings: Settings
) -> None:
    """Set over REST, GraphQL and the CLI; each session expires with nobody connected to it;
    every interface then shows EXPIRED and refuses messages."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        body = {"agent_name": "echo", "idle_timeout": -1}
        bad = await http.post("/agent-sessions/create", json=body)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"].endswith("idle_timeout")
        made = await http.post(
            "/agent-sessions/create",
            json={"agent_name": "echo", "idle_timeout": 1, "initial_message": "hi"},
        )
        assert made.status_code == 201
        rest = made.json()["session_id"]
        view = (await http.get(f"/agent-sessions/{rest}")).json()
        assert view["idle_timeout"] == 1 and view["max_lifetime"] == 0

        mutation = (
            'mutation { createAgentSession(agentName: "echo", maxLifetime: 1.5) { sessionId } }'
        )
        answer = (await http.post("/graphql", json={"query": mutation})).json()
        gql = answer["data"]["createAgentSession"]["sessionId"]

        env = env_for(settings)
        ran = await asyncio.to_thread(
            praxis, env, "agent", "run", "echo", "--idle-timeout", "1s", "--message", "hi"
        )
        assert ran.returncode == 0, ran.stderr
        cli = ran.stderr.split("Session created: ")[1].split()[0]

        for sid in (rest, gql, cli):
            await expired_event(client, sid, within=15)
        view = (await http.get(f"/agent-sessions/{rest}")).json()
        assert view["state"] == "EXPIRED" and view["expires_at"] is None
        sent = await http.post(f"/agent-sessions/{rest}/messages", json={"message": "late"})
        assert sent.status_code == 409 and sent.json()["state"] == "EXPIRED"
        query = f'{{ agentSession(sessionId: "{gql}") {{ state expiresAt maxLifetime }} }}'
        got = (await http.post("/graphql", json={"query": query})).json()["data"]
        assert got["agentSession"] == {"state": "EXPIRED", "expiresAt": None, "maxLifetime": 1.5}
        shown = await asyncio.to_thread(praxis, env, "agent", "show-session", cli, "--json")
        assert json.loads(shown.stdout)["state"] == "EXPIRED"
        late = await asyncio.to_thread(praxis, env, "agent", "resume", cli, "--message", "x")
        assert late.returncode == 1 and "EXPIRED" in late.stderr
