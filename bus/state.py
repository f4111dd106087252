"""Loading a session's state: the latest snapshot plus the events stored after it.

A session exists from the moment its ``create_session`` command is stored; until a worker
has written its first event, readers see it as that command makes it (``CREATED``, no
events: cursor 0). Workers, who write that first event, ask without (``include_pending=False``).
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.errors import NotFoundError
from pydantic import ValidationError

from praxis.bus import direct, subjects
from praxis.bus.connection import Bus
from praxis.schemas import (
    Checkpoint,
    Command,
    CreateSession,
    Event,
    decode_command,
    decode_record,
    fold,
    record_seq,
    upgrade,
)
from praxis.schemas.events import SessionCreated, created_by
from praxis.schemas.fold import start

log = logging.getLogger(__name__)


async def load_head(
    bus: Bus, session_id: str, *, include_pending: bool = True
) -> tuple[Event, int] | None:
    """The session's latest event and its id (one read), or ``None`` if unknown."""
    p = bus.partition(session_id)
    last = await direct.last_by_subject(
        bus.nc, bus.partitions.stream(p), subjects.events(session_id, p), bus.timeout
    )
    if last is None:
        created = await pending_create(bus, session_id) if include_pending else None
        return None if created is None else (created, 0)
    eid, event = decode_record(last.seq, last.data)[-1]
    return event, eid


async def read_events(
    bus: Bus, session_id: str, *, after: int, up_to: int | None = None
) -> list[tuple[int, Event]]:
    """The session's stored events with ``after < id <= up_to``, in order."""
    p = bus.partition(session_id)
    stored = await direct.read_subject(
        bus.nc,
        bus.partitions.stream(p),
        subjects.events(session_id, p),
        after=max(0, record_seq(after) - 1),
        up_to=None if up_to is None else record_seq(up_to),
        timeout=bus.timeout,
    )
    return [
        (i, e)
        for m in stored
        for i, e in decode_record(m.seq, m.data)
        if i > after and (up_to is None or i <= up_to)
    ]


async def first_command(bus: Bus, session_id: str) -> Command | None:
    """The first command stored for a session (``None``: none, or not a command)."""
    p = bus.partition(session_id)
    stream, subject = bus.partitions.stream(p), subjects.inputs(session_id, p)
    first = await direct.next_by_subject(bus.nc, stream, subject, 1, bus.timeout)
    if first is None:  # only for a session that looks unknown: make sure
        first = await _from_leader(bus, stream, subject)
    try:
        return decode_command(first.data) if first is not None else None
    except ValidationError:
        return None


async def _from_leader(bus: Bus, stream: str, subject: str) -> direct.StoredMsg | None:
    """The first message on ``subject``, asked of the stream's leader: a direct get may be
    answered by a replica that has not stored the latest messages yet (a command just
    stored would look absent, and its session unknown)."""
    try:
        msg = await bus.js.get_msg(stream, seq=1, subject=subject, next=True)
    except NotFoundError:
        return None
    except Exception as e:  # not allowed (credentials from before), not answered: as read
        log.debug("reading %s from the stream's leader failed: %s", subject, e)
        return None
    return direct.StoredMsg(
        msg.seq or 0, msg.subject or subject, msg.data or b"", msg.headers or {}
    )


async def pending_create(bus: Bus, session_id: str) -> SessionCreated | None:
    """The first event a worker will write for a session that has none yet: from its
    first command, if that creates it (``None``: no such session)."""
    cmd = await first_command(bus, session_id)
    if not isinstance(cmd, CreateSession) or cmd.session_id != session_id:
        return None
    s = bus.settings
    return created_by(cmd, s.session_idle_timeout, s.session_max_lifetime)


async def load_state(
    bus: Bus, session_id: str, *, include_pending: bool = True
) -> tuple[Checkpoint, int] | None:
    """The session's state and the id of its latest event, or ``None`` if unknown."""
    p = bus.partition(session_id)
    stream = bus.partitions.stream(p)
    snap, last = await asyncio.gather(
        direct.last_by_subject(bus.nc, stream, subjects.checkpoint(session_id, p), bus.timeout),
        direct.last_by_subject(bus.nc, stream, subjects.events(session_id, p), bus.timeout),
    )
    if last is None:
        created = await pending_create(bus, session_id) if include_pending else None
        return None if created is None else (start(created, 0), 0)
    ck = upgrade(Checkpoint.model_validate_json(snap.data)) if snap is not None else None
    as_of = ck.as_of if ck is not None else 0
    newest = decode_record(last.seq, last.data)
    tail = newest[-1][0]
    if tail > as_of:
        if record_seq(as_of) >= last.seq - 1:
            # Nothing can be stored between the snapshot and the latest record: no read.
            pending = newest
        else:
            pending = await read_events(bus, session_id, after=as_of, up_to=tail)
        ck = fold(pending, ck, bus.settings.context_cap)
    if ck is None:
        return None
    return ck, tail
