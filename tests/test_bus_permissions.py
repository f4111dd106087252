"""Issue 9: each component logs in to NATS as its own user, allowed its job only.

Every other test runs its workers and edges as their roles (conftest), which shows that the
permissions are enough; here the server refuses what each role may not do, a service drives
sessions with its own credentials, and the embedded server takes no anonymous client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats as nats_py
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from praxis.bus import NotConnectedError, SessionClient, Settings, connect
from praxis.bus import keys as api_keys
from praxis.bus.credentials import Credentials, new_seed
from praxis.bus.embedded import NatsServer, ensure_server, free_port
from praxis.bus.permissions import Role, inbox_prefix
from praxis.schemas import SessionState, TokenDelta
from tests.conftest import (
    InProcessWorker,
    credentials,
    fresh_env,
    make_settings,
    praxis,
    start_nats,
    stored_events,
)

SECRET_KEY = "$KV.praxis_keys.key_forged"


async def login(server: NatsServer, role: Role) -> tuple[Client, asyncio.Queue[str]]:
    """A raw connection as ``role``; the server's refusals arrive on the queue."""
    refusals: asyncio.Queue[str] = asyncio.Queue()

    async def on_error(e: Exception) -> None:
        refusals.put_nowait(str(e).lower())

    nc = await nats_py.connect(
        server.url,
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix=inbox_prefix(role),
        **credentials(server.url, role).options(),
    )
    return nc, refusals


async def refused(refusals: asyncio.Queue[str], action: str, subject: str) -> None:
    """Wait (bounded) for the server to refuse ``action`` on ``subject``."""
    want = f'permissions violation for {action} to "{subject.lower()}"'
    async with asyncio.timeout(5):
        while True:
            got = await refusals.get()
            if want in got:
                return


# What each role may not do, though a compromised one would want to.
FORBIDDEN_PUBLISH = {
    Role.EDGE: [
        "sess.{sid}.out.evt",  # forge an event
        "sess.{sid}.out.ckpt",  # forge a snapshot
        "sess.{sid}.p2.out.evt",  # in another partition
        "live.{sid}",  # forge live text
        "$KV.praxis_leases.{sid}",  # take a session's lease
        "$JS.API.CONSUMER.MSG.NEXT.PRAXIS.praxis-workers",  # take work
        "$JS.API.CONSUMER.MSG.NEXT.PRAXIS_5.praxis-workers",
        "$JS.API.STREAM.DELETE.PRAXIS",
        "$JS.API.STREAM.PURGE.PRAXIS",  # a worker purges a session for it (DELETE)
        "$JS.API.STREAM.PURGE.PRAXIS_1",
        "$JS.API.STREAM.UPDATE.PRAXIS",
        "$JS.API.CONSUMER.DELETE.PRAXIS.praxis-workers",
        SECRET_KEY,  # mint an API key
        "_INBOX.x",  # answer someone else's request
    ],
    Role.WORKER: [
        "sess.{sid}.in",  # forge a command
        "sess.{sid}.p3.in",
        "snap.{sid}",
        SECRET_KEY,
        "$JS.API.DIRECT.GET.KV_praxis_keys",  # read key hashes
        "$JS.API.STREAM.DELETE.PRAXIS",
        "$JS.API.STREAM.UPDATE.PRAXIS",
        "$JS.API.STREAM.CREATE.PRAXIS_7",  # grow the bus
        "$JS.API.CONSUMER.CREATE.PRAXIS",
        "_INBOX_edge.x",  # answer the edge's requests
    ],
    Role.SERVICE: [
        "sess.{sid}.out.evt",
        "sess.{sid}.p1.out.ckpt",
        "live.{sid}",
        "$KV.praxis_leases.{sid}",
        "$JS.API.STREAM.PURGE.PRAXIS",
        "praxis.purge",  # nor ask a worker to
        "$JS.API.STREAM.DELETE.PRAXIS",
        SECRET_KEY,
        "$JS.API.DIRECT.GET.KV_praxis_keys",
        "$JS.API.CONSUMER.MSG.NEXT.PRAXIS.praxis-workers",
        # No consumer per follower: each costs the server memory and counts against the
        # stream's cap on consumers. A service follows by live notices and direct get.
        "$JS.API.CONSUMER.CREATE.PRAXIS",
    ],
}
FORBIDDEN_SUBSCRIBE = {
    Role.EDGE: [">", "sess.>", "sess.*.in", "$KV.>", "_INBOX.>", "_INBOX_worker.>", "snap.*"],
    Role.WORKER: [">", "sess.*.out.>", "live.*", "_INBOX.>", "_INBOX_edge.>", "$JS.API.>"],
    Role.SERVICE: [">", "sess.>", "_INBOX_edge.>", "_INBOX_worker.>", "snap.*", "$KV.>"],
}


@pytest.mark.parametrize("role", [Role.EDGE, Role.WORKER, Role.SERVICE])
async def test_the_server_refuses_what_a_role_may_not_do(
    nats: NatsServer, client: SessionClient, role: Role
) -> None:
    record, _ = await client.create("echo")
    sid = record.session_id
    before = await stored_events(client, sid)
    stream = client.bus.stream_of(sid)
    stream_before = (await client.bus.js.stream_info(stream)).state.messages
    nc, refusals = await login(nats, role)
    try:
        for pattern in FORBIDDEN_PUBLISH[role]:
            subject = pattern.format(sid=sid)
            await nc.publish(subject, json.dumps({"type": "forged"}).encode())
            await refused(refusals, "publish", subject)
        for subject in FORBIDDEN_SUBSCRIBE[role]:
            await nc.subscribe(subject)
            await refused(refusals, "subscription", subject)
    finally:
        await nc.close()
    # Nothing was stored, nothing was removed; the bus is as it was.
    assert await stored_events(client, sid) == before
    info = await client.bus.js.stream_info(stream)
    assert info.state.messages == stream_before
    assert await client.bus.js.consumer_info(stream, client.bus.settings.consumer)
    with pytest.raises(KeyNotFoundError):
        await (await api_keys.bucket(client.bus)).get(SECRET_KEY.rpartition(".")[2])


async def test_a_service_drives_sessions_with_its_own_credentials(
    nats: NatsServer, worker: InProcessWorker, tmp_path: Path
) -> None:
    """What a pipeline needs: create, talk, follow, read, list; with the service user."""
    settings = make_settings(nats.url, tmp_path)
    creds = credentials(nats.url, Role.SERVICE)
    async with connect(settings, nats.url, "billing", Role.SERVICE, creds) as bus:
        svc = SessionClient(bus, actor="billing")
        record, receipt = await svc.create("echo", task_id="invoice-7")
        await svc.wait(receipt)
        deltas = [
            d.event.text
            async for d in svc.turn(record.session_id, "total?")
            if isinstance(d.event, TokenDelta)
        ]
        text = "".join(deltas)
        assert text == "total?"
        assert [h.content for h in await svc.history(record.session_id)] == ["total?", "total?"]
        assert [r.session_id for r in (await svc.list_sessions(task_id="invoice-7")).items] == [
            record.session_id
        ]
        assert (await svc.suspend(record.session_id)).state is SessionState.SUSPENDED
        # Removing a session is an admin's or the edge's job, not a service's: the server
        # refuses the request (it goes unanswered) and the session stays.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2):
                await svc.purge(record.session_id)
        assert (await svc.get(record.session_id)).state is SessionState.SUSPENDED


async def test_a_worker_or_edge_does_not_create_the_stream(tmp_path: Path) -> None:
    """Only an admin provisions: another role finds the bus unprovisioned and says so."""
    server = start_nats(tmp_path, provision=False)
    try:
        settings = make_settings(server.url, tmp_path)
        for role in (Role.WORKER, Role.EDGE, Role.SERVICE):
            with pytest.raises(Exception, match="praxis bus provision"):
                async with connect(settings, server.url, "x", role, credentials(server.url, role)):
                    pass
        async with connect(
            settings, server.url, "admin", Role.ADMIN, credentials(server.url, Role.ADMIN)
        ):
            pass
        async with connect(
            settings, server.url, "w", Role.WORKER, credentials(server.url, Role.WORKER)
        ) as bus:
            assert (await bus.js.stream_info(bus.settings.stream)).config.name == "PRAXIS"
    finally:
        server.stop()


async def test_the_embedded_server_takes_no_client_without_credentials(tmp_path: Path) -> None:
    """The embedded server starts with a user per role (seeds readable by their owner
    only); the CLI logs in as admin, an anonymous client or an unknown key is refused with
    a clear error."""
    env = fresh_env(tmp_path)
    settings = make_settings("", tmp_path / "data")
    embedded = await asyncio.to_thread(ensure_server, settings, True)
    try:
        ran = await asyncio.to_thread(praxis, env, "agent", "run", "echo", "--message", "hi")
        assert ran.returncode == 0, ran.stderr
        assert "hi" in ran.stdout
        auth = tmp_path / "data" / "nats" / "auth"
        assert sorted(p.name for p in auth.iterdir()) == [
            "admin.nk",
            "auth.conf",
            "edge.nk",
            "service.nk",
            "worker.nk",
        ]
        assert all((auth / f"{r.value}.nk").stat().st_mode & 0o077 == 0 for r in Role)
        with pytest.raises(NotConnectedError, match="requires credentials"):
            async with connect(settings, embedded.url, "anonymous", credentials=Credentials()):
                pass
        stranger = tmp_path / "stranger.nk"
        stranger.write_bytes(new_seed())
        with pytest.raises(NotConnectedError, match="refused these credentials"):
            async with connect(
                settings, embedded.url, "stranger", credentials=Credentials(nkey_seed=stranger)
            ):
                pass
    finally:
        await asyncio.to_thread(embedded.release, frozenset(), True)


async def test_your_own_server_with_the_credentials_praxis_writes(tmp_path: Path) -> None:
    """The README's way for a server of your own: 'praxis bus credentials DIR', include
    DIR/auth.conf, 'praxis bus provision' with the admin seed; then a worker logs in with
    its seed and works, and nobody gets in without one."""
    env = fresh_env(tmp_path)
    made = await asyncio.to_thread(praxis, env, "bus", "credentials", str(tmp_path / "creds"))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(tmp_path / "creds" / "auth.conf")
    port = free_port()
    main = tmp_path / "server.conf"
    main.write_text(f"host: 127.0.0.1\nport: {port}\ninclude creds/auth.conf\n")
    server = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log", config=main)
    server.port = port
    await asyncio.to_thread(server.start)
    try:
        env["PRAXIS_NATS_URL"] = server.url
        as_worker = {**env, "PRAXIS_NATS_NKEY_SEED": str(tmp_path / "creds" / "worker.nk")}
        early = await asyncio.to_thread(praxis, as_worker, "bus", "provision")
        assert early.returncode == 1 and "praxis bus provision" in early.stderr
        as_admin = {**env, "PRAXIS_NATS_NKEY_SEED": str(tmp_path / "creds" / "admin.nk")}
        done = await asyncio.to_thread(praxis, as_admin, "bus", "provision")
        assert done.returncode == 0, done.stderr
        anonymous = await asyncio.to_thread(praxis, env, "workers")
        assert anonymous.returncode == 1 and "requires credentials" in anonymous.stderr
        settings = Settings(nats_url=server.url, data_dir=tmp_path)  # as provisioned
        worker_seed = Credentials(nkey_seed=tmp_path / "creds" / "worker.nk")
        async with connect(settings, server.url, "w", Role.WORKER, worker_seed) as bus:
            assert (await bus.js.stream_info(bus.settings.stream)).config.name == "PRAXIS"
    finally:
        server.stop()
