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
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

import nats.errors
from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from praxis.bus import Bus, direct, leases, logs, metrics, subjects, tracing
from praxis.bus.cache import Bounded
from praxis.bus.client import SessionClient
from praxis.bus.errors import (
    BusError,
    FenceRejectedError,
    MessageTooLargeError,
    TransientError,
    UnknownAgentError,
)
from praxis.bus.state import load_state
from praxis.schemas import (
    ACCEPTS_MESSAGES,
    TERMINAL,
    Checkpoint,
    Command,
    CommandOutcome,
    Complete,
    CreateSession,
    DeadLetter,
    Event,
    Interface,
    Resume,
    SessionCreated,
    SessionState,
    StateChanged,
    Suspend,
    UserMessage,
    dead_letter_id,
    decode_command,
    new_id,
)
from praxis.schemas.events import created_by
from praxis.workers.agents import Agent, AgentRegistry
from praxis.workers.session import policy
from praxis.workers.session.cache import Cached, StateCache
from praxis.workers.session.effects import Effects, Replying
from praxis.workers.session.inbox import Inbox
from praxis.workers.session.log import SessionLog
from praxis.workers.session.ownership import LeaseLostError, Ownership
from praxis.workers.session.policy import CommandContext, Decision, Facts, RunTurn
from praxis.workers.session.turn import TurnDriver, greets, turn_context

log = logging.getLogger("praxis.worker")
_CONTROL_KINDS = (b'"cancel_turn"', b'"suspend"', b'"user_message"')
"""Commands the owner acts on as they arrive, while a turn is in flight."""


class AttemptFailedError(Exception):
    """Handling a command raised; it is recorded (``command.failed``) and tried again."""


def is_transient(e: BaseException) -> bool:
    """Whether an error says nothing about the command: the bus was unavailable, or the
    session moved to another owner. Such errors do not count as the command failing; a
    refusal (a message too large to store, say) fails the same way every time, and does."""
    if isinstance(e, BusError):
        return e.transient
    return isinstance(e, nats.errors.Error | OSError | TimeoutError)


class RunContext:
    """What runners share within one worker process."""

    def __init__(self, bus: Bus, registry: AgentRegistry, worker_id: str) -> None:
        self.bus = bus
        self.registry = registry
        self.worker_id = worker_id
        self.cache = StateCache(bus.settings.state_cache)
        self.timers = Bounded[str, datetime](max(bus.settings.state_cache, 1000))
        """The due time of the expiry timer this worker last set, per session."""
        self.stopping = asyncio.Event()
        """Set when the worker drains: runners stop lingering."""
        self.resting: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        """Wrapped around a wait for input: the worker's slot is free meanwhile."""
        self.crowded = asyncio.Event()
        """Set while the worker runs as many sessions as it may, or more work waits on the
        server: runners stop lingering, so that waiting sessions get their turn (a session
        in a fast loop of messages would otherwise keep its slot while the loop lasts)."""


class SessionRunner:
    def __init__(self, ctx: RunContext, session_id: str) -> None:
        self.ctx = ctx
        self.bus = ctx.bus
        self.sid = session_id
        self.inbox = Inbox(ctx.bus, session_id)
        self.log = SessionLog(ctx.bus, session_id, ctx.worker_id)
        self.effects = Effects(ctx.bus, session_id, ctx.timers)
        self.turns = TurnDriver(ctx.bus, session_id)
        self.ownership = Ownership(ctx.bus, session_id, ctx.worker_id)
        self._loaded: tuple[Checkpoint, int] | None = None
        self._first: direct.StoredMsg | None = None
        self._retry_delay = policy.RETRY_DELAY
        self._suspending: str | None = None
        """A suspend seen on its way to this session (its command id), not yet taken in
        order: the messages stored before it are kept for after a resume, not answered."""
        self.done = asyncio.Event()

    @property
    def state(self) -> Checkpoint:
        return self.log.state

    @property
    def accepting(self) -> bool:
        """New triggers for the session may join this run (until its last input check)."""
        return self.inbox.accepting

    def add_trigger(self, msg: Msg) -> None:
        self.inbox.add(msg)

    # -- the run -------------------------------------------------------------------------

    async def run(self) -> None:
        logs.about(self.sid)  # every log line of this run (its own task) names the session
        # Read while claiming: what is read is only used if the claim succeeds, and the
        # fence rejects anything written from a state that was stale.
        cached = self.ctx.cache.pop(self.sid)
        hint = cached.lease_hint if cached else None
        claimed, loaded = await asyncio.gather(
            self.ownership.claim(hint), self._load(cached), return_exceptions=True
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
            self.inbox.accepting = False
            await self.inbox.defer()
            self.done.set()
            return
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

    async def _finish(self, lease: leases.Lease, ok: bool) -> None:
        ck = self.log.ck
        try:
            await self.turns.stop()
            if ok and ck is not None and self.log.unsaved:
                self._snapshot()  # the next run, here or elsewhere, reads no events
            await self.effects.settle()
            hint = await self.ownership.release(lease)
            if ok and ck is not None:
                entry = Cached(ck, self.log.tail, hint, self.log.unsaved)
                self.ctx.cache.put(self.sid, entry)
            cursor = ck.input_cursor if ck is not None else 0
            await self.inbox.settle(cursor, retry_delay=None if ok else self._retry_delay)
        finally:
            self.done.set()

    async def _load(self, cached: Cached | None) -> None:
        """The state (the cached one is used as is: the first append's fence checks it)
        and the first pending input."""
        if cached is not None:
            self._loaded = (cached.state, cached.tail)
            self.log.unsaved = cached.unsaved
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
        await self.turns.serve_snapshots()
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
            await self._handle_seq(self.state.progress)  # finish what a dead owner left
        read = True  # the first time round: the triggers that started this run
        inbox = self.inbox
        while True:
            await self._answer_queued()
            # Before the read: an input arriving after it wakes the linger. Every command
            # sent while this run lasts wakes it (the worker's subscription to commands),
            # and every stored one has a trigger: with neither since the last read there
            # is nothing new to read (one the subscription missed is still taken, by its
            # trigger, in this run or the next).
            cursor = self.state.input_cursor
            read = read or inbox.wake.is_set() or inbox.after(cursor)
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
            await self._handle(nxt.seq, nxt.data, nxt.headers)

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

    async def _answer_queued(self) -> None:
        """Answer the messages kept while the session was suspended, oldest first (each
        with its own command id, so its sender can follow it)."""
        while (item := policy.next_queued(self.state, self._suspending is not None)) is not None:
            ctx, decision = policy.answer_queued(self.state, item)
            cmd = UserMessage(
                session_id=self.sid,
                task_id=self.state.session.task_id,
                content=item.content,
                **({"command_id": item.command_id} if item.command_id else {}),
            )
            raw = cmd.model_dump_json().encode()
            await self._carry_out(decision, cmd, raw, ctx, Facts(resuming=True))

    async def _handle_seq(self, seq: int) -> None:
        msg = await self.inbox.next_input(seq)
        if msg is None or msg.seq != seq:
            raise TransientError(f"command {seq} of session {self.sid} is missing from the stream")
        await self._handle(msg.seq, msg.data, msg.headers)

    # -- commands ------------------------------------------------------------------------

    async def _handle(self, seq: int, data: bytes, headers: Mapping[str, str]) -> None:
        trace_id = tracing.trace_id_of(headers)  # the sender's trace goes on in the events
        try:
            cmd = decode_command(data)
        except ValidationError as e:
            await self._reject_invalid(seq, _sent_id(self.sid, headers), _short(e), trace_id)
            return
        if cmd.session_id != self.sid:
            reason = "session_id differs from the subject"
            await self._reject_invalid(seq, cmd.command_id, reason, trace_id)
            return
        metrics.COMMANDS.labels(cmd.kind).inc()
        attributes = {
            **tracing.session_attributes(self.sid, self.state.session.task_id),
            "praxis.command_id": cmd.command_id,
        }
        with tracing.span(
            f"handle {cmd.kind}", headers=headers, kind=SpanKind.CONSUMER, attributes=attributes
        ):
            ctx = CommandContext.of(cmd, self.state, seq, trace_id)
            await self._handle_command(ctx, cmd, data)

    async def _handle_command(self, ctx: CommandContext, cmd: Command, raw: bytes) -> None:
        seq = ctx.input_seq
        assert seq is not None
        self.effects.replying = Replying(cmd.command_id, cmd.reply_to) if cmd.reply_to else None
        facts = await self._facts(seq, cmd)
        awaited = (
            isinstance(cmd, Suspend | Resume | Complete) and cmd.command_id == self._suspending
        )
        if awaited and (facts.resuming or cmd.command_id not in self.state.recent_commands):
            self._suspending = None  # taken: the messages kept before it wait for a resume
        try:
            decision = policy.decide(self.state, cmd, ctx, facts)
            await self._carry_out(decision, cmd, raw, ctx, facts)
        except Exception as e:
            if is_transient(e):
                raise
            await self._failed(ctx, cmd, raw, e)

    async def _facts(self, seq: int, cmd: Command) -> Facts:
        """What the policy needs to know of the world to decide ``cmd``."""
        resuming = self.state.progress == seq
        agent_offered, greeting = True, False
        creating = self.state.session.state is SessionState.CREATED
        if isinstance(cmd, CreateSession) and not resuming and creating:
            agent = self.ctx.registry.get(self.state.session.agent)
            agent_offered = agent is not None
            greeting = agent is not None and greets(agent, turn_context(self.state, None))
        follows = (
            isinstance(cmd, UserMessage)
            and not resuming
            and cmd.command_id not in self.state.recent_commands
            and await self._suspend_follows(seq)
        )
        return Facts(resuming, agent_offered, greeting, follows, datetime.now(UTC))

    async def _carry_out(
        self, decision: Decision, cmd: Command, raw: bytes, ctx: CommandContext, facts: Facts
    ) -> None:
        """Store a decision's events, then take its next step: decide again, or the turn."""
        while True:
            try:
                await self._record(decision.events, ctx)
            except MessageTooLargeError as e:
                if not decision.refuse_if_too_large:
                    raise
                await self._record(policy.too_large(self.state, ctx, cmd.kind, e).events, ctx)
                return
            step = decision.then
            if isinstance(step, policy.Again):
                facts = Facts(step.resuming, facts.agent_offered, facts.greets, False, facts.now)
                decision = policy.decide(self.state, cmd, ctx, facts)
                continue
            if isinstance(step, RunTurn):
                await self._turn(ctx, cmd, raw, step)
            return

    async def _record(self, events: tuple[Event, ...], ctx: CommandContext) -> None:
        for event in events:
            await self._commit(event, ctx)

    async def _commit(self, event: Event, ctx: CommandContext) -> None:
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

    def _snapshot(self) -> None:
        self.log.unsaved = 0
        self.effects.snapshot(self.state)

    async def _failed(self, ctx: CommandContext, cmd: Command, raw: bytes, e: Exception) -> None:
        """Handling ``cmd`` raised: record it and try again later (any worker), or, once it
        has failed ``command_attempts`` times, park it as a dead letter and go on."""
        seq = ctx.input_seq
        log.error("session %s: command %s at %s raised", self.sid, cmd.kind, seq, exc_info=e)
        error = f"{type(e).__name__}: {e}"[:2000]
        limit = self.bus.settings.command_attempts
        match policy.failure(self.state, ctx, cmd.kind, error, limit):
            case policy.Park() as park:
                await self._park(ctx, cmd, raw, park)
            case policy.Retry(event=event, delay=delay, message=message):
                await self._commit(event, ctx)
                self._retry_delay = delay
                raise AttemptFailedError(message)

    async def _park(self, ctx: CommandContext, cmd: Command, raw: bytes, park: policy.Park) -> None:
        """Store the command in the dead-letter bucket, then end it."""
        seq = ctx.input_seq
        assert seq is not None
        metrics.DEAD_LETTERS.inc()
        letter_id = dead_letter_id(self.sid, seq)
        letter = DeadLetter(
            id=letter_id,
            session_id=self.sid,
            task_id=self.state.session.task_id,
            seq=seq,
            command_id=cmd.command_id,
            command_kind=cmd.kind,
            command=json.loads(raw),
            attempts=park.attempts,
            error=park.reason,
            parked_at=datetime.now(UTC),
            worker_id=self.ctx.worker_id,
        )
        # First the letter, then the event: a crash in between parks it again, same key.
        await self.bus.dead_letters.put(letter_id, letter.model_dump_json().encode())
        log.error("session %s: command %s at %d parked as %s", self.sid, cmd.kind, seq, letter_id)
        await self._record(policy.parked(self.state, ctx, cmd.kind, letter_id, park), ctx)

    async def _reject_invalid(
        self, seq: int, command_id: str | None, reason: str, trace_id: str | None
    ) -> None:
        log.warning("session %s: invalid command at %d: %s", self.sid, seq, reason)
        record = self.state.session
        ctx = CommandContext(record.session_id, record.task_id, command_id, None, None, seq)
        ctx = replace(ctx, trace_id=trace_id)
        await self._record(policy.invalid(self.state, ctx, reason).events, ctx)

    async def _suspend_follows(self, seq: int) -> bool:
        """Whether the suspend seen on its way (if any) is stored after ``seq`` and will
        suspend the session. A command reaches this worker a moment before the stream
        stores it: it is looked for again, backing off, for up to a second."""
        wanted = self._suspending
        if wanted is None or self.state.session.state not in ACCEPTS_MESSAGES:
            return False
        needle = f'"command_id":"{wanted}"'.encode()
        delay, waited = 0.005, 0.0
        while True:
            stored = await direct.read_subject(
                self.bus.nc,
                self.bus.stream,
                subjects.inputs(self.sid),
                after=seq,
                timeout=self.bus.timeout,
            )
            if any(needle in m.data for m in stored):
                return True
            if waited >= 1.0:
                self._suspending = None  # never stored: nothing to wait for
                return False
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.2)

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
            await self._commit(event, ctx)
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

    # -- turns ---------------------------------------------------------------------------

    async def _turn(self, ctx: CommandContext, cmd: Command, raw: bytes, step: RunTurn) -> None:
        """Run (or finish) the turn answering command ``step.origin``, its events caused
        by the command being handled."""
        match policy.begin_turn(self.state, ctx, step.origin, self.bus.settings.turn_attempts):
            case Decision() as decision:
                await self._record(decision.events, ctx)
                return
            case policy.GiveUp() as gave_up:
                await self._park(ctx, cmd, raw, policy.Park(gave_up.attempts, gave_up.reason))
                return
            case policy.Start(attempt=attempt, fresh=fresh):
                pass
        agent = self.ctx.registry.get(self.state.session.agent)
        if fresh and agent is not None:
            await self._compact(ctx, agent)
        turn_id = new_id("turn")
        origin = step.origin
        seq = ctx.input_seq
        origin_seq = origin if origin != seq else None
        started = policy.turn_started(
            self.state, ctx, turn_id, attempt, self.ctx.worker_id, origin_seq
        )
        await self._commit(started, ctx)
        began = time.perf_counter()
        journal = self.turns.journal(self.state, ctx, turn_id, lambda e: self._commit(e, ctx))
        context = turn_context(self.state, step.content, attempt, turn_id, journal, origin)
        outcome = await self.turns.run(agent, context, self.state.session.agent)
        metrics.TURN_SECONDS.observe(time.perf_counter() - began)
        metrics.TURNS.labels(_turn_label(outcome)).inc()
        ms = (time.perf_counter() - began) * 1000
        events = policy.end_turn(self.state, ctx, turn_id, step.content, outcome, ms)
        try:
            await self._record(events, ctx)
        except MessageTooLargeError as e:
            if outcome.waiting is not None:
                raise
            # The reply is too large to store: the turn fails without it.
            failed = policy.TurnOutcome(
                error=f"the reply is too large to store ({e})",
                usage=outcome.usage,
                stopped_by=outcome.stopped_by,
            )
            end = policy.end_turn(self.state, ctx, turn_id, step.content, failed, ms)
            await self._record(end, ctx)

    async def _compact(self, ctx: CommandContext, agent: Agent) -> None:
        """Keep the agent's context within its policy (``context.compacted``)."""
        settings = self.bus.settings
        max_messages = min(
            agent.context_messages or settings.context_messages, settings.context_cap
        )
        max_chars = min(agent.context_chars or settings.context_chars, settings.context_chars)
        dropped = policy.compaction(self.state, max_messages, max_chars)
        if dropped:
            await self._commit(await self.turns.summarize(agent, self.state, ctx, dropped), ctx)

    # -- commands seen as they are sent ------------------------------------------------------

    async def on_command(self, msg: Msg) -> None:
        """A command sent to this session (as sent: it may not be stored yet)."""
        self.inbox.wake.set()  # a new command for this session
        cmd = self._control(msg)
        if cmd is None:
            return
        if isinstance(cmd, Suspend):
            self._suspending = cmd.command_id
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


def _turn_label(outcome: policy.TurnOutcome) -> str:
    if outcome.waiting is not None:
        return "waiting"
    return "completed" if outcome.error is None else "failed"


def _sent_id(session_id: str, headers: Mapping[str, str]) -> str | None:
    """The command id a command that cannot be read was sent under (its ``Nats-Msg-Id``,
    without the session it is scoped by): the id its sender follows."""
    msg_id = headers.get("Nats-Msg-Id")
    return msg_id.removeprefix(f"{session_id}.") if msg_id else None


def _short(e: ValidationError) -> str:
    errs = e.errors()
    if not errs:
        return str(e)
    first = errs[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"
