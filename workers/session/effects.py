"""What follows a commit, besides the event itself: the command's ``reply_to`` answer, the
session record in KV, the snapshot, the expiry timer. All of it is best effort or may be
redone: the events are the truth, and every one of these can be rebuilt from them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from praxis.bus import Bus, commit, subjects, with_retry
from praxis.bus.cache import Bounded
from praxis.schemas import (
    AgentMessage,
    Checkpoint,
    CommandOutcome,
    Event,
    Expire,
    TurnWaiting,
)
from praxis.workers.session.listing import Listing
from praxis.workers.session.policy import outcome_of

log = logging.getLogger("praxis.worker")
EXPIRY_ACTOR = "expiry timer"


@dataclass(slots=True)
class Replying:
    """A command whose outcome goes to a reply subject, and its reply so far."""

    command_id: str
    subject: str
    text: str | None = None


class Effects:
    def __init__(
        self, bus: Bus, session_id: str, timers: Bounded[str, datetime], listing: Listing
    ) -> None:
        self.bus = bus
        self.sid = session_id
        self.timers = timers
        self.listing = listing
        """The due time of the expiry timer this worker last set, per session."""
        self.replying: Replying | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- the reply_to answer ----------------------------------------------------------------

    async def reply(self, state: Checkpoint, seq: int, event: Event) -> None:
        """Tell the command's ``reply_to`` subject how it ended (best effort, core NATS),
        once its final event is stored."""
        replying = self.replying
        if replying is None or event.command_id != replying.command_id:
            return
        if isinstance(event, AgentMessage):
            replying.text = event.content
        if not event.final:
            return
        self.replying = None
        outcome = CommandOutcome(
            session_id=self.sid,
            task_id=state.session.task_id,
            command_id=event.command_id,
            outcome=outcome_of(event),
            reply=event.text if isinstance(event, TurnWaiting) else replying.text,
            reason=getattr(event, "reason", None),
            waiting_for=event.calls if isinstance(event, TurnWaiting) else [],
            usage=getattr(event, "usage", None),
            state=state.session.state,
            cursor=seq,
        )
        try:
            await self.bus.nc.publish(replying.subject, outcome.model_dump_json().encode())
        except Exception as e:  # the events hold the outcome whatever happens here
            log.warning("session %s: reply to %s failed: %s", self.sid, replying.subject, e)

    # -- the record, the snapshot, the timer -------------------------------------------------

    def save(self, state: Checkpoint, *, ended: bool, snapshot: bool) -> int:
        """Record (see :class:`Listing`) and expiry timer (cancelled once the session
        ``ended``), and the snapshot if asked, in the background (a snapshot only saves
        folding); the snapshot's bytes (0: none)."""
        self.listing.write(state.session)
        size = self.snapshot(state) if snapshot else 0
        timer = self._timer_job(state, ended)
        if timer is not None:
            self.in_background(timer)
        return size

    def snapshot(self, state: Checkpoint) -> int:
        """Write a snapshot of ``state`` in the background (fields at their defaults left
        out, as in records); its bytes."""
        data = state.model_dump_json(exclude_defaults=True).encode()
        p = self.bus.partition(self.sid)
        self.in_background(commit.save_checkpoint(self.bus.nc, self.sid, p, data, self.bus.timeout))
        return len(data)

    def in_background(self, job: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the background saves (the run is ending)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _timer_job(self, state: Checkpoint, ended: bool) -> Coroutine[Any, Any, Any] | None:
        """Set, move or cancel the expiry timer if its due time changed (much): a timer
        that fires a little early finds the session not due and is set again."""
        record = state.session
        due = record.expires_at
        armed = self.timers.get(self.sid)
        if due is None:
            self.timers.pop(self.sid)
            return self._cancel_timer() if ended or armed is not None else None
        slack = min(60.0, 0.05 * record.idle_timeout) if record.idle_timeout else 0.0
        if armed is not None and armed <= due <= armed + timedelta(seconds=slack):
            return None
        self.timers.put(self.sid, due)
        return self._set_timer(state, due)

    async def _set_timer(self, state: Checkpoint, due: datetime) -> None:
        cmd = Expire(session_id=self.sid, task_id=state.session.task_id, actor=EXPIRY_ACTOR)
        at = due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        p = self.bus.partition(self.sid)
        target = subjects.inputs(self.sid, p)
        headers = {"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": target}
        try:
            await with_retry(
                lambda: self.bus.js.publish(
                    subjects.timer(self.sid, p), cmd.model_dump_json().encode(), headers=headers
                ),
                what=f"expiry timer of {self.sid}",
                deadline=self.bus.settings.retry_window,
            )
        except Exception as e:
            self.timers.pop(self.sid)  # set it again after the next command
            log.warning("session %s: expiry timer not set: %s", self.sid, e)

    async def _cancel_timer(self) -> None:
        try:
            p = self.bus.partition(self.sid)
            await self.bus.js.purge_stream(
                self.bus.partitions.stream(p), subject=subjects.timer(self.sid, p)
            )
        except Exception as e:  # it then fires on an ended session, which skips it
            log.warning("session %s: expiry timer not cancelled: %s", self.sid, e)
