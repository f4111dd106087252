"""Issue 8: pipeline use. A plain nats-py client (no Praxis code) runs agents by publishing
commands on the bus and reads the outcome on a reply subject."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from praxis.bus import Receipt, SessionClient, SessionNotFoundError, Settings
from praxis.schemas import CommandRejected
from tests.conftest import (
    InProcessWorker,
    NatsServer,
    eventually,
    live_subscribers,
    remnants,
    stored_events,
)


async def _publish(nc: Client, session_id: str, command: dict[str, Any]) -> None:
    command.setdefault("command_id", f"cmd_{uuid.uuid4().hex}")
    await nc.jetstream().publish(
        f"sess.{session_id}.in",
        json.dumps(command).encode(),
        headers={"Nats-Msg-Id": f"{session_id}.{command['command_id']}"},
    )


async def _run(nc: Client, session_id: str, command: dict[str, Any]) -> dict[str, Any]:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await _publish(nc, session_id, {**command, "reply_to": inbox})
    outcome: dict[str, Any] = json.loads((await sub.next_msg(timeout=20)).data)
    await sub.unsubscribe()
    return outcome


async def test_runs_and_turns_with_a_plain_nats_client(
    nats: NatsServer, client: SessionClient, worker: InProcessWorker
) -> None:
    nc = await nats_connect(nats)
    try:
        sid = f"ses_{uuid.uuid4().hex}"
        base = {"session_id": sid, "task_id": "batch-7"}
        first = await _run(
            nc, sid, {**base, "kind": "create_session", "agent": "echo", "message": "step one"}
        )
        assert (first["outcome"], first["reply"], first["state"]) == (
            "completed",
            "step one",
            "ACTIVE",
        )
        assert first["task_id"] == "batch-7" and first["cursor"] > 0
        second = await _run(nc, sid, {**base, "kind": "user_message", "content": "step two"})
        assert (second["outcome"], second["reply"]) == ("completed", "step two")
        # The same session, from the Python client: the history and the task.
        assert [h.content for h in await client.history(sid)] == [
            "step one",
            "step one",
            "step two",
            "step two",
        ]
        assert [r.session_id for r in (await client.list_sessions(task_id="batch-7")).items] == [
            sid
        ]

        # Refused commands say why.
        again = await _run(nc, sid, {**base, "kind": "create_session", "agent": "echo"})
        assert (again["outcome"], again["reason"]) == ("rejected", "session already exists")
        await client.complete(sid)
        late = await _run(nc, sid, {**base, "kind": "user_message", "content": "more"})
        assert late["outcome"] == "rejected" and "COMPLETED" in late["reason"]

        other = f"ses_{uuid.uuid4().hex}"
        unknown = await _run(
            nc,
            other,
            {
                "session_id": other,
                "task_id": "t",
                "kind": "create_session",
                "agent": "nobody",
                "message": "hi",
            },
        )
        assert unknown["outcome"] == "rejected"
        assert unknown["reason"].startswith("unknown agent 'nobody'; known agents: ")
        assert "echo" in unknown["reason"]
    finally:
        await nc.close()


async def test_a_create_for_an_agent_no_worker_offers_leaves_no_session(
    nats: NatsServer, client: SessionClient, worker: InProcessWorker
) -> None:
    """Refused with the reason, and nothing of it remains (it was a FAILED session): not
    listed, not readable, its id free for a create that names a real agent; a follower of
    the refused create learns that the session is gone instead of waiting on."""
    nc = await nats_connect(nats)
    try:
        sid = f"ses_{uuid.uuid4().hex}"
        base = {"session_id": sid, "task_id": "task-unknown-agent", "kind": "create_session"}
        refused = await _run(nc, sid, {**base, "agent": "nobody", "message": "hi"})
        assert refused["outcome"] == "rejected" and "'nobody'" in refused["reason"]
        assert await remnants(client, sid) == {}
        with pytest.raises(SessionNotFoundError):
            await client.get(sid)
        assert not (await client.list_sessions(task_id="task-unknown-agent")).items
        made = await _run(nc, sid, {**base, "agent": "echo", "message": "hi"})
        assert (made["outcome"], made["reply"]) == ("completed", "hi")
    finally:
        await nc.close()


async def test_a_follower_of_a_refused_create_learns_the_session_is_gone(
    nats: NatsServer, client: SessionClient, start_worker: Callable[[], Awaitable[Any]]
) -> None:
    """Following a create stored while no worker ran: the worker that then refuses it
    removes the session, and the follower says so after a quiet command timeout (with a
    live worker it would otherwise wait on)."""
    quick = SessionClient(replace(client.bus, settings=_quick(client.bus.settings)))
    nc = await nats_connect(nats)
    try:
        sid = f"ses_{uuid.uuid4().hex}"
        command = {
            "session_id": sid,
            "task_id": "t",
            "kind": "create_session",
            "agent": "nobody",
            "command_id": "cmd_refused",
        }
        await _publish(nc, sid, command)
        following = asyncio.create_task(quick.wait(Receipt(sid, "cmd_refused", 0)))
        await eventually(lambda: _subscribed(nats, sid), what="the follower to listen")
        await start_worker()
        with pytest.raises(SessionNotFoundError, match="removed while its command waited"):
            await following
        assert await remnants(client, sid) == {}
    finally:
        await nc.close()


async def _subscribed(nats: NatsServer, sid: str) -> bool:
    return await live_subscribers(nats, sid) >= 1


def _quick(settings: Settings) -> Settings:
    return settings.model_copy(update={"command_timeout": 1.0})


async def test_a_bad_command_on_the_bus_is_rejected_and_changes_nothing(
    nats: NatsServer, client: SessionClient, worker: InProcessWorker
) -> None:
    nc = await nats_connect(nats)
    try:
        sid = f"ses_{uuid.uuid4().hex}"
        base = {"session_id": sid, "task_id": "t"}
        made = await _run(nc, sid, {**base, "kind": "create_session", "agent": "echo"})
        assert made["outcome"] == "done" and made["state"] == "ACTIVE"
        await _publish(
            nc, sid, {**base, "kind": "user_message", "content": "x", "reply_to": "results.>"}
        )  # a wildcard: not a reply subject
        await nc.jetstream().publish(f"sess.{sid}.in", b"{not json", headers={"Nats-Msg-Id": "b"})
        good = await _run(nc, sid, {**base, "kind": "user_message", "content": "still here"})
        assert good["reply"] == "still here"
        rejected = await rejections(client, sid)
        assert len(rejected) == 2 and all(r.startswith("invalid command") for r in rejected)
        assert "reply_to" in rejected[0]
        assert [h.content for h in await client.history(sid)] == ["still here", "still here"]
    finally:
        await nc.close()


async def test_a_reply_subject_must_be_an_inbox(
    nats: NatsServer, client: SessionClient, worker: InProcessWorker
) -> None:
    """The worker publishes outcomes with its own rights: a reply subject that names the
    JetStream API (a purge of the whole stream) or another session's events is refused,
    and neither is touched."""
    nc = await nats_connect(nats)
    try:
        victim, _ = await client.create("echo", initial_message="keep me")
        await client.wait(_)
        stream = client.bus.stream_of(victim.session_id)
        before = await client.bus.js.stream_info(stream)
        victim_events = await stored_events(client, victim.session_id)
        sid = f"ses_{uuid.uuid4().hex}"
        base = {"session_id": sid, "task_id": "t"}
        assert (await _run(nc, sid, {**base, "kind": "create_session", "agent": "echo"}))[
            "outcome"
        ] == "done"
        for target in (
            f"$JS.API.STREAM.PURGE.{stream}",
            client.bus.events(victim.session_id),
            client.bus.inputs(victim.session_id),
            "_INBOX_edge.abc",
        ):
            await _publish(
                nc, sid, {**base, "kind": "user_message", "content": "x", "reply_to": target}
            )
        good = await _run(nc, sid, {**base, "kind": "user_message", "content": "after"})
        assert good["reply"] == "after"
        reasons = await rejections(client, sid)
        assert len(reasons) == 4 and all("reply_to" in r for r in reasons)
        after = await client.bus.js.stream_info(stream)
        assert after.state.messages > before.state.messages  # nothing was purged
        assert [h.content for h in await client.history(victim.session_id)] == [
            "keep me",
            "keep me",
        ]
        assert await stored_events(client, victim.session_id) == victim_events
    finally:
        await nc.close()


async def rejections(client: SessionClient, session_id: str) -> list[str]:
    """The reasons of the session's command.rejected events, in order."""
    return [
        e.reason for e in await stored_events(client, session_id) if isinstance(e, CommandRejected)
    ]


async def nats_connect(server: NatsServer) -> Client:
    return await nats.connect(server.url)
