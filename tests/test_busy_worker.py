"""A worker with more sessions than slots: sessions are taken in turn (none keeps its slot
while it waits for its next message), and clients whose commands wait for a slot wait
their turn instead of giving up after the command timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from praxis.bus import Bus, SessionClient, Settings, connect, leases, subjects
from praxis.bus.embedded import NatsServer
from praxis.bus.permissions import Role
from praxis.schemas import AgentMessage, Interface, TurnCompleted, new_id
from praxis.workers import Worker, registry_for
from praxis.workers.session.ownership import Ownership
from tests.conftest import credentials, eventually, make_settings


@pytest.fixture
async def one_slot(nats: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[SessionClient, Worker]]:
    """A client and a worker with one slot; the client gives up on a command no worker has
    taken within a second, unless the workers say they are busy. A session lingers 30 s
    after its last input (before, that kept the slot: a session in a loop kept it)."""
    s: Settings = make_settings(
        nats.url,
        tmp_path,
        worker_concurrency=1,
        command_timeout=1.0,
        linger=30.0,
        record_interval=1.0,
    )
    async with _running(s) as (client, worker):
        yield client, worker


@contextlib.asynccontextmanager
async def _running(s: Settings) -> AsyncIterator[tuple[SessionClient, Worker]]:
    """A client and a worker on ``s``, the worker running until the block ends."""
    assert s.nats_url
    creds = credentials(s.nats_url, Role.WORKER)
    async with (
        connect(s, s.nats_url, "test-client") as bus,
        connect(s, s.nats_url, "test-worker", Role.WORKER, creds) as worker_bus,
    ):
        worker = Worker(worker_bus, registry_for(s))
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            yield SessionClient(bus, Interface.API), worker
        finally:
            stop.set()
            await running


async def _turn(client: SessionClient, sid: str, message: str) -> str:
    reply = ""
    async for item in client.turn(sid, message):
        if isinstance(item.event, AgentMessage):
            reply = item.event.content
        if isinstance(item.event, TurnCompleted):
            return reply
    raise AssertionError(f"the turn of {sid} did not complete")


async def _session(client: SessionClient, agent: str, **metadata: float) -> str:
    record, receipt = await client.create(agent, metadata=metadata)
    await client.wait(receipt)
    return record.session_id


async def test_a_session_in_a_fast_loop_does_not_keep_the_only_slot(
    one_slot: tuple[SessionClient, Worker],
) -> None:
    client, _ = one_slot
    hog, other = await _session(client, "echo"), await _session(client, "echo")
    other_done = asyncio.Event()

    async def fast_loop() -> int:
        turns = 0
        while not other_done.is_set() and turns < 5000:
            await _turn(client, hog, f"again {turns}")
            turns += 1
        return turns

    looping = asyncio.create_task(fast_loop())
    try:
        await _turn(client, hog, "warm")  # the loop's session is in the worker by now
        assert await _turn(client, other, "my turn") == "my turn"
        assert not looping.done(), "answered while the other session kept sending"
    finally:
        other_done.set()
        assert await looping > 0


async def test_a_command_waiting_for_a_busy_worker_waits_past_the_command_timeout(
    one_slot: tuple[SessionClient, Worker],
) -> None:
    client, worker = one_slot
    slow = await _session(client, "slow", pieces=20, delay=0.1)  # a 2 s turn
    waiting = await _session(client, "echo")
    busy = asyncio.create_task(_turn(client, slow, "take your time"))
    await asyncio.wait_for(worker.ctx.crowded.wait(), 10)  # the slow turn has the only slot
    # Not taken for about 2 s, twice the command timeout: the heartbeats say why.
    assert await _turn(client, waiting, "after you") == "after you"
    assert (await busy).startswith("w0 w1")
    assert any(w.busy for w in await client.workers())


@pytest.mark.slow
async def test_more_slots_than_sessions_no_command_is_given_up(
    nats: NatsServer, tmp_path: Path
) -> None:
    """1,000 sessions in closed loops on a worker with 1,024 slots, the clients' command
    timeout one second: a worker with free slots never says it is busy, and still no
    client gives up on a command a worker will run (they wait while workers are live)."""
    s = make_settings(nats.url, tmp_path, worker_concurrency=1024, command_timeout=1.0)
    async with _running(s) as (client, _):
        gate = asyncio.Semaphore(200)

        async def loop(i: int) -> list[str]:
            async with gate:
                sid = await _session(client, "echo")
            return [await _turn(client, sid, f"s{i} turn {t}") for t in range(2)]

        replies = await asyncio.wait_for(asyncio.gather(*(loop(i) for i in range(1000))), 240)
        assert all(r == [f"s{i} turn 0", f"s{i} turn 1"] for i, r in enumerate(replies)), (
            "every turn answered, in order"
        )


async def _writes(client: SessionClient, bucket: str) -> int:
    """Writes to a bucket so far, from the server."""
    info = await client.bus.js.stream_info(subjects.kv_stream(bucket))
    return info.state.last_seq


async def test_a_busy_worker_keeps_a_sessions_lease_between_its_turns(
    one_slot: tuple[SessionClient, Worker], nats: NatsServer
) -> None:
    """Two sessions in loops on one slot: each run ends after one turn (the other session
    waits for the slot), and the lease is kept, not released and claimed again; the
    session records listings read are written now and then, not after every turn; no
    subscription is made or removed per turn (the client's live ones and the worker's
    snapshot ones are kept)."""
    client, worker = one_slot
    s = client.bus.settings
    a, b = await _session(client, "echo"), await _session(client, "echo")
    await asyncio.gather(_turn(client, a, "warm"), _turn(client, b, "warm"))
    before = await _writes(client, s.leases_bucket)
    records_before = await _writes(client, s.sessions_bucket)
    subs_before = await asyncio.to_thread(_sub_changes, nats)
    turns = 20

    async def loop(sid: str) -> list[str]:
        return [await _turn(client, sid, f"{sid} {t}") for t in range(turns)]

    replies = await asyncio.gather(loop(a), loop(b))
    assert replies == [[f"{a} {t}" for t in range(turns)], [f"{b} {t}" for t in range(turns)]]
    changes = await asyncio.to_thread(_sub_changes, nats) - subs_before
    assert changes <= 4, f"{changes} subscriptions made or removed for {2 * turns} turns"
    writes = await _writes(client, s.leases_bucket)
    # Releasing and claiming again would be two writes per turn (80); renewing a lease
    # older than half its time to live is a write now and then.
    assert writes - before <= 4, f"{writes - before} lease writes for {2 * turns} turns"
    assert len(worker.ctx.kept) >= 1
    records = await _writes(client, s.sessions_bucket) - records_before
    assert records <= 2 * turns // 4, f"{records} record writes for {2 * turns} turns"

    async def listed() -> bool:
        found = {r.session_id: r.counters.turns for r in (await client.list_sessions()).items}
        return found.get(a) == found.get(b) == turns + 1

    await eventually(listed, what="the listing to catch up with the turns")


def _trigger(bus: Bus, sid: str) -> Msg:
    """A work message for ``sid`` as the pull consumer delivers it (its ack subject)."""
    ack = f"$JS.ACK.{bus.stream_of(sid)}.{bus.settings.consumer}.1.1.1.0.0"
    return Msg(bus.nc, subject=bus.inputs(sid), reply=ack, data=b"{}")


async def test_a_trigger_for_a_session_another_worker_holds_goes_to_that_worker(
    nats: NatsServer, tmp_path: Path
) -> None:
    """Worker B got a trigger of a session whose lease worker A holds: B hands it to A. A
    that keeps the lease between runs takes it and runs the session (its state is in A's
    cache); a draining A hands the lease over instead (B runs the session); A that
    neither runs nor keeps it says so (B hands the trigger back for later); a holder that
    does not answer is gone, and B learns when its lease expires."""
    s = make_settings(nats.url, tmp_path)
    async with _running(s) as (client, a), connect(s, s.nats_url, "worker-b") as bus_b:
        kv = client.bus.handles[0][1]  # partition 0's leases (the only one here)
        kept_sid = await _session(client, "echo")  # A's run lingers on it a moment
        b = Ownership(bus_b, kept_sid, "wrk_b")
        assert await b.claim(None) is None and b.held is not None
        assert b.held.worker_id == a.worker_id
        assert await b.forward(a.worker_id, [_trigger(bus_b, kept_sid)]) is True  # running

        async def released() -> bool:
            return await leases.holder(kv, kept_sid) is None

        await eventually(released, what="A's run to end and release the session")
        await _kept(kv, kept_sid, a)
        assert await b.claim(None) is None
        assert await b.forward(a.worker_id, [_trigger(bus_b, kept_sid)]) is True  # kept
        assert not a.ctx.kept.holds(kept_sid), "a run on A took the kept lease"
        await eventually(released, what="A's run to end and release the session")
        await _kept(kv, kept_sid, a)
        a._stopped = True  # draining: it takes no more work
        got = await b.forward(a.worker_id, [_trigger(bus_b, kept_sid)])
        a._stopped = False
        assert isinstance(got, leases.Lease) and got.worker_id == "wrk_b"
        assert await leases.holder(kv, kept_sid) == "wrk_b"
        assert not a.ctx.kept.holds(kept_sid), "A no longer keeps it"
        assert await leases.renew(kv, got), "B holds it as any claim would"

        held_sid = new_id("sess")  # held by A, which neither runs nor keeps it
        assert await leases.claim(kv, held_sid, a.worker_id) is not None
        neither = Ownership(bus_b, held_sid, "wrk_b")
        assert await neither.claim(None) is None
        assert await neither.forward(a.worker_id, [_trigger(bus_b, held_sid)]) is False
        assert await leases.holder(kv, held_sid) == a.worker_id

        dead = await leases.claim(kv, new_id("sess"), "wrk_that_died")
        assert dead is not None  # nobody answers for it: its lease expires
        asking = Ownership(bus_b, dead.session_id, "wrk_b")
        assert await asking.claim(None) is None
        trigger = _trigger(bus_b, dead.session_id)
        assert await asking.forward("wrk_that_died", [trigger]) is False
        # ... and it says when: the trigger comes back then, not after a backoff.
        assert asking.retry_after is not None
        assert 0 < asking.retry_after <= s.lease_ttl


def _sub_changes(nats: NatsServer) -> int:
    """Subscriptions made and removed on the server so far."""
    url = f"http://127.0.0.1:{nats.monitor_port}/subsz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        found = json.load(resp)
    return int(found.get("num_inserts", 0)) + int(found.get("num_removes", 0))


async def _kept(kv: Any, sid: str, worker: Worker) -> leases.Lease:
    """A lease of ``worker`` on ``sid``, kept between runs (as a busy worker keeps it)."""
    lease = await leases.claim(kv, sid, worker.worker_id)
    assert lease is not None
    worker.ctx.kept.keep(lease)
    return lease


async def test_with_two_workers_each_trigger_is_delivered_once(
    nats: NatsServer, tmp_path: Path
) -> None:
    """Sessions in closed loops on two workers: a trigger that reaches the worker not
    running its session is forwarded to the one that does, which acknowledges it, so
    work is neither handed back nor redelivered (it was, about 0.7 times a turn)."""
    s = make_settings(nats.url, tmp_path)
    async with _running(s) as (client, _), _running(s) as _:
        sids = [await _session(client, "echo") for _ in range(8)]
        js = client.bus.js

        async def delivered() -> int:
            info = await js.consumer_info(s.stream, s.consumer)
            return int(info.delivered.consumer_seq or 0)

        before, turns = await delivered(), 15

        async def loop(sid: str) -> list[str]:
            return [await _turn(client, sid, f"{sid} {t}") for t in range(turns)]

        replies = await asyncio.gather(*(loop(sid) for sid in sids))
        assert replies == [[f"{sid} {t}" for t in range(turns)] for sid in sids]
        deliveries = await delivered() - before
        assert deliveries <= len(sids) * turns * 1.05, f"{deliveries} for {8 * turns} turns"


async def test_a_draining_worker_releases_the_leases_it_keeps(
    nats: NatsServer, tmp_path: Path
) -> None:
    s = make_settings(nats.url, tmp_path)
    async with _running(s) as (client, worker):
        sid = new_id("sess")
        lease = await leases.claim(client.bus.leases_of(sid), sid, worker.worker_id)
        assert lease is not None
        worker.ctx.kept.keep(lease)
    async with connect(s, s.nats_url, "test-after") as bus:
        assert await leases.holder(bus.leases_of(sid), sid) is None


async def test_a_kept_lease_older_than_half_its_life_is_renewed_before_use(
    client: SessionClient,
) -> None:
    kv = client.bus.handles[0][1]  # partition 0's leases (the only one here)
    lease = await leases.claim(kv, new_id("sess"), "wrk_a")
    assert lease is not None
    own = Ownership(client.bus, lease.session_id, "wrk_a")
    revision = lease.revision
    assert await own.claim(None, kept=lease) is lease and lease.revision == revision, "young"
    lease.renewed_at -= client.bus.settings.lease_ttl / 2
    assert await own.claim(None, kept=lease) is lease and lease.revision > revision, "renewed"
    await leases.release(client.bus.nc, client.bus.settings.leases_bucket, lease, 5.0)
    lease.renewed_at -= client.bus.settings.lease_ttl  # and lost meanwhile
    fresh = await own.claim(None, kept=lease)
    assert fresh is not None and fresh is not lease, "a lost kept lease: a new claim"
