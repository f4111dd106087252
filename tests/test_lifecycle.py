"""Issue 7: the lifecycle on a real bus: expiry by timers on the bus, with no client
around; the state machine from every interface."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bus import IllegalTransitionError, SessionClient, Settings, direct, subjects
from schemas import SessionState, StateChanged, UserMessageAccepted
from tests.conftest import InProcessWorker, settled_session
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
