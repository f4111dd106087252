"""Issue 7: the lifecycle on a real bus: expiry by timers on the bus, with no client
around; the state machine from every interface."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from datetime import timedelta

import httpx
import pytest
from pydantic import ValidationError

from praxis.bus import IllegalTransitionError, Receipt, SessionClient, Settings, direct, subjects
from praxis.bus.client import reading
from praxis.bus.state import read_events
from praxis.schemas import (
    AgentMessage,
    CommandRejected,
    DoubleTexting,
    Event,
    MessageQueued,
    SessionState,
    StateChanged,
    TokenDelta,
    TurnCompleted,
    TurnFailed,
    TurnRolledBack,
    UserMessageAccepted,
)
from praxis.workers.session.policy import EXPIRY_SLACK
from tests.conftest import (
    EdgeProcess,
    InProcessWorker,
    env_for,
    eventually,
    praxis,
    remnants,
    settled_session,
    slow_turn_streaming,
    stored_events,
    streaming,
)

pytestmark = pytest.mark.partitions(1, 3)


async def expired_event(client: SessionClient, sid: str, within: float) -> StateChanged:
    """Follow the session's events until it expires (nobody touches it meanwhile)."""
    async with asyncio.timeout(within):
        async for item in await client.events(sid, after=0):
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
    assert ev.actor == "expiry timer"
    assert record.active_at is not None
    assert ev.ts - record.active_at >= timedelta(seconds=1 - EXPIRY_SLACK)
    after = await client.get(sid)
    assert after.state is SessionState.EXPIRED and after.expires_at is None
    with pytest.raises(IllegalTransitionError, match="EXPIRED"):
        await client.send(sid, "too late")
    with pytest.raises(IllegalTransitionError):
        await client.resume(sid)
    # The timer is gone with the session's end: nothing is scheduled any more.
    assert await _stored(client, subjects.timer(sid, client.bus.partition(sid))) == []


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
    assert len(await _stored(client, subjects.timer(sid, client.bus.partition(sid)))) == 1
    await client.complete(sid)
    assert await _stored(client, subjects.timer(sid, client.bus.partition(sid))) == []
    assert await remnants(client, sid)  # the record, the lease, the history
    await client.purge(sid)
    assert await _stored(client, subjects.session_all(sid)) == []
    assert await remnants(client, sid) == {}


async def _stored(client: SessionClient, subject: str) -> list[int]:
    """The sequences of what a session's subject holds (``sess.<id>.…``)."""
    stream = client.bus.stream_of(subjects.session_of(subject))
    msgs = await direct.read_subject(client.bus.nc, stream, subject, after=0, timeout=5)
    return [m.seq for m in msgs]


async def _events(client: SessionClient, sid: str):  # type: ignore[no-untyped-def]
    for _, event in await read_events(client.bus, sid, after=0):
        yield event


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


async def test_suspending_mid_turn_stops_it_and_keeps_the_partial_reply(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, sent = await slow_turn_streaming(client, pieces=200, delay=0.05, at_least=3)
    sid = record.session_id
    t0 = time.monotonic()
    suspended = await client.suspend(sid, "lunch")
    assert suspended.state is SessionState.SUSPENDED
    assert time.monotonic() - t0 < 5  # not after the 10 s the turn would have taken
    events = await client.wait(sent)
    partial = next(e for e in events if isinstance(e, AgentMessage))
    assert partial.interrupted and partial.content.startswith("w0 w1 w2 ")
    assert len(partial.content.split()) < 200
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and failed.cancelled
    assert failed.reason.startswith("interrupted: the session was suspended")
    history = await client.history(sid)
    assert history[-1].role == "agent" and history[-1].interrupted
    with pytest.raises(IllegalTransitionError, match="resume it first"):
        await client.send(sid, "hello?")
    await client.resume(sid)
    after = await client.wait(await client.send(sid, "go on"))
    assert any(isinstance(e, AgentMessage) and not e.interrupted for e in after)


async def test_a_suspend_takes_effect_after_the_cut_and_the_backlog_waits_for_resume(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """Four messages sent, then a suspend: the turn in flight is cut, and the three
    messages waiting behind it are kept (message.queued) instead of each being answered
    in full before the suspend (which took 6 s with three 2 s turns); after the resume
    they are answered in order, each under its own command id."""
    record, first = await slow_turn_streaming(client, pieces=40, delay=0.05, at_least=2)
    sid = record.session_id
    backlog = [await client.send(sid, f"message {n}") for n in (2, 3, 4)]
    suspended = await client.suspend(sid, "hold on")
    assert suspended.state is SessionState.SUSPENDED
    events = await stored_events(client, sid)
    cut = next(i for i, e in enumerate(events) if isinstance(e, TurnFailed))
    assert events[cut].command_id == first.command_id and events[cut].cancelled
    after_cut = [(type(e).__name__, e.command_id) for e in events[cut + 1 :]]
    assert after_cut == [
        *(("MessageQueued", r.command_id) for r in backlog),
        ("StateChanged", after_cut[-1][1]),
    ], after_cut  # no turn for 2-4 before the suspend
    assert events[-1].state is SessionState.SUSPENDED
    await client.resume(sid)
    for receipt, n in zip(backlog, (2, 3, 4), strict=True):
        answered = await _events_of(client, sid, receipt.command_id)
        assert isinstance(answered[-1], TurnCompleted), answered
        reply = next(e for e in answered if isinstance(e, AgentMessage))
        assert reply.content.startswith("w0 w1") and not reply.interrupted, n
    users = [h.content for h in await client.history(sid) if h.role == "user"]
    assert users == ["go", "message 2", "message 3", "message 4"]


async def test_messages_queued_while_suspended_are_answered_on_resume(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid = await settled_session(client, "echo")
    await client.wait(await client.send(sid, "before"))
    await client.suspend(sid)
    first = await client.send(sid, "one", queue=True)
    second = await client.send(sid, "two", queue=True)
    for receipt, text in ((first, "one"), (second, "two")):
        [queued] = await client.wait(receipt)
        assert isinstance(queued, MessageQueued) and queued.content == text and queued.final
    assert [h.content for h in await client.history(sid)] == ["before", "before"]
    await client.resume(sid)
    # Each kept message is answered in order, under its own command id.
    for receipt, text in ((first, "one"), (second, "two")):
        events = await _events_of(client, sid, receipt.command_id)
        assert [type(e).__name__ for e in events][-1] == "TurnCompleted"
        assert next(e for e in events if isinstance(e, AgentMessage)).content == text
    history = [(h.role, h.content) for h in await client.history(sid)]
    assert history[-4:] == [("user", "one"), ("agent", "one"), ("user", "two"), ("agent", "two")]

    # Kept messages of a session that ends instead of resuming are never answered.
    await client.suspend(sid)
    await client.wait(await client.send(sid, "never", queue=True))
    await client.complete(sid)
    assert [h.content for h in await client.history(sid)][-1] == "two"


async def test_queueing_over_rest_and_graphql(
    client: SessionClient, worker: InProcessWorker, edge: EdgeProcess
) -> None:
    sid = await settled_session(client, "echo")
    await client.suspend(sid)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        url = f"/agent-sessions/{sid}/messages"
        refused = await http.post(url, json={"message": "hi"})
        assert refused.status_code == 409 and refused.json()["state"] == "SUSPENDED"
        kept = await http.post(url, json={"message": "rest", "queue": True})
        assert kept.status_code == 202
        mutation = (
            f'mutation {{ sendMessageToSession(sessionId: "{sid}", message: "gql", '
            "queue: true) { commandId } }"
        )
        answer = (await http.post("/graphql", json={"query": mutation})).json()
        gql_command = answer["data"]["sendMessageToSession"]["commandId"]
        resumed = await http.post(f"/agent-sessions/{sid}/resume", json={})
        assert resumed.status_code == 200
    events = await _events_of(client, sid, gql_command)
    assert next(e for e in events if isinstance(e, AgentMessage)).content == "gql"
    assert [h.content for h in await client.history(sid)] == ["rest", "rest", "gql", "gql"]


async def _events_of(client: SessionClient, sid: str, command_id: str) -> list[Event]:
    """The events of one command, up to its last one (following the session live)."""
    got: list[Event] = []
    async with asyncio.timeout(15):
        async for item in await client.events(sid, after=0):
            ev = item.event
            if isinstance(ev, TokenDelta) or ev.command_id != command_id:
                continue
            got.append(ev)
            if isinstance(ev, TurnCompleted | TurnFailed):
                return got
    raise AssertionError("the event stream ended")


async def busy_session(client: SessionClient, way: DoubleTexting) -> tuple[str, Receipt]:
    """A slow session (a 40-piece reply, 50 ms apart) whose first turn is streaming."""
    record, receipt = await client.create(
        "slow", metadata={"pieces": 40, "delay": 0.05}, double_texting=way
    )
    await client.wait(receipt)
    sent = await client.send(record.session_id, "first")
    await eventually(lambda: streaming(client, record.session_id, 3), what="streaming")
    return record.session_id, sent


async def test_double_texting_enqueue_and_reject(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid, first = await busy_session(client, "enqueue")
    second = await client.send(sid, "second")
    assert isinstance((await client.wait(first))[-1], TurnCompleted)
    assert isinstance((await client.wait(second))[-1], TurnCompleted)  # it waited its turn

    sid, first = await busy_session(client, "reject")
    refused = (await client.wait(await client.send(sid, "too soon")))[-1]
    assert isinstance(refused, CommandRejected) and "busy" in refused.reason
    ok = await client.send(sid, "now", on_busy="enqueue")  # a message may say its own way
    assert isinstance((await client.wait(first))[-1], TurnCompleted)
    assert isinstance((await client.wait(ok))[-1], TurnCompleted)
    # Once the session is idle, a message is not a double text.
    after = (await client.wait(await client.send(sid, "later")))[-1]
    assert isinstance(after, TurnCompleted)


async def test_double_texting_interrupt_stops_the_turn_and_answers_the_new_message(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid, first = await busy_session(client, "enqueue")
    second = await client.send(sid, "instead", on_busy="interrupt")
    stopped = await client.wait(first)
    failed = stopped[-1]
    assert isinstance(failed, TurnFailed) and failed.cancelled_by == second.command_id
    assert failed.reason.startswith("interrupted: superseded")
    assert isinstance((await client.wait(second))[-1], TurnCompleted)
    history = await client.history(sid)
    assert [(h.content.split()[0], h.interrupted, h.rolled_back) for h in history] == [
        ("first", False, False),
        ("w0", True, False),
        ("instead", False, False),
        ("w0", False, False),
    ]


async def test_double_texting_rollback_discards_the_turn_in_flight(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid, first = await busy_session(client, "rollback")
    second = await client.send(sid, "scratch that")
    await client.wait(first)
    events = await client.wait(second)
    rolled = next(e for e in events if isinstance(e, TurnRolledBack))
    assert isinstance(events[-1], TurnCompleted)
    history = await client.history(sid)
    assert [(h.content.split()[0], h.rolled_back) for h in history] == [
        ("first", True),
        ("w0", True),
        ("scratch", False),
        ("w0", False),
    ]
    assert rolled.from_seq == history[0].seq and rolled.to_seq > history[1].seq
    ck, _ = await reading.checkpoint(client, sid)
    assert [m.content.split()[0] for m in ck.context] == ["scratch", "w0"]  # what the agent sees
    page, _ = await client.history(sid, limit=4, more=True)
    assert [h.rolled_back for h in page] == [True, True, False, False]


async def test_double_texting_over_rest_and_graphql(
    client: SessionClient, worker: InProcessWorker, edge: EdgeProcess
) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        body = {"agent_name": "slow", "double_texting": "reject"}
        made = (await http.post("/agent-sessions/create", json=body)).json()
        view = (await http.get(f"/agent-sessions/{made['session_id']}")).json()
        assert view["double_texting"] == "reject"
        bad = await http.post(
            "/agent-sessions/create", json={"agent_name": "echo", "double_texting": "shout"}
        )
        assert bad.status_code == 422 and "double_texting" in bad.json()["errors"][0]["field"]
        worse = await http.post(
            f"/agent-sessions/{made['session_id']}/messages",
            json={"message": "x", "on_busy": "never"},
        )
        assert worse.status_code == 422
        mutation = (
            'mutation { createAgentSession(agentName: "echo", doubleTexting: "rollback") '
            "{ sessionId } }"
        )
        sid = (await http.post("/graphql", json={"query": mutation})).json()["data"][
            "createAgentSession"
        ]["sessionId"]
        query = f'{{ agentSession(sessionId: "{sid}") {{ doubleTexting }} }}'
        got = (await http.post("/graphql", json={"query": query})).json()["data"]
        assert got == {"agentSession": {"doubleTexting": "rollback"}}
        wrong = (
            'mutation { createAgentSession(agentName: "echo", doubleTexting: "x") { sessionId } }'
        )
        errors = (await http.post("/graphql", json={"query": wrong})).json()["errors"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_every_transition_names_its_command_interface_and_actor(
    client: SessionClient, worker: InProcessWorker, settings: Settings
) -> None:
    billing = SessionClient(client.bus, actor="svc-billing")
    record, receipt = await billing.create("echo")
    await billing.wait(receipt)
    sid = record.session_id
    env = env_for(settings)
    done = await asyncio.to_thread(praxis, env, "agent", "suspend", sid)
    assert done.returncode == 0, done.stderr
    await billing.resume(sid)
    changes = [
        (e.from_state.value, e.to_state.value, e.interface and e.interface.value, e.actor)
        async for e in _events(client, sid)
        if isinstance(e, StateChanged)
    ]
    user = getpass.getuser()
    assert changes == [
        ("CREATED", "ACTIVE", "bus", "svc-billing"),
        ("ACTIVE", "SUSPENDED", "cli", user),
        ("SUSPENDED", "ACTIVE", "bus", "svc-billing"),
    ]
    created = await anext(_events(client, sid))
    assert created.type == "session.created" and created.actor == "svc-billing"
    receipt = await billing.send(sid, "audit me")
    await billing.wait(receipt)
    caused = [e async for e in _events(client, sid) if e.command_id == receipt.command_id]
    assert [e.type for e in caused] == [
        "user.message",
        "turn.started",
        "agent.message",
        "turn.completed",
    ]
    assert {e.actor for e in caused} == {"svc-billing"}  # every event the command caused
    with pytest.raises(ValidationError):
        await SessionClient(client.bus, actor="x" * 201).create("echo")
