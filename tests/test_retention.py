"""Issue 7: clean-up. ``praxis agent cleanup`` and the workers' automatic retention purge
old sessions (after an optional export) and leave nothing of them on the bus; one worker
sweeps at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from praxis.bus import SessionClient, SessionNotFoundError, Settings, leases
from praxis.bus.retention import SweepLock
from praxis.bus.transfer import Conversation
from praxis.schemas import SessionState
from tests.conftest import (
    InProcessWorker,
    WorkerProcess,
    env_for,
    eventually,
    live_workers,
    praxis,
    remnants,
    settled_session,
)


async def _state(client: SessionClient, sid: str) -> SessionState | None:
    try:
        return (await client.get(sid)).state
    except SessionNotFoundError:
        return None


async def _unleased(client: SessionClient, *sids: str) -> bool:
    return all([await leases.holder(client.bus.leases_of(s), s) is None for s in sids])


async def _ended_sessions(client: SessionClient) -> tuple[str, str]:
    """A completed session with a conversation and an expired one, their leases free."""
    done = await settled_session(client, "echo")
    await client.wait(await client.send(done, "keep this"))
    await client.complete(done)
    expired = await settled_session(client, "echo", idle_timeout=0.5)

    async def ended() -> bool:
        return await _state(client, expired) is SessionState.EXPIRED

    await eventually(ended, what="the session to expire")
    await eventually(lambda: _unleased(client, done, expired), what="the worker to let go")
    return done, expired


def _rows(stdout: str, *sids: str) -> dict[str, dict[str, str]]:
    """The cleanup's JSON rows for these sessions (the server is shared within a module)."""
    return {r["session_id"]: r for r in json.loads(stdout) if r["session_id"] in sids}


async def test_cleanup_exports_then_purges_ended_sessions_only(
    client: SessionClient, worker: InProcessWorker, settings: Settings, tmp_path: Path
) -> None:
    done, expired = await _ended_sessions(client)
    live = await settled_session(client, "echo")
    paused = await settled_session(client, "echo")
    await client.suspend(paused)
    await eventually(lambda: _unleased(client, live, paused), what="the worker to let go")
    env = env_for(settings)

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return asyncio.to_thread(praxis, env, "agent", "cleanup", "--json", *args)

    dry = await cli("--older-than", "0", "--state", "any", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    rows = _rows(dry.stdout, done, expired, live, paused)
    assert {s: r["action"] for s, r in rows.items()} == dict.fromkeys(
        (done, expired, live, paused), "would purge"
    )
    assert all([await _state(client, s) for s in (done, expired, live, paused)])

    young = await cli("--older-than", "1h")
    assert _rows(young.stdout, done, expired) == {}  # they ended just now

    exports = tmp_path / "exports"
    ran = await cli("--older-than", "0", "--export", str(exports))
    assert ran.returncode == 0, ran.stderr
    rows = _rows(ran.stdout, done, expired, live, paused)
    assert {s: r["action"] for s, r in rows.items()} == {done: "purged", expired: "purged"}
    assert rows[done]["state"] == "COMPLETED" and rows[expired]["state"] == "EXPIRED"
    for sid in (done, expired):
        assert await remnants(client, sid) == {}, sid
        assert await _state(client, sid) is None
        assert rows[sid]["exported"] == str(exports / f"{sid}.jsonl")
    assert await _state(client, live) is SessionState.ACTIVE
    assert await _state(client, paused) is SessionState.SUSPENDED

    line = (exports / f"{done}.jsonl").read_text(encoding="utf-8")
    conv = Conversation.model_validate_json(line)
    assert [m.text for m in conv.messages][-2:] == ["keep this", "keep this"]
    assert not list(exports.glob("*.part"))
    # The export brings the conversation back.
    back = await asyncio.to_thread(praxis, env, "agent", "import", str(exports / f"{done}.jsonl"))
    assert back.returncode == 0, back.stderr
    assert [h.content for h in await client.history(done)][-2:] == ["keep this", "keep this"]


async def test_cleanup_skips_a_session_a_worker_holds_and_fails_cleanly(
    client: SessionClient, worker: InProcessWorker, settings: Settings, tmp_path: Path
) -> None:
    done, _ = await _ended_sessions(client)
    held = await leases.claim(client.bus.leases_of(done), done, "wrk_busy")
    assert held is not None

    async def hold() -> None:  # the lease lives 2 s here: keep it while the CLI runs
        while await leases.renew(client.bus.leases_of(done), held):  # noqa: ASYNC110 (a heartbeat)
            await asyncio.sleep(0.3)

    holding = asyncio.create_task(hold())
    env = env_for(settings)
    ran = await asyncio.to_thread(praxis, env, "agent", "cleanup", "--older-than", "0")
    holding.cancel()
    assert ran.returncode == 0, ran.stderr
    assert f"skipped {done}: worker wrk_busy is working on it" in ran.stderr
    assert await _state(client, done) is SessionState.COMPLETED

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    bad = await asyncio.to_thread(
        praxis, env, "agent", "cleanup", "--older-than", "0", "--export", str(not_a_dir / "x")
    )
    assert bad.returncode == 1 and bad.stderr.startswith("praxis: error:"), bad.stderr
    assert "Traceback" not in bad.stderr
    bad_state = await asyncio.to_thread(praxis, env, "agent", "cleanup", "--state", "OLD")
    assert bad_state.stderr.startswith("praxis: error: unknown state 'OLD'")


async def test_one_sweeper_at_a_time_and_once_per_interval(
    client: SessionClient, settings: Settings
) -> None:
    first = await SweepLock.open(client.bus.js, settings, "wrk_a")
    second = await SweepLock.open(client.bus.js, settings, "wrk_b")
    # Whoever won an earlier test's sweep: start from a lock nobody holds.
    await eventually(lambda: first.acquire(interval=0, stale=60), what="a free sweep lock")
    assert not await second.acquire(interval=0, stale=60)  # held
    assert await first.beat()
    await first.release(finished=True)
    assert not await second.acquire(interval=3600, stale=60)  # swept just now
    assert await second.acquire(interval=0, stale=60)
    # A holder that stopped showing life is taken over, and learns it on its next beat.
    assert await first.acquire(interval=0, stale=0)
    assert not await second.beat()
    await first.release(finished=False)
    # Two at once: exactly one gets it.
    got = await asyncio.gather(
        first.acquire(interval=0, stale=60), second.acquire(interval=0, stale=60)
    )
    assert sorted(got) == [False, True]


async def test_workers_purge_ended_sessions_on_their_own(
    client: SessionClient,
    worker_processes: Callable[..., list[WorkerProcess]],
    tmp_path: Path,
) -> None:
    """Two workers with a 1 s retention and a 1 s interval: the ended sessions are
    exported and purged with nobody asking; each by one worker, once; the live one stays."""
    exports = tmp_path / "exports"
    procs = worker_processes(
        2,
        PRAXIS_SESSION_RETENTION="1",
        PRAXIS_RETENTION_INTERVAL="1",
        PRAXIS_EXPORT_DIR=str(exports),
    )
    await live_workers(client, 2)
    done, expired = await _ended_sessions(client)
    live = await settled_session(client, "echo")

    async def purged() -> bool:
        return all([await remnants(client, s) == {} for s in (done, expired)])

    await eventually(purged, timeout=30, what="the workers to purge the ended sessions")
    assert {f"{done}.jsonl", f"{expired}.jsonl"} <= {p.name for p in exports.iterdir()}
    assert await _state(client, live) is SessionState.ACTIVE
    logs = "".join(p.log.read_text(errors="replace") for p in procs)
    for sid in (done, expired):
        assert logs.count(f"retention: purged {sid}") == 1, logs
