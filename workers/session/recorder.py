"""Storing a decision: its events staged into the session's next record, the record
stored, then what follows it (each command's ``reply_to`` answer; once a command's final
event is stored, the record, timer and snapshot saved and the triggers the state now
covers acknowledged). Every store of the session's events goes through here, so what a
commit sets off is in one place."""

from __future__ import annotations

import asyncio

from praxis.bus import Bus
from praxis.schemas import (
    TERMINAL,
    Checkpoint,
    Event,
    SessionCreated,
    StateChanged,
)
from praxis.workers.session.effects import Effects
from praxis.workers.session.inbox import Inbox
from praxis.workers.session.log import SessionLog
from praxis.workers.session.policy import CommandContext


class Recorder:
    def __init__(self, bus: Bus, log: SessionLog, effects: Effects, inbox: Inbox) -> None:
        self.bus = bus
        self.log = log
        self.effects = effects
        self.inbox = inbox
        self._lock = asyncio.Lock()
        """One store at a time (a turn's window and its tool journal may both store)."""

    @property
    def state(self) -> Checkpoint:
        return self.log.state

    @property
    def staged(self) -> bool:
        return bool(self.log.staged)

    async def record(
        self, events: tuple[Event, ...], ctx: CommandContext, *, hold: bool = False
    ) -> None:
        """Stage ``events`` (folded at once); store them now, or with what comes next
        (``hold``: the decision goes on, a turn say, and its record is not complete)."""
        async with self._lock:  # not while a record is being stored: its ids would clash
            for event in events:
                self.log.stage(event, ctx)
        if not hold:
            await self.flush()

    async def commit(self, event: Event, ctx: CommandContext) -> None:
        """Store ``event`` now, with whatever is staged before it."""
        await self.record((event,), ctx)

    async def flush(self) -> None:
        """Store what is staged as one record, then what follows it: each ``reply_to``
        answer; after a final event (a command is done), the record, timer and snapshot
        saved and the triggers the state now covers acknowledged."""
        async with self._lock:
            if not self.log.staged:
                return
            stored = await self.log.flush()
        done = False
        ended = False
        for eid, event in stored:
            await self.effects.reply(self.state, eid, event)
            done = done or event.final or isinstance(event, SessionCreated)
            ended = ended or (isinstance(event, StateChanged) and event.to_state in TERMINAL)
        if done:
            every = self.log.snapshot_due(self.bus.settings.checkpoint_every)
            snapshot = (ended or every) and not self.log.staged  # only what is stored
            size = self.effects.save(self.state, ended=ended, snapshot=snapshot)
            if snapshot:
                self.log.saved(size)
            await self.inbox.ack_done(self.state.input_cursor)

    def snapshot(self) -> None:
        self.log.saved(self.effects.snapshot(self.state))
