"""What must survive: restarts, many sessions on several workers, a worker killed mid-turn,
and a stale owner."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from nats.js.errors import NoStreamResponseError

from praxis.bus import (
    FenceRejectedError,
    InvalidIdError,
    SessionClient,
    Settings,
    commit,
    connect,
    leases,
    load_state,
)
from praxis.bus.connection import with_retry
from praxis.bus.embedded import NatsServer
from praxis.bus.errors import PublishError
from praxis.bus.state import pending_create
from praxis.schemas import (
    AgentMessage,
    Event,
    SessionClaimed,
    TokenDelta,
    TurnCompleted,
    TurnStarted,
    encode_record,
    first_id,
)
from tests.conftest import InProcessWorker, WorkerProcess, eventually, live_workers, make_settings

pytestmark = pytest.mark.partitions(1, 3)


async def test_history_survives_restart_of_worker_and_nats(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log").start()
    settings = make_settings(server.url, tmp_path)
    try:
        async with connect(settings, server.url, "client") as bus:
            client = SessionClient(bus)
            async with connect(settings, server.url, "worker") as wbus:
                from praxis.workers import Worker, load_agents

                stop = asyncio.Event()
                task = asyncio.create_task(Worker(wbus, load_agents()).run(stop))
                record, receipt = await client.create("hello-world")
                await client.wait(receipt)
                for text in ("first words", "second words"):
                    async for _ in client.turn(record.session_id, text):
                        pass
                stop.set()
                await task
            before = await client.history(record.session_id)

            server.stop()
            server = NatsServer(
                server.store_dir, port=server.port, log_file=tmp_path / "nats2.log"
            ).start()
            await eventually(_connected(client), what="the client to reconnect")

            assert await client.history(record.session_id) == before
            async with connect(settings, server.url, "worker2") as wbus:
                from praxis.workers import Worker, load_agents

                stop = asyncio.Event()
                task = asyncio.create_task(Worker(wbus, load_agents()).run(stop))
                reply = [d async for d in client.turn(record.session_id, "third words")]
                stop.set()
                await task
            text = next(d.event.content for d in reply if isinstance(d.event, AgentMessage))
            assert "3rd message" in text and '"second words"' in text
            assert len(await client.history(record.session_id)) == len(before) + 2
    finally:
        server.stop()


def _connected(client: SessionClient) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            await client.bus.js.stream_info(client.bus.settings.stream)
        except Exception:
            return False
        return True

    return check


@pytest.mark.slow
async def test_two_worker_processes_200_sessions_5_messages_each(
    client: SessionClient, worker_processes: Callable[[int], list[WorkerProcess]]
) -> None:
    worker_processes(2)
    await live_workers(client, 2)
    sessions = 200
    messages = 5
    gate = asyncio.Semaphore(100)

    async def converse(i: int) -> str:
        async with gate:
            record, receipt = await client.create("echo", task_id=f"load-{i}")
            await client.wait(receipt)
        for m in range(messages):
            async with gate:
                async for _ in client.turn(record.session_id, f"s{i} m{m}"):
                    pass
        return record.session_id

    async with asyncio.timeout(240):
        ids = await asyncio.gather(*(converse(i) for i in range(sessions)))
    claimed_by: set[str] = set()
    for i, sid in enumerate(ids):
        history = await client.history(sid)
        expected = [
            x for m in range(messages) for x in (("user", f"s{i} m{m}"), ("agent", f"s{i} m{m}"))
        ]
        assert [(h.role, h.content) for h in history] == expected, sid
        state, _ = await load_state(client.bus, sid) or (None, 0)
        assert state is not None and state.session.counters.turns == messages
        claimed_by |= {state.owner or ""}
    assert len(claimed_by) == 2, "both workers took sessions"


@pytest.mark.slow
async def test_kill_9_mid_turn_another_worker_finishes_with_one_reply(
    client: SessionClient, worker_processes: Callable[[int], list[WorkerProcess]]
) -> None:
    procs = {p.pid: p for p in worker_processes(2)}
    await live_workers(client, 2)
    record, receipt = await client.create("slow", metadata={"pieces": 40, "delay": 0.05})
    await client.wait(receipt)
    sent = await client.send(record.session_id, "a long answer please")

    started: TurnStarted | None = None
    pieces = 0
    async with asyncio.timeout(60):
        async for item in await client.events(record.session_id, after=sent.cursor):
            ev = item.event
            if isinstance(ev, TurnStarted) and started is None:
                started = ev
            if isinstance(ev, TokenDelta) and started and ev.turn_id == started.turn_id:
                pieces += 1
                if pieces == 5:
                    owner = next(
                        w for w in await client.workers() if w.worker_id == started.worker_id
                    )
                    os.kill(owner.pid, signal.SIGKILL)
                    procs[owner.pid].proc.wait(10)
            if isinstance(ev, TurnCompleted) and ev.command_id == sent.command_id:
                break
    assert started is not None and pieces >= 5

    history = await client.history(record.session_id)
    replies = [h for h in history if h.role == "agent"]
    assert [h.role for h in history] == ["user", "agent"]
    assert replies[0].content == "".join(f"w{i} " for i in range(40))
    state = await load_state(client.bus, record.session_id)
    assert state is not None
    ck, _ = state
    assert ck.owner != started.worker_id and ck.session.counters.turns == 1
    assert ck.session.counters.agent_messages == 1


async def test_stale_owner_cannot_append(client: SessionClient, settings: Settings) -> None:
    record, _ = await client.create("echo")
    sid = record.session_id
    bus = client.bus
    found = await load_state(bus, sid)
    assert found is not None and found[1] == 0  # no worker here: seen from its command
    created = await pending_create(bus, sid)
    assert created is not None  # its first event, as a worker writes it

    async def append(event: Event, after: int) -> int:
        return await commit.append(
            bus.nc,
            bus.stream_of(sid),
            sid,
            encode_record([event.model_dump_json().encode()]),
            partition=bus.partition(sid),
            expected_seq=after,
            max_bytes=settings.max_message_bytes,
            timeout=5,
            deadline=10,
        )

    tail = await append(created, 0)
    stale = await leases.claim(bus.leases_of(sid), sid, "worker-a")
    assert stale is not None
    # worker-a stalls past its lease; worker-b takes the session over and writes first.
    await bus.leases_of(sid).purge(sid)
    fresh = await leases.claim(bus.leases_of(sid), sid, "worker-b")
    assert fresh is not None
    assert not await leases.renew(bus.leases_of(sid), stale), "the stale lease cannot be renewed"
    claimed = SessionClaimed(session_id=sid, task_id=record.task_id, worker_id="worker-b")
    new_tail = await append(claimed, tail)
    assert new_tail > tail

    late = SessionClaimed(session_id=sid, task_id=record.task_id, worker_id="worker-a")
    with pytest.raises(FenceRejectedError, match=f"wrong last sequence: {new_tail}"):
        await append(late, tail)
    after = await load_state(bus, sid)
    assert after is not None and after[1] == first_id(new_tail) and after[0].owner == "worker-b"


BAD_IDS = ["a.b", "*", ">", "a b", "", "x" * 1024, "sess.>", "tab\there", "ünï"]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_ids_are_rejected_before_anything_is_published(
    client: SessionClient, bad: str
) -> None:
    async def stored() -> list[int]:
        parts = client.bus.partitions
        infos = [await client.bus.js.stream_info(parts.stream(k)) for k in parts.all()]
        return [info.state.last_seq for info in infos]

    before = await stored()
    calls = [
        client.get(bad),
        client.send(bad, "hi"),
        client.history(bad),
        client.suspend(bad),
        client.resume(bad),
        client.complete(bad),
        client.cancel(bad),
        client.create("echo", session_id=bad),
        client.create("echo", task_id=bad),
        client.create(bad),
        client.purge(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidIdError):
            await call
    with pytest.raises(InvalidIdError):
        client.bus.inputs(bad)
    with pytest.raises(InvalidIdError):
        [d async for d in await client.events(bad)]
    assert await stored() == before


async def test_graceful_drain_hands_the_session_to_the_next_worker(
    client: SessionClient, start_worker: Callable[[], Awaitable[InProcessWorker]]
) -> None:
    first = await start_worker()
    record, receipt = await client.create("slow", metadata={"pieces": 200, "delay": 0.02})
    await client.wait(receipt)
    sent = await client.send(record.session_id, "long")

    async def running() -> bool:
        return bool(first.worker._runners)

    await eventually(running, what="the turn to start")
    await first.stop()  # drain: grace, then the turn is cancelled and the lease released
    await start_worker()
    events = await client.wait(sent)
    assert isinstance(events[-1], TurnCompleted)
    history = await client.history(record.session_id)
    assert [h.role for h in history] == ["user", "agent"]


async def test_follow_up_messages_stay_with_the_owner_while_it_lingers(
    client: SessionClient, start_worker: Callable[[], Awaitable[InProcessWorker]]
) -> None:
    first, second = await start_worker(), await start_worker()
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    for i in range(6):  # both workers take triggers; the owner keeps the session meanwhile
        items = [d async for d in client.turn(record.session_id, f"m{i}")]
        assert isinstance(items[-1].event, TurnCompleted)
    claims = [
        d.event
        async for d in _durable_events(client, record.session_id)
        if isinstance(d.event, SessionClaimed)
    ]
    assert len(claims) == 1, "one claim for the whole burst"
    owner = claims[0].worker_id
    assert owner in {first.worker.worker_id, second.worker.worker_id}
    await first.stop()  # draining ends the linger at once and hands the session back
    await second.stop()


async def _durable_events(client: SessionClient, session_id: str):  # type: ignore[no-untyped-def]
    found = await load_state(client.bus, session_id)
    assert found is not None
    async for item in await client.events(session_id, after=0):
        if item.cursor is not None:
            yield item
            if item.cursor >= found[1]:
                return


async def test_a_write_nobody_answers_is_tried_again_within_the_retry_window() -> None:
    """JetStream's publish reports "no responders" (no stream leader yet, after a server is
    lost) as NoStreamResponseError: tried again, as a timeout is, until the window ends."""
    calls: list[int] = []

    async def elected_on_the_third_try() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NoStreamResponseError
        return "stored"

    assert await with_retry(elected_on_the_third_try, what="x", deadline=5) == "stored"
    assert len(calls) == 3

    async def never() -> str:
        raise NoStreamResponseError

    with pytest.raises(PublishError, match=r"JetStream unavailable for 0\.3s"):
        await with_retry(never, what="x", deadline=0.3)
