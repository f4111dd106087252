"""The session's log on the bus, as its owner writes it: the fenced append, the fold, the
commit notice to followers.

Each event is one JetStream publish on ``sess.<id>.out.evt`` fenced on the session's
latest event (``Nats-Expected-Last-Subject-Sequence``): an owner that lost the session
can never write. The state is advanced by the same fold readers use. A new owner's first
event is its claim (``session.claimed``), written before the event that needed it.
"""

from __future__ import annotations

from praxis.bus import Bus, commit, direct, metrics, subjects
from praxis.bus.errors import TransientError
from praxis.bus.state import load_state
from praxis.schemas import (
    Checkpoint,
    CommitNotice,
    Event,
    SessionClaimed,
    SessionCreated,
    TailNotice,
    apply,
)
from praxis.workers.session.policy import CommandContext


class SessionLog:
    def __init__(self, bus: Bus, session_id: str, worker_id: str) -> None:
        self.bus = bus
        self.sid = session_id
        self.worker_id = worker_id
        self.ck: Checkpoint | None = None
        self.tail = 0
        """The sequence of the session's latest event: the next append is fenced on it."""
        self.claimed = False
        self.optimistic = False
        """The state came from this worker's cache: no append has confirmed it yet."""
        self.unsaved = 0
        """Events appended since the latest snapshot."""

    @property
    def state(self) -> Checkpoint:
        assert self.ck is not None, "state not loaded"
        return self.ck

    def start(self, ck: Checkpoint, tail: int) -> None:
        self.ck, self.tail = ck, tail
        self.claimed = ck.owner == self.worker_id

    async def reload(self) -> None:
        """Read the state again (the cached one was stale)."""
        self.optimistic = False
        found = await load_state(self.bus, self.sid, include_pending=False)
        if found is None:
            raise TransientError(f"session {self.sid} vanished")
        self.start(*found)
        await self.tell_tail()

    async def tell_tail(self, seq: int | None = None) -> None:
        """Tell followers the latest event (one they missed, a notice lost with a worker
        that died, is then read back)."""
        notice = TailNotice(seq=self.tail if seq is None else seq)
        await self.bus.nc.publish(subjects.live(self.sid), notice.model_dump_json().encode())

    async def check_tail(self) -> None:
        """After a run that appended nothing from a cached state: if another worker moved
        the session on meanwhile (and died before telling its followers, say), the tail
        told was old. Tell the real one; forget the stale state."""
        last = await direct.last_by_subject(
            self.bus.nc, self.bus.stream, subjects.events(self.sid), self.bus.timeout
        )
        if last is not None and last.seq != self.tail:
            self.ck = None
            await self.tell_tail(last.seq)

    async def append(self, event: Event, ctx: CommandContext) -> int:
        """Store ``event`` (fenced; claimed first if this owner has not written yet), fold
        it, tell followers. Returns its sequence."""
        if not self.claimed and not isinstance(event, SessionCreated):
            await self._claim(ctx)
        return await self._store(event)

    async def _claim(self, ctx: CommandContext) -> None:
        previous = self.state.owner
        claim = SessionClaimed(
            **ctx.system().meta(self.state.session.state),
            worker_id=self.worker_id,
            previous_owner=previous,
        )
        await self._store(claim)
        self.claimed = True
        if previous is not None:
            metrics.TAKEOVERS.inc()

    async def _store(self, event: Event) -> int:
        payload = event.model_dump_json().encode()
        seq = await commit.append(
            self.bus.nc,
            self.bus.stream,
            self.sid,
            payload,
            expected_seq=self.tail,
            max_bytes=self.bus.settings.max_message_bytes,
            timeout=self.bus.timeout,
            deadline=self.bus.settings.retry_window,
        )
        self.optimistic = False  # the fence confirmed the state this run works from
        notice = CommitNotice.encode(self.tail, seq, payload)
        self.tail = seq
        self.unsaved += 1
        self.ck = apply(self.ck, seq, event, self.bus.settings.context_cap)
        await self.bus.nc.publish(subjects.live(self.sid), notice)
        return seq
