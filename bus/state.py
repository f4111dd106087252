"""Loading a session's state: the latest snapshot plus the events stored after it."""

from __future__ import annotations

import asyncio

from bus import direct, subjects
from bus.connection import Bus
from schemas import Checkpoint, Event, decode_event, fold


async def load_head(bus: Bus, session_id: str) -> tuple[Event, int] | None:
    """The session's latest event and its sequence (one read), or ``None`` if unknown."""
    last = await direct.last_by_subject(
        bus.nc, bus.stream, subjects.events(session_id), bus.timeout
    )
    if last is None:
        return None
    return decode_event(last.data), last.seq


async def load_state(bus: Bus, session_id: str) -> tuple[Checkpoint, int] | None:
    """The session's state and the sequence of its latest event, or ``None`` if unknown."""
    snap, last = await asyncio.gather(
        direct.last_by_subject(bus.nc, bus.stream, subjects.checkpoint(session_id), bus.timeout),
        direct.last_by_subject(bus.nc, bus.stream, subjects.events(session_id), bus.timeout),
    )
    if last is None:
        return None
    ck = Checkpoint.model_validate_json(snap.data) if snap is not None else None
    as_of = ck.as_of if ck is not None else 0
    if last.seq > as_of:
        if last.seq == as_of + 1:  # the only sequence in the gap: no read needed
            pending = [(last.seq, decode_event(last.data))]
        else:
            stored = await direct.read_subject(
                bus.nc,
                bus.stream,
                subjects.events(session_id),
                after=as_of,
                up_to=last.seq,
                timeout=bus.timeout,
            )
            pending = [(m.seq, decode_event(m.data)) for m in stored]
        ck = fold(pending, ck, bus.settings.context_cap)
    if ck is None:
        return None
    return ck, last.seq
