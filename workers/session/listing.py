"""The session records that listings read (the sessions KV bucket), written by the
sessions' owners.

A record is written when a command is done. A change that only moves the counters and
times is coalesced: written at most every ``record_interval`` seconds per session, the
newest one, and at once when the session's run ends (it goes idle, or the worker drains).
A change of what a listing filters on or acts on (the state, the calls waiting for
approval, the metadata, the owner, whether the session expires) is written at once. A
session in a fast loop of turns is one record write every few seconds, not one a turn.
Writes never go back: one record per session is in flight at a time from a worker, and a
record with fewer events than the stored one (an older owner's, late) is not written over
it.

The events are the truth: reading one session (``get``) folds them, and is exact; only
listings may lag, by at most ``record_interval`` while a session is in use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyWrongLastSequenceError, NotFoundError

from praxis.bus import Bus
from praxis.bus.cache import Bounded
from praxis.schemas import SessionRecord

log = logging.getLogger("praxis.worker")


@dataclass(slots=True)
class _Stored:
    shape: tuple[Any, ...]
    """The stored record's :func:`_shape`, taken when it was written (a record passed to
    :meth:`Listing.write` is the session's own, and changes with it afterwards)."""
    revision: int | None
    at: float


def _shape(r: SessionRecord) -> tuple[Any, ...]:
    """What listings filter on or act on: a change of it is written at once (as values
    that do not change afterwards)."""
    calls = tuple(c.call_id for c in r.waiting_for)
    metadata = json.dumps(r.metadata, sort_keys=True, default=str) if r.metadata else ""
    owner = (r.owner.principal, r.owner.tenant) if r.owner is not None else None
    return (r.state, calls, metadata, owner, r.expires_at is None, r.agent)


class Listing:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.interval = bus.settings.record_interval
        self._stored = Bounded[str, _Stored](max(bus.settings.state_cache, 1000))
        self._pending: dict[str, SessionRecord] = {}
        self._writing: dict[str, asyncio.Task[None]] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, record: SessionRecord) -> None:
        """Write ``record`` now, or soon (coalesced with later ones)."""
        sid = record.session_id
        self._pending[sid] = record
        if sid in self._writing:
            return  # written after the one in flight
        stored = self._stored.get(sid)
        if (
            stored is None
            or stored.shape != _shape(record)
            or time.monotonic() - stored.at >= self.interval
        ):
            self._start(sid)

    def flush_due(self) -> None:
        """Start the coalesced writes whose interval has passed."""
        now = time.monotonic()
        for sid in list(self._pending):
            stored = self._stored.get(sid)
            if sid not in self._writing and (stored is None or now - stored.at >= self.interval):
                self._start(sid)

    async def flush(self, session_id: str | None = None) -> None:
        """Write what is pending (for one session, or all) and wait for it."""
        for sid in [session_id] if session_id else list(self._pending):
            if sid in self._pending and sid not in self._writing:
                self._start(sid)
        running = [t for s, t in self._writing.items() if session_id in (None, s)]
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    def _start(self, sid: str) -> None:
        self._writing[sid] = asyncio.create_task(self._write(sid))

    async def _write(self, sid: str) -> None:
        try:
            while (record := self._pending.pop(sid, None)) is not None:
                try:
                    await self._store(record)
                except Exception as e:  # the next write of the session brings it up to date
                    log.warning("session %s: record not written: %s", sid, e)
        finally:
            del self._writing[sid]

    async def _store(self, record: SessionRecord) -> None:
        sid = record.session_id
        kv = self.bus.records_of(sid)
        data = record.model_dump_json().encode()
        shape = _shape(record)  # of what is written: the record changes with its session
        stored = self._stored.get(sid)
        at = time.monotonic()
        for _ in range(3):
            revision = stored.revision if stored is not None else None
            if revision is None:
                try:
                    entry = await kv.get(sid)
                except NotFoundError:  # not written yet (a session created on the bus)
                    revision = await kv.put(sid, data)
                    self._stored.put(sid, _Stored(shape, revision, at))
                    return
                current = SessionRecord.model_validate_json(entry.value or b"{}")
                revision = entry.revision
                if current.counters.events > record.counters.events:
                    self._stored.put(sid, _Stored(_shape(current), revision, at))
                    return  # a newer owner wrote a newer one
            try:
                revision = await kv.update(sid, data, last=revision)
            except KeyWrongLastSequenceError:
                stored = None  # written by somebody else since: read it and compare
                continue
            self._stored.put(sid, _Stored(shape, revision, at))
            return
        log.warning("session %s: record not written, its key keeps changing", sid)
