"""The session's log on the bus, as its owner writes it: staging a decision's events,
storing them as one fenced record, the fold, the commit notice to followers.

A record is one JetStream publish on ``sess.<id>.out.evt`` fenced on the session's latest
record (``Nats-Expected-Last-Subject-Sequence``): an owner that lost the session can never
write. Events are staged first and folded at once, under the ids the next record would
get if nothing else were stored before it; the owner decides on that state, and when the
record is stored the ids move to where it landed (:func:`praxis.schemas.rebase`). A new
owner's claim (``session.claimed``) is the first event of its first record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from praxis.bus import Bus, commit, direct, metrics, subjects
from praxis.bus.errors import FenceRejectedError, TransientError, check_size
from praxis.bus.state import load_state
from praxis.schemas import (
    RECORD_FORMAT,
    Checkpoint,
    CommitNotice,
    Event,
    SessionClaimed,
    SessionCreated,
    TailNotice,
    TokenDelta,
    apply,
    compact_record,
    decode_record,
    encode_record,
    first_id,
    own_json,
    rebase,
    record_seq,
)
from praxis.schemas.stored import MAX_RECORD_EVENTS
from praxis.workers.session.policy import CommandContext

_FENCE_HEADERS = {
    commit.EXPECTED_LAST_SUBJECT_SEQ: "0" * 20,
    commit.APPEND_ID_HEADER: "0" * 40,
}
"""Headers as large as an append's: a staged event is checked against the limit with them."""
_OWN_DELTA = {"type", "index", "text"}
_HEAD_BOUND = 4096
"""More than a record of one event adds to the event's own JSON (its shared fields, at
most three ids of 128 characters, an actor of 200, a trace id, and the fence's headers)."""


class SessionLog:
    def __init__(self, bus: Bus, session_id: str, worker_id: str) -> None:
        self.bus = bus
        self.sid = session_id
        self.worker_id = worker_id
        self.ck: Checkpoint | None = None
        self.tail = 0
        """The id of the session's latest stored event: the next record is fenced on it."""
        self.claimed = False
        self.optimistic = False
        """The state came from this worker's cache: no append has confirmed it yet."""
        self.unsaved = 0
        """Records stored since the latest snapshot."""
        self.unsaved_bytes = 0
        """Their bytes."""
        self.snapshot_bytes = 0
        """The latest snapshot's bytes (0: not known here)."""
        self.staged: list[tuple[Event, bytes]] = []
        """Events decided and folded, not stored yet (the next record)."""
        self.deltas: TokenDelta | None = None
        """The token deltas (as one) of a turn whose start is staged, for the next record's
        notice."""
        self.compact = bus.settings.record_format == RECORD_FORMAT
        """Records of the current format (each staged event's JSON its own fields only);
        else of format 1 (each event's whole JSON)."""

    @property
    def state(self) -> Checkpoint:
        assert self.ck is not None, "state not loaded"
        return self.ck

    def start(self, ck: Checkpoint, tail: int) -> None:
        self.ck, self.tail = ck, tail
        self.staged, self.deltas = [], None
        self.claimed = ck.owner == self.worker_id

    async def reload(self) -> None:
        """Read the state again (the cached one was stale, or staged events were lost)."""
        self.optimistic = False
        self.staged = []
        found = await load_state(self.bus, self.sid, include_pending=False)
        if found is None:
            raise TransientError(f"session {self.sid} vanished")
        self.start(*found)
        await self.tell_tail()

    async def tell_tail(self, tail: int | None = None) -> None:
        """Tell followers the latest event (one they missed, a notice lost with a worker
        that died, is then read back)."""
        notice = TailNotice(seq=self.tail if tail is None else tail)
        await self.bus.nc.publish(subjects.live(self.sid), notice.model_dump_json().encode())

    async def check_tail(self) -> None:
        """After a run that appended nothing from a cached state: if another worker moved
        the session on meanwhile (and died before telling its followers, say), the tail
        told was old. Tell the real one; forget the stale state."""
        last = await direct.last_by_subject(
            self.bus.nc,
            self.bus.stream_of(self.sid),
            subjects.events(self.sid, self.bus.partition(self.sid)),
            self.bus.timeout,
        )
        if last is not None and last.seq != record_seq(self.tail):
            self.ck = None
            await self.tell_tail(decode_record(last.seq, last.data)[-1][0])

    def snapshot_due(self, every: int) -> bool:
        """Whether the records stored since the latest snapshot are due another: at least
        ``every`` of them, holding at least twice its bytes (a long context's snapshot is
        not written more often than its records: reading the state folds at most about
        twice its size)."""
        return self.unsaved >= every and self.unsaved_bytes >= 2 * self.snapshot_bytes

    def saved(self, size: int) -> None:
        """A snapshot of ``size`` bytes of the state as stored now is being written."""
        self.unsaved = self.unsaved_bytes = 0
        self.snapshot_bytes = size

    # -- staging -----------------------------------------------------------------------------

    def stage(self, event: Event, ctx: CommandContext) -> None:
        """Add ``event`` to the next record (after this owner's claim if it has not written
        yet) and fold it. Raises :class:`MessageTooLargeError`, folding nothing, if it
        cannot be stored at all."""
        if not self.claimed and not isinstance(event, SessionCreated):
            previous = self.state.owner
            claim = SessionClaimed(
                **ctx.system().meta(self.state.session.state),
                worker_id=self.worker_id,
                previous_owner=previous,
            )
            self._stage(claim)
            self.claimed = True
            if previous is not None:
                metrics.TAKEOVERS.inc()
        self._stage(event)

    def _stage(self, event: Event) -> None:
        limit = self.bus.settings.max_message_bytes
        if self.compact:
            data = own_json(event)
            if len(data) + _HEAD_BOUND > limit:  # near the limit: the record's exact size
                check_size(compact_record([(event, data)]), _FENCE_HEADERS, limit)
        else:
            data = event.model_dump_json().encode()
            check_size(encode_record([data]), _FENCE_HEADERS, limit)
        eid = self._next_id()
        self.ck = apply(self.ck, eid, event, self.bus.settings.context_cap)
        self.staged.append((event, data))

    def _next_id(self) -> int:
        """The id the next staged event gets, on the assumption that its record is stored
        right after the session's latest one (corrected once it is stored)."""
        base = first_id(record_seq(self.tail) + 1)
        return base + len(self.staged)

    # -- storing -----------------------------------------------------------------------------

    async def flush(self) -> list[tuple[int, Event]]:
        """Store the staged events (one record, or more if they do not fit in one), tell
        followers; their ids. If storing fails, the staged events are lost and the state
        is read again from the bus before the error is raised (what is decided next is
        decided on what is stored)."""
        staged, self.staged = self.staged, []
        deltas, self.deltas = self.deltas, None
        stored: list[tuple[int, Event]] = []
        assumed = first_id(record_seq(self.tail) + 1)  # where the staged events were folded
        try:
            for part, record in _records(staged, self._pack, self.bus.settings.max_message_bytes):
                stored += await self._store(part, record, assumed, deltas)
                assumed = stored[-1][0] + 1
                deltas = None
        except (asyncio.CancelledError, FenceRejectedError):
            self.ck = None  # the run ends, or reads the state again (a stale cache)
            raise
        except BaseException:
            self.ck = None
            with contextlib.suppress(Exception):
                await self.reload()
            raise
        return stored

    def _pack(self, part: list[tuple[Event, bytes]]) -> bytes:
        return compact_record(part) if self.compact else encode_record([d for _, d in part])

    async def _store(
        self,
        part: list[tuple[Event, bytes]],
        record: bytes,
        assumed: int,
        deltas: TokenDelta | None,
    ) -> list[tuple[int, Event]]:
        seq = await commit.append(
            self.bus.nc,
            self.bus.stream_of(self.sid),
            self.sid,
            record,
            partition=self.bus.partition(self.sid),
            expected_seq=record_seq(self.tail),
            max_bytes=self.bus.settings.max_message_bytes,
            timeout=self.bus.timeout,
            deadline=self.bus.settings.retry_window,
        )
        self.optimistic = False  # the fence confirmed the state this run works from
        base = first_id(seq)
        rebase(self.state, assumed, base - assumed)
        last = base + len(part) - 1
        if self.compact:  # the deltas of the record's turn: its ids are the record's
            held = [deltas.model_dump_json(include=_OWN_DELTA).encode()] if deltas else []
            notice = CommitNotice.encode_record(self.tail, last, record, held)
        else:
            ids = [(base + i, data) for i, (_, data) in enumerate(part)]
            held = [deltas.model_dump_json().encode()] if deltas else []
            notice = CommitNotice.encode(self.tail, ids, held)
        self.tail = last
        self.unsaved += 1
        self.unsaved_bytes += len(record)
        await self.bus.nc.publish(subjects.live(self.sid), notice)
        return [(base + i, event) for i, (event, _) in enumerate(part)]


Staged = list[tuple[Event, bytes]]


def _records(
    staged: Staged, pack: Callable[[Staged], bytes], max_bytes: int
) -> list[tuple[Staged, bytes]]:
    """The staged events in records that fit in a message (each event fits alone), with
    each record's bytes."""
    room = max_bytes - 200  # the fence's headers
    out: list[Staged] = []
    size = 0
    for item in staged:
        grows = len(item[1]) + 1
        if not out or size + grows > room or len(out[-1]) >= MAX_RECORD_EVENTS:
            out.append([])
            size = 1
        out[-1].append(item)
        size += grows
    return [packed for part in out for packed in _fitted(part, pack, room)]


def _fitted(part: Staged, pack: Callable[[Staged], bytes], room: int) -> list[tuple[Staged, bytes]]:
    """``part`` as one record, or halved until each half fits (a record of format 2 can
    outgrow its events' own JSON when they do not share what records share)."""
    record = pack(part)
    if len(record) <= room or len(part) == 1:
        return [(part, record)]
    half = len(part) // 2
    return _fitted(part[:half], pack, room) + _fitted(part[half:], pack, room)
