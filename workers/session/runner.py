"""One session's run on a worker: claim, handle every pending command in order, release.

This is the shell around the session's rules (:mod:`.policy`): it reads the inputs
(:mod:`.inbox`), asks the policy what each command does, stores the decided events
(:mod:`.log`), performs what follows a commit (:mod:`.effects`), runs turns
(:mod:`.turn`), and owns the session while it works (:mod:`.ownership`).

Nothing here outlives the run. A command whose previous owner died half-way is finished
from where its events stop: a stored reply is never produced twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from nats.aio.msg import Msg
from pydantic import ValidationError

from praxis.bus import direct, leases, logs, tracing
from praxis.bus.client import SessionClient
from praxis.bus.errors import (
    BusError,
    FenceRejectedError,
    MessageTooLargeError,
    UnknownAgentError,
)
from praxis.bus.state import load_state
from praxis.schemas import (
    TERMINAL,
    Checkpoint,
    Command,
    CommandOutcome,
    CreateSession,
    Interface,
    SessionState,
    Suspend,
    decode_command,
)
from praxis.schemas.events import created_by
from praxis.workers.session import policy
from praxis.workers.session.effects import Effects
from praxis.workers.session.handler import AttemptFailedError, CommandHandler
from praxis.workers.session.inbox import Inbox
from praxis.workers.session.log import SessionLog
from praxis.workers.session.ownership import LeaseLostError, Ownership
from praxis.workers.session.policy import CommandContext
from praxis.workers.session.recorder import Recorder
from praxis.workers.session.shared import Cached, RunContext
from praxis.workers.session.turn import TurnDriver

log = logging.getLogger("praxis.worker")
_CONTROL_KINDS = (b'"cancel_turn"', b'"suspend"', b'"user_message"')
"""Commands the owner acts on as they arrive, while a turn is in flight."""


class SessionRunner:
    def __init__(self, ctx: RunContext, session_id: str) -> None:
        self.ctx = ctx
        self.bus = ctx.bus
        self.sid = session_id
        self.inbox = Inbox(ctx.bus, session_id, ctx.deliveries)
        self.log = SessionLog(ctx.bus, session_id, ctx.worker_id)
        self.effects = Effects(ctx.bus, session_id, ctx.timers, ctx.listing)
        self.turns = TurnDriver(ctx.bus, session_id)
        self.ownership = Ownership(ctx.bus, session_id, ctx.worker_id)
        self._loaded: tuple[Checkpoint, int] | None = None
        self._first: direct.StoredMsg | None = None
        self.recorder = Recorder(ctx.bus, self.log, self.effects, self.inbox)
        self.handler = CommandHandler(
            ctx, self.log, self.inbox, self.effects, self.turns, self.recorder
        )
        self.done = asyncio.Event()
        self.started = datetime.now(UTC)

    @property
    def state(self) -> Checkpoint:
        return self.log.state

    @property
    def accepting(self) -> bool:
        """New triggers for the session may join this run (until its last input check)."""
        return self.inbox.accepting

    def add_trigger(self, msg: Msg) -> None:
        """A work message for this session (its own delivery, or forwarded by a worker
        that could not claim the session): a new input to read."""
        self.inbox.add(msg)

    def take(self, msg: Msg) -> None:
        """A trigger for this session while the run goes on: a new input to read, and a
        command to act on now if it was sent while the run lasts and is a cancel, a
        suspend or a message during a turn (one stored before the run is taken in order)."""
        self.inbox.add(msg)
        with contextlib.suppress(Exception):  # the metadata of a well-formed delivery
            if msg.metadata.timestamp < self.started:
                return
        self.on_command(msg)

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> None:
        logs.about(self.sid)  # every log line of this run (its own task) names the session
        # Read while claiming: what is read is only used if the claim succeeds, and the
        # fence rejects anything written from a state that was stale.
        cached = self.ctx.cache.pop(self.sid)
        hint = cached.lease_hint if cached else None
        kept = self.ctx.kept.take(self.sid)
        claimed, loaded = await asyncio.gather(
            self.ownership.claim(hint, kept), self._load(cached), return_exceptions=True
        )
        failure = next((r for r in (claimed, loaded) if isinstance(r, BaseException)), None)
        if failure is not None:
            # The bus failed us before the work began (e.g. a server restarting): give the
            # lease and the triggers back rather than leave them to expire.
            self.inbox.accepting = False
            if isinstance(claimed, leases.Lease):
                await self.ownership.release(claimed)
            await self.inbox.settle(0, retry_delay=policy.RETRY_DELAY)
            self.done.set()
            raise failure
        lease = claimed
        assert lease is None or isinstance(lease, leases.Lease)
        if lease is None:
            lease = await self._elsewhere()
            if lease is None:
                return
            self._loaded = None  # the holder ran it meanwhile: read the state again
            self.log.optimistic = False
            await self._load(None)
        ok = False
        try:
            await self.ownership.hold(lease, self._work, self.inbox.in_progress)
            ok = True
        except (FenceRejectedError, LeaseLostError) as e:
            log.warning("session %s: stopped, no longer the owner (%s)", self.sid, e)
        except BusError as e:
            log.error("session %s: bus error, returned for retry: %s", self.sid, e)
        except AttemptFailedError as e:
            log.warning("session %s: %s", self.sid, e)
        finally:
            self.inbox.accepting = False
            await self._finish(lease, ok)

    async def _elsewhere(self) -> leases.Lease | None:
        """Another worker holds the session: hand it the triggers if it runs the session
        (it acknowledges them), or take the lease if it only kept it between runs (the
        lease, to run here); else hand the triggers back for later. ``None``: the run is
        over."""
        self.ctx.snapshots.drop(self.sid)  # a lease kept here is lost, if there was one
        held = self.ownership.held
        holder = held.worker_id if held is not None else ""
        if holder and holder != self.ctx.worker_id:
            got = await self.ownership.forward(holder, self.inbox.triggers)
            if isinstance(got, leases.Lease):
                return got
            if got:
                self.ctx.holders.put(self.sid, holder)  # its next triggers: straight there
                self.inbox.triggers.clear()  # the holder's to acknowledge now
                self.inbox.accepting = False
                self.done.set()
                return None
        self.inbox.accepting = False
        await self.inbox.defer(self.ownership.retry_after)
        self.done.set()
        return None

    async def _finish(self, lease: leases.Lease, ok: bool) -> None:
        ck = self.log.ck
        try:
            if ok and ck is not None and self._snapshot_due():
                self.recorder.snapshot()  # the next run, here or elsewhere, reads no events
            await self.effects.settle()
            if not self.ctx.crowded.is_set():
                await self.ctx.listing.flush(self.sid)
            hint = None
            if self._keep_lease(ok):
                self.ctx.kept.keep(lease)  # its next turn here needs no claim
                self.ctx.snapshots.idle(self.sid)  # nor a new subscription
            else:
                self.ctx.snapshots.drop(self.sid)
                hint = await self.ownership.release(lease)
            if ok and ck is not None:
                log = self.log
                entry = Cached(
                    ck, log.tail, hint, log.unsaved, log.unsaved_bytes, log.snapshot_bytes
                )
                self.ctx.cache.put(self.sid, entry)
            cursor = ck.input_cursor if ck is not None else 0
            await self.inbox.settle(cursor, retry_delay=None if ok else self.handler.retry_delay)
        finally:
            self.done.set()

    def _keep_lease(self, ok: bool) -> bool:
        """Whether the run keeps the lease for the session's next one: when it ends only
        because the worker is busy (others wait for its slot), not when the session went
        idle or ended, nor when the worker drains."""
        ctx = self.ctx
        ck = self.log.ck
        if not ok or ck is None or ck.session.state in TERMINAL:
            return False
        return ctx.crowded.is_set() and not ctx.stopping.is_set()

    def _snapshot_due(self) -> bool:
        """Whether the run ends with a snapshot: when the session goes idle, or when
        ``checkpoint_every`` records are unsaved. A busy worker that ends a session's run
        after each turn (others wait for its slot) takes none: its cache keeps the state,
        and another worker reads at most that many records after the last snapshot."""
        unsaved = self.log.unsaved
        if not unsaved:
            return False
        every = self.bus.settings.checkpoint_every
        return not self.ctx.crowded.is_set() or self.log.snapshot_due(every)

    async def _load(self, cached: Cached | None) -> None:
        """The state (the cached one is used as is: the first append's fence checks it)
        and the first pending input."""
        if cached is not None:
            self._loaded = (cached.state, cached.tail)
            self.log.unsaved = cached.unsaved
            self.log.unsaved_bytes = cached.unsaved_bytes
            self.log.snapshot_bytes = cached.snapshot_bytes
            self.log.optimistic = True
        else:
            self._loaded = await load_state(self.bus, self.sid, include_pending=False)
        if self._loaded is not None:
            ck = self._loaded[0]
            if ck.progress <= ck.input_cursor:
                self._first = await self.inbox.next_input(ck.input_cursor + 1)

    async def _work(self) -> None:
        if self._loaded is None:
            if not await self._create_from_bus():
                return
        else:
            self.log.start(*self._loaded)
        logs.about(self.sid, self.state.session.task_id)
        await self.log.tell_tail()
        await self.ctx.snapshots.serve(self.sid, self.turns.snapshot)
        while True:
            try:
                await self._drain()
                break
            except FenceRejectedError:
                if not self.log.optimistic:
                    raise
                self._first = None
                await self.log.reload()  # the cached state was stale: read it and go on
        if self.log.optimistic:
            await self.log.check_tail()  # nothing appended: nothing checked the cached state

    async def _drain(self) -> None:
        """Handle every pending input; new triggers may join until the last check."""
        if self.state.progress > self.state.input_cursor:
            await self.handler.handle_seq(self.state.progress)  # finish what a dead owner left
        read = True  # the first time round: the triggers that started this run
        inbox = self.inbox
        while True:
            await self.handler.answer_queued()
            # Before the read: an input arriving after it wakes the linger. Every stored
            # command has a trigger, and it comes to this run (delivered here, or
            # forwarded by the worker it reached, which cannot claim the session): with
            # none since the last read there is nothing new to read.
            # While other sessions wait for a slot, only an input whose trigger came (in
            # the order inputs were stored) is taken: a session whose client answers fast
            # would otherwise keep its slot, seeing each next command as it is sent.
            cursor = self.state.input_cursor
            woken = inbox.wake.is_set() and not self.ctx.crowded.is_set()
            read = read or woken or inbox.after(cursor)
            inbox.wake.clear()
            nxt, self._first = self._first, None
            if (nxt is None or nxt.seq <= cursor) and read:
                nxt = await inbox.next_input(cursor + 1)
            elif nxt is not None and nxt.seq <= cursor:
                nxt = None
            read = False
            if nxt is None:
                nxt = await self._linger()
            if nxt is None:
                inbox.accepting = False
                if not inbox.after(self.state.input_cursor):
                    return
                inbox.accepting = True  # a trigger joined after the last read: go on
                read = True
                continue
            await self.handler.handle(nxt.seq, nxt.data, nxt.headers)

    async def _linger(self) -> direct.StoredMsg | None:
        """Keep the session a moment after its last input: the next one, if it comes soon,
        is taken without a new claim (whichever worker its trigger reaches)."""
        ctx = self.ctx

        def stop() -> bool:
            return ctx.stopping.is_set() or ctx.crowded.is_set()

        with ctx.resting():
            return await self.inbox.linger(
                self.state.input_cursor, stop, (ctx.stopping, ctx.crowded)
            )

    # -- a session created on the bus -------------------------------------------------------

    async def _create_from_bus(self) -> bool:
        """Inputs for a session with no events: a create published on the bus makes one."""
        first = await self.inbox.next_input(1)
        try:
            cmd = decode_command(first.data) if first else None
        except ValidationError:
            cmd = None
        if not isinstance(cmd, CreateSession) or cmd.session_id != self.sid:
            log.warning("session %s: commands for an unknown session dropped", self.sid)
            await self.inbox.drop()
            return False
        if self.ctx.registry.get(cmd.agent) is None:
            await self._refuse_create(cmd, self.ctx.registry.names())
            return False
        try:
            settings = self.bus.settings
            created = created_by(cmd, settings.session_idle_timeout, settings.session_max_lifetime)
            assert first is not None
            trace_id = tracing.trace_id_of(first.headers)
            event = created.model_copy(update={"trace_id": trace_id})
            ctx = CommandContext(self.sid, cmd.task_id, trace_id=trace_id)
            await self.recorder.commit(event, ctx)
        except MessageTooLargeError as e:  # its metadata: the edge bounds it, the bus may not
            log.warning("session %s: not created, its first event is too large: %s", self.sid, e)
            await self.inbox.drop()
            return False
        return True

    async def _refuse_create(self, cmd: CreateSession, known: list[str]) -> None:
        """A create for an agent this worker does not offer: refused, and nothing of the
        session is left (its commands, the record its sender wrote): the sender hears it
        on its ``reply_to``, a follower finds the session gone."""
        reason = str(UnknownAgentError(cmd.agent, known))
        log.warning("session %s: create refused: %s", self.sid, reason)
        if cmd.reply_to:
            outcome = CommandOutcome(
                session_id=self.sid,
                task_id=cmd.task_id,
                command_id=cmd.command_id,
                outcome="rejected",
                reason=reason,
                state=SessionState.CREATED,
                cursor=0,
            )
            with contextlib.suppress(Exception):
                await self.bus.nc.publish(cmd.reply_to, outcome.model_dump_json().encode())
        await SessionClient(self.bus, Interface.SYSTEM).purge(self.sid)
        await self.inbox.drop()

    # -- commands seen as they are sent ------------------------------------------------------

    def on_command(self, msg: Msg) -> None:
        """A command sent to this session, seen as its trigger comes."""
        cmd = self._control(msg)
        if cmd is None:
            return
        if isinstance(cmd, Suspend):
            self.handler.suspending = cmd.command_id
        if self.turns.live is not None and self.log.ck is not None:
            turn = self.log.ck.turn
            why = policy.interrupts(self.log.ck, cmd, turn.command_id if turn else None)
            if why is not None:
                self.turns.interrupt(cmd.command_id, why)

    def _control(self, msg: Msg) -> Command | None:
        """``msg``'s command, if it is one acted on as it arrives: during a turn, a cancel,
        a suspend or a message; at any time, a suspend."""
        if self.turns.live is None and b'"suspend"' not in msg.data:
            return None
        if not any(k in msg.data for k in _CONTROL_KINDS):
            return None
        try:
            cmd = decode_command(msg.data)
        except ValidationError:
            return None
        return cmd if cmd.session_id == self.sid else None
