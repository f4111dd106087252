"""Storing a decision: each event appended to the session's log, then what follows it
(the ``reply_to`` answer; after a command's final event, the record, timer and snapshot
saved and the triggers the state now covers acknowledged). Every store of the session's
events goes through here, so what a commit sets off is in one place."""

from __future__ import annotations

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

    @property
    def state(self) -> Checkpoint:
        return self.log.state

    async def record(self, events: tuple[Event, ...], ctx: CommandContext) -> None:
        for event in events:
            await self.commit(event, ctx)

    async def commit(self, event: Event, ctx: CommandContext) -> None:
        """Store one event, then what follows it: the ``reply_to`` answer; after a final
        event (the command is done), the record, timer and snapshot saved and the
        triggers the state now covers acknowledged."""
        seq = await self.log.append(event, ctx)
        await self.effects.reply(self.state, seq, event)
        if event.final or isinstance(event, SessionCreated):
            ended = isinstance(event, StateChanged) and event.to_state in TERMINAL
            every = self.log.unsaved >= self.bus.settings.checkpoint_every
            self.effects.save(self.state, ended=ended, snapshot=ended or every)
            if ended or every:
                self.log.unsaved = 0
            await self.inbox.ack_done(self.state.input_cursor)

    def snapshot(self) -> None:
        self.log.unsaved = 0
        self.effects.snapshot(self.state)
