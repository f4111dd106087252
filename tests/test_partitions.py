"""A bus of several partition streams: where sessions live, who takes their work, growing
the bus under load, and what a service on the bus needs to find a session's partition."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from nats.js.api import StreamConfig, SubjectTransform

from praxis.bus import Bus, SessionClient, Settings, connect, subjects
from praxis.bus.errors import ProvisioningError
from praxis.bus.partitions import PartitionError, Partitions, in_partition
from praxis.bus.permissions import Role
from praxis.bus.state import load_head, load_state
from praxis.schemas import AgentMessage, Interface
from praxis.workers import Worker, registry_for
from tests.conftest import (
    EdgeProcess,
    InProcessWorker,
    credentials,
    env_for,
    eventually,
    make_settings,
    praxis,
    remnants,
    start_nats,
)

pytestmark = pytest.mark.partitions(3)
KV = ("praxis_sessions", "praxis_leases")


def ids_in_each(parts: Partitions, prefix: str) -> list[str]:
    """Chosen session ids, one hashed to each partition (FNV-1a: found, not hoped for)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < parts.hashed:
        sid = f"{prefix}-{i}"
        found.setdefault(parts.of(sid), sid)
        i += 1
    return [found[k] for k in sorted(found)]


async def where(bus: Bus, sid: str) -> list[str]:
    """The streams that hold anything of ``sid``."""
    found = []
    for k in bus.partitions.all():
        stream = bus.partitions.stream(k)
        info = await bus.js.stream_info(stream, subjects_filter=subjects.session_all(sid))
        if info.state.subjects:
            found.append(stream)
    return found


async def test_each_partition_is_a_stream_with_its_own_work_consumer(
    client: SessionClient, settings: Settings
) -> None:
    parts = client.bus.partitions
    assert (parts.count, parts.hashed) == (3, 3)
    for k in parts.all():
        info = await client.bus.js.stream_info(parts.stream(k))
        want = [subjects.input_wildcard(k), subjects.output_wildcard(k)]
        assert sorted(info.config.subjects or []) == sorted(want)
        consumer = await client.bus.js.consumer_info(parts.stream(k), settings.consumer)
        assert consumer.config.filter_subject == subjects.input_wildcard(k)
    first = await client.bus.js.stream_info(parts.stream(0))
    assert (first.config.metadata or {}).items() >= parts.metadata().items()


async def test_sessions_live_in_their_partition_and_list_across_all(
    client: SessionClient, worker: InProcessWorker
) -> None:
    bus = client.bus
    chosen = ids_in_each(bus.partitions, "customer")
    made = [
        *[await client.create("echo", session_id=sid, task_id="spread") for sid in chosen],
        *[await client.create("echo", task_id="spread") for _ in range(30)],
    ]
    for record, receipt in made:
        await client.wait(receipt)
        reply = await client.wait(await client.send(record.session_id, "hello"))
        assert [e.content for e in reply if isinstance(e, AgentMessage)] == ["hello"]
    sids = [record.session_id for record, _ in made]
    spread = Counter(bus.partition(sid) for sid in sids)
    assert set(spread) == {0, 1, 2}, spread
    for sid in sids:
        k = bus.partition(sid)
        mine = {bus.stream_of(sid), *(f"KV_{in_partition(b, k)}" for b in KV)}
        held = set(await remnants(client, sid))
        assert {bus.stream_of(sid), f"KV_{in_partition('praxis_sessions', k)}"} <= held <= mine
    listed: list[str] = []
    cursor = None
    while True:
        page = await client.list_sessions(task_id="spread", limit=7, cursor=cursor)
        listed += [r.session_id for r in page.items]
        if not (cursor := page.next_cursor):
            break
    assert sorted(listed) == sorted(sids) and len(listed) == len(set(listed))


async def test_an_id_naming_a_partition_the_bus_lacks_is_refused_and_nothing_stored(
    client: SessionClient,
) -> None:
    sid = "ses_0192f3a4b5c6d7e8f9a0b1c2-p9"
    with pytest.raises(PartitionError, match="names partition 9; this deployment has 3"):
        await client.create("echo", session_id=sid)
    assert await where(client.bus, sid) == []


async def test_a_worker_limited_to_partitions_takes_only_their_work(
    client: SessionClient, start_worker: Callable[..., Awaitable[InProcessWorker]]
) -> None:
    one = await start_worker(worker_partitions=[1])
    rest = await start_worker(worker_partitions=[0, 2])
    sids = ids_in_each(client.bus.partitions, "local")
    for sid in sids:
        await client.wait((await client.create("echo", session_id=sid, initial_message="x"))[1])
    owners = []
    for sid in sids:
        found = await load_state(client.bus, sid)
        assert found is not None
        owners.append(found[0].owner)
    ids = one.worker.worker_id, rest.worker.worker_id
    assert owners == [ids[1], ids[0], ids[1]]


async def test_nats_own_partition_transform_agrees(bus: Bus) -> None:
    """A service on the bus may let the server place ids: ``partition(n, 1)`` hashes as
    Praxis does (FNV-1a of the token, modulo n)."""
    parts = Partitions("PRAXIS", 3, 3)
    probe = StreamConfig(
        name="PROBE_PARTITIONS",
        subjects=["probe.*"],
        subject_transform=SubjectTransform(
            src="probe.*", dest="probe.{{wildcard(1)}}.{{partition(3,1)}}"
        ),
    )
    await bus.js.add_stream(probe)
    try:
        ids = [f"chosen-{i}" for i in range(40)] + ["ses_0192f3a4b5c6d7e8f9a0b1c2"]
        for sid in ids:
            await bus.js.publish(f"probe.{sid}", b"")
        info = await bus.js.stream_info(probe.name or "", subjects_filter=">")
        placed = {s.split(".")[1]: int(s.split(".")[2]) for s in info.state.subjects or {}}
        assert placed == {sid: parts.of(sid) for sid in ids}
    finally:
        await bus.js.delete_stream(probe.name or "")


@asynccontextmanager
async def _worker(settings: Settings, url: str) -> AsyncIterator[Worker]:
    async with connect(
        settings, url, "test-worker", Role.WORKER, credentials(url, Role.WORKER)
    ) as bus:
        worker = Worker(bus, registry_for(settings))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await task


async def test_growing_the_bus_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_nats, tmp_path / "nats")  # one partition
    try:
        url = server.url
        settings = make_settings(url, tmp_path)
        async with connect(settings, url, "test-client") as bus, _worker(settings, url):
            client = SessionClient(bus, Interface.API)
            assert bus.partitions.count == 1
            growing = asyncio.Event()
            turns: dict[str, list[str]] = {}

            async def loop(sid: str, rounds: int) -> None:
                sent = turns.setdefault(sid, [])
                for i in range(rounds):
                    text = f"{sid}-{i}"
                    reply = await client.wait(await client.send(sid, text))
                    assert [e.content for e in reply if isinstance(e, AgentMessage)] == [text]
                    sent.append(text)
                    if i == 3:
                        growing.set()

            async def session() -> str:
                record, receipt = await client.create("echo")
                await client.wait(receipt)
                return record.session_id

            before = [await session() for _ in range(4)]
            running = [asyncio.create_task(loop(sid, 40)) for sid in before]
            await growing.wait()
            grown = settings.model_copy(update={"partitions": 3})
            async with connect(grown, url, "test-provision") as admin:  # 'bus provision'
                assert admin.partitions == Partitions("PRAXIS", 3, 1)

            async def seen() -> bool:
                return bus.partitions.count == 3

            await eventually(seen, what="the client to see the grown bus", timeout=15)
            after = [await session() for _ in range(12)]
            assert {bus.partition(sid) for sid in after} >= {1, 2}
            assert {bus.partition(sid) for sid in before} == {0}  # they did not move
            running += [asyncio.create_task(loop(sid, 10)) for sid in after]
            await asyncio.wait_for(asyncio.gather(*running), timeout=60)
            for sid, sent in turns.items():
                history = [h.content for h in await client.history(sid, limit=200)]
                assert history == [t for text in sent for t in (text, text)], sid
    finally:
        server.stop()


async def test_provision_grows_and_never_shrinks_and_status_shows_each_partition(
    tmp_path: Path,
) -> None:
    server = await asyncio.to_thread(start_nats, tmp_path / "nats", provision=False)
    try:
        env = env_for(make_settings(server.url, tmp_path))
        made = await asyncio.to_thread(praxis, env, "bus", "provision", "--partitions", "2")
        assert made.returncode == 0, made.stderr
        assert "2 partitions (streams PRAXIS, PRAXIS_1" in made.stdout
        status = await asyncio.to_thread(praxis, env, "status", "--json")
        assert status.returncode == 0, status.stderr
        found = json.loads(status.stdout)
        assert [p["name"] for p in found["partitions"]] == ["PRAXIS", "PRAXIS_1"]
        assert all(p["waiting"] == 0 for p in found["partitions"])
        smaller = await asyncio.to_thread(praxis, env, "bus", "provision", "--partitions", "1")
        assert smaller.returncode != 0
        assert "partitions cannot be removed" in smaller.stderr
        settings = make_settings(server.url, tmp_path, partitions=1)
        with pytest.raises(ProvisioningError, match="has 2 partitions and PRAXIS_PARTITIONS"):
            async with connect(settings, server.url, "shrink"):
                pass
        more = make_settings(server.url, tmp_path, partitions=3)
        creds = credentials(server.url, Role.WORKER)
        with pytest.raises(ProvisioningError, match="grow it with admin credentials"):
            async with connect(more, server.url, "grow", Role.WORKER, creds):
                pass
    finally:
        server.stop()


async def test_the_edge_refuses_an_id_naming_a_missing_partition(
    edge: EdgeProcess, client: SessionClient
) -> None:
    sid = "ses_0192f3a4b5c6d7e8f9a0b1c2-p5"
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{edge.url}/agent-sessions/create", json={"agent_name": "echo", "session_id": sid}
        )
        assert r.status_code == 400, r.text
        assert "names partition 5; this deployment has 3" in r.json()["detail"]
        r = await http.get(f"{edge.url}/agent-sessions/{sid}")
        assert r.status_code == 400 and "names partition 5" in r.json()["detail"]
    assert await remnants(client, sid) == {}


async def test_a_bus_made_before_partitions_is_one_and_grows_with_its_sessions(
    tmp_path: Path,
) -> None:
    server = await asyncio.to_thread(start_nats, tmp_path / "nats")
    try:
        url = server.url
        settings = make_settings(url, tmp_path)
        async with connect(settings, url, "before") as bus, _worker(settings, url):
            client = SessionClient(bus, Interface.API)
            record, receipt = await client.create("echo", initial_message="before")
            await client.wait(receipt)
            sid = record.session_id
            head = await load_head(bus, sid)
            assert head is not None
            cursor = head[1]  # a cursor given out before the upgrade
            # As a release before partitions left its stream: nothing of them in it.
            config = (await bus.js.stream_info("PRAXIS")).config
            kept = {k: v for k, v in (config.metadata or {}).items() if "praxis" not in k}
            config.metadata = kept
            await bus.js.update_stream(config)
        grown = settings.model_copy(update={"partitions": 2})
        async with connect(grown, url, "upgraded") as bus, _worker(settings, url):
            assert bus.partitions == Partitions("PRAXIS", 2, 1)  # ids it knew stay in 0
            client = SessionClient(bus, Interface.API)
            assert bus.partition(sid) == 0
            await client.wait(await client.send(sid, "after"))
            history = await client.history(sid)
            assert [h.content for h in history] == ["before", "before", "after", "after"]
            later = await client.history(sid, after=cursor)
            assert [h.content for h in later] == ["after", "after"]
    finally:
        server.stop()


async def test_workers_share_the_partitions_and_take_them_over_when_one_stops(
    client: SessionClient, start_worker: Callable[..., Awaitable[InProcessWorker]]
) -> None:
    a, b = await start_worker(), await start_worker()
    ids = a.worker.worker_id, b.worker.worker_id

    async def taken() -> dict[str, list[int]]:
        return {w.worker_id: w.partitions for w in await client.workers()}

    async def shared() -> bool:
        now = await taken()
        return all(now.get(i) for i in ids) and sorted(now[ids[0]] + now[ids[1]]) == [0, 1, 2]

    await eventually(shared, what="the two workers to share the partitions out")
    sids = ids_in_each(client.bus.partitions, "shared")
    for sid in sids:
        await client.wait((await client.create("echo", session_id=sid, initial_message="x"))[1])
    now = await taken()
    for sid in sids:  # each session ran on the worker whose partition it is in
        found = await load_state(client.bus, sid)
        assert found is not None and found[0].owner is not None
        assert client.bus.partition(sid) in now[found[0].owner], (sid, now)

    await b.stop()

    async def alone() -> bool:
        return (await taken()).get(ids[0]) == [0, 1, 2]

    await eventually(alone, what="the other worker to take every partition")
    for sid in sids:
        reply = await client.wait(await client.send(sid, "still answered"))
        assert [e.content for e in reply if isinstance(e, AgentMessage)] == ["still answered"]
