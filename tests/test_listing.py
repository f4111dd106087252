"""The session records listings read: coalesced while a session is in use (only the newest
of a burst is written), a change of state written at once, what is held back written when
its run ends, and never a record older than the stored one written over it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from praxis.bus import SessionClient, subjects
from praxis.schemas import SessionRecord, SessionState, new_id
from praxis.schemas.records import Counters
from praxis.workers.session.listing import Listing


def _record(sid: str, events: int, state: SessionState = SessionState.ACTIVE) -> SessionRecord:
    now = datetime.now(UTC)
    return SessionRecord(
        session_id=sid,
        task_id="task_listing",
        agent="echo",
        state=state,
        created_at=now,
        updated_at=now,
        counters=Counters(events=events, turns=events // 4),
    )


async def _writes(client: SessionClient) -> int:
    info = await client.bus.js.stream_info(subjects.kv_stream(client.bus.settings.sessions_bucket))
    return info.state.last_seq


async def _stored(client: SessionClient, sid: str) -> SessionRecord:
    entry = await client.bus.records_of(sid).get(sid)
    return SessionRecord.model_validate_json(entry.value or b"")


async def test_a_session_in_use_writes_the_newest_of_a_burst_and_a_state_change_at_once(
    client: SessionClient,
) -> None:
    listing = Listing(client.bus)
    sid = new_id("sess")
    listing.write(_record(sid, 1))  # the first: at once
    await listing.flush(sid)
    before = await _writes(client)
    for events in range(2, 12):  # only counters move: held back
        listing.write(_record(sid, events))
    assert listing.pending == 1
    assert (await _stored(client, sid)).counters.events == 1
    listing.write(_record(sid, 12, SessionState.SUSPENDED))  # what listings filter on
    await listing.flush(sid)
    assert (await _stored(client, sid)).state is SessionState.SUSPENDED
    assert await _writes(client) - before == 1, "one write for eleven records"
    listing.write(_record(sid, 13, SessionState.SUSPENDED))
    await listing.flush()  # a run that ends (or a draining worker) writes what it held back
    assert (await _stored(client, sid)).counters.events == 13


async def test_a_session_whose_runs_end_writes_every_record(client: SessionClient) -> None:
    """Each run's end flushes its session's record: a session used now and then is listed
    as it is."""
    listing = Listing(client.bus)
    sid = new_id("sess")
    before = await _writes(client)
    for events in (1, 2, 3):
        listing.write(_record(sid, events))
        await listing.flush(sid)
        assert (await _stored(client, sid)).counters.events == events
    assert await _writes(client) - before == 3


async def test_a_late_record_never_goes_over_a_newer_one(client: SessionClient) -> None:
    """An older owner's record, late, is not written over the one a newer owner wrote."""
    sid = new_id("sess")
    old, new = Listing(client.bus), Listing(client.bus)
    old.write(_record(sid, 4))
    await old.flush()
    new.write(_record(sid, 9))
    await new.flush()
    old.write(_record(sid, 6))  # its revision is stale: it reads the stored one, newer
    await old.flush()
    assert (await _stored(client, sid)).counters.events == 9
    old.write(_record(sid, 10))  # newer than what is stored: written
    await old.flush()
    assert (await _stored(client, sid)).counters.events == 10


async def test_a_state_change_of_the_record_being_written_is_written_too(
    client: SessionClient,
) -> None:
    """The record a worker passes is its session's own, and changes with it while its
    write is on the way: what is compared with the next one is what was written then (an
    ACTIVE seen as already stored, while CREATED was, stayed unlisted)."""
    listing = Listing(client.bus)
    sid = new_id("sess")
    record = _record(sid, 1, SessionState.CREATED)
    listing.write(record)
    await asyncio.sleep(0)  # its write is under way...
    record.state = SessionState.ACTIVE  # ... and the session moves on meanwhile
    record.counters = Counters(events=2)
    await listing.flush(sid)
    assert (await _stored(client, sid)).state is SessionState.CREATED  # what was written
    listing.write(record)  # a state change since: its write starts at once
    await asyncio.sleep(0)  # (the write under way has taken its record)
    assert listing.pending == 0, "held back, as if ACTIVE were what was stored"
    await listing.flush(sid)
    assert (await _stored(client, sid)).state is SessionState.ACTIVE
