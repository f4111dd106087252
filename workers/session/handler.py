"""Handling one command: ask the policy, store what it decides, and carry it through:
decide again, run the turn it starts, record a failure and retry it, or park it.

Every step of a command gets its :class:`~.policy.CommandContext`; nothing about the
command being handled is kept on the handler (only the suspend seen on its way, which
outlives commands)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import nats.errors
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from praxis.bus import direct, metrics, subjects, tracing
from praxis.bus.errors import (
    BusError,
    MessageTooLargeError,
    TransientError,
)
from praxis.schemas import (
    ACCEPTS_MESSAGES,
    Checkpoint,
    Command,
    Complete,
    CreateSession,
    DeadLetter,
    Event,
    Resume,
    SessionState,
    Suspend,
    UserMessage,
    dead_letter_id,
    decode_command,
    new_id,
)
from praxis.workers.agents import Agent
from praxis.workers.session import policy
from praxis.workers.session.effects import Effects, Replying
from praxis.workers.session.inbox import Inbox
from praxis.workers.session.log import SessionLog
from praxis.workers.session.policy import CommandContext, Decision, Facts, RunTurn
from praxis.workers.session.recorder import Recorder
from praxis.workers.session.shared import RunContext
from praxis.workers.session.turn import TurnDriver, greets, turn_context

log = logging.getLogger("praxis.worker")


class AttemptFailedError(Exception):
    """Handling a command raised; it is recorded (``command.failed``) and tried again."""


def is_transient(e: BaseException) -> bool:
    """Whether an error says nothing about the command: the bus was unavailable, or the
    session moved to another owner. Such errors do not count as the command failing; a
    refusal (a message too large to store, say) fails the same way every time, and does."""
    if isinstance(e, BusError):
        return e.transient
    return isinstance(e, nats.errors.Error | OSError | TimeoutError)


class CommandHandler:
    def __init__(
        self,
        ctx: RunContext,
        log: SessionLog,
        inbox: Inbox,
        effects: Effects,
        turns: TurnDriver,
        recorder: Recorder,
    ) -> None:
        self.ctx = ctx
        self.bus = ctx.bus
        self.sid = log.sid
        self.log = log
        self.inbox = inbox
        self.effects = effects
        self.turns = turns
        self.recorder = recorder
        self.retry_delay = policy.RETRY_DELAY
        """How soon the run's unfinished work is offered again (after a failure)."""
        self.suspending: str | None = None
        """A suspend seen on its way to this session (its command id), not yet taken in
        order: the messages stored before it are kept for after a resume, not answered."""
        self._context_chars = policy.ContextChars()

    @property
    def state(self) -> Checkpoint:
        return self.log.state

    async def answer_queued(self) -> None:
        """Answer the messages kept while the session was suspended, oldest first (each
        with its own command id, so its sender can follow it)."""
        while (item := policy.next_queued(self.state, self.suspending is not None)) is not None:
            ctx, decision = policy.answer_queued(self.state, item)
            cmd = UserMessage(
                session_id=self.sid,
                task_id=self.state.session.task_id,
                content=item.content,
                **({"command_id": item.command_id} if item.command_id else {}),
            )
            raw = cmd.model_dump_json().encode()
            await self._carry_out(decision, cmd, raw, ctx, Facts(resuming=True))

    async def handle_seq(self, seq: int) -> None:
        msg = await self.inbox.next_input(seq)
        if msg is None or msg.seq != seq:
            raise TransientError(f"command {seq} of session {self.sid} is missing from the stream")
        await self.handle(msg.seq, msg.data, msg.headers)

    # -- commands ------------------------------------------------------------------------

    async def handle(self, seq: int, data: bytes, headers: Mapping[str, str]) -> None:
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
        awaited = isinstance(cmd, Suspend | Resume | Complete) and cmd.command_id == self.suspending
        if awaited and (facts.resuming or cmd.command_id not in self.state.recent_commands):
            self.suspending = None  # taken: the messages kept before it wait for a resume
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
            going_on = isinstance(decision.then, RunTurn | policy.Again)
            try:
                # A decision that goes on (a turn, say) is stored with what follows it.
                await self.recorder.record(decision.events, ctx, hold=going_on)
            except MessageTooLargeError as e:
                if not decision.refuse_if_too_large:
                    raise
                refused = policy.too_large(self.state, ctx, cmd.kind, e)
                await self.recorder.record(refused.events, ctx)
                return
            step = decision.then
            if isinstance(step, policy.Again):
                facts = Facts(step.resuming, facts.agent_offered, facts.greets, False, facts.now)
                decision = policy.decide(self.state, cmd, ctx, facts)
                continue
            if isinstance(step, RunTurn):
                await self._turn(ctx, cmd, raw, step)
            return

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
                await self.recorder.commit(event, ctx)
                self.retry_delay = delay
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
        await self.recorder.record(policy.parked(self.state, ctx, cmd.kind, letter_id, park), ctx)

    async def _reject_invalid(
        self, seq: int, command_id: str | None, reason: str, trace_id: str | None
    ) -> None:
        log.warning("session %s: invalid command at %d: %s", self.sid, seq, reason)
        record = self.state.session
        ctx = CommandContext(record.session_id, record.task_id, command_id, None, None, seq)
        ctx = replace(ctx, trace_id=trace_id)
        await self.recorder.record(policy.invalid(self.state, ctx, reason).events, ctx)

    async def _suspend_follows(self, seq: int) -> bool:
        """Whether the suspend seen on its way (if any) is stored after ``seq`` and will
        suspend the session. A command reaches this worker a moment before the stream
        stores it: it is looked for again, backing off, for up to a second."""
        wanted = self.suspending
        if wanted is None or self.state.session.state not in ACCEPTS_MESSAGES:
            return False
        needle = f'"command_id":"{wanted}"'.encode()
        delay, waited = 0.005, 0.0
        while True:
            p = self.bus.partition(self.sid)
            stored = await direct.read_subject(
                self.bus.nc,
                self.bus.partitions.stream(p),
                subjects.inputs(self.sid, p),
                after=seq,
                timeout=self.bus.timeout,
            )
            if any(needle in m.data for m in stored):
                return True
            if waited >= 1.0:
                self.suspending = None  # never stored: nothing to wait for
                return False
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.2)

    # -- turns ---------------------------------------------------------------------------

    async def _turn(self, ctx: CommandContext, cmd: Command, raw: bytes, step: RunTurn) -> None:
        """Run (or finish) the turn answering command ``step.origin``, its events caused
        by the command being handled."""
        settings = self.bus.settings
        redelivered = self.inbox.redelivered(ctx.input_seq)
        begin = policy.begin_turn(self.state, ctx, step.origin, settings.turn_attempts, redelivered)
        match begin:
            case Decision() as decision:
                await self.recorder.record(decision.events, ctx)
                return
            case policy.GiveUp() as gave_up:
                await self._park(ctx, cmd, raw, policy.Park(gave_up.attempts, gave_up.reason))
                return
            case policy.Start(attempt=attempt, fresh=fresh, eager=eager):
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
        await self.recorder.record((started,), ctx, hold=True)
        window = _Window(self.recorder, self.turns, 0.0 if eager else settings.group_commit)
        await window.open()
        began = time.perf_counter()
        journal = self.turns.journal(self.state, ctx, turn_id, lambda e: window.store(e, ctx))
        context = turn_context(
            self.state, step.content, attempt, turn_id, journal, origin, ctx.actor
        )
        try:
            outcome = await self.turns.run(agent, context, self.state.session.agent)
        finally:
            await window.close()
        metrics.TURN_SECONDS.observe(time.perf_counter() - began)
        metrics.TURNS.labels(_turn_label(outcome)).inc()
        ms = (time.perf_counter() - began) * 1000
        events = policy.end_turn(self.state, ctx, turn_id, step.content, outcome, ms)
        try:
            await self.recorder.record(events, ctx)
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
            await self.recorder.record(end, ctx)

    async def _compact(self, ctx: CommandContext, agent: Agent) -> None:
        """Keep the agent's context within its policy (``context.compacted``)."""
        settings = self.bus.settings
        max_messages = min(
            agent.context_messages or settings.context_messages, settings.context_cap
        )
        max_chars = min(agent.context_chars or settings.context_chars, settings.context_chars)
        chars = self._context_chars.of(self.state.context)
        dropped = policy.compaction(self.state, max_messages, max_chars, chars)
        if dropped:
            summary = await self.turns.summarize(agent, self.state, ctx, dropped)
            await self.recorder.record((summary,), ctx, hold=True)  # stored with the turn


class _Window:
    """A turn's group commit: its start (and what was staged before it, the message it
    answers) is stored with its end if the turn ends within ``seconds``; otherwise when
    they pass, or when a tool call must be journalled first. Token deltas are held until
    the start is stored: a follower sees a turn start before its deltas."""

    def __init__(self, recorder: Recorder, turns: TurnDriver, seconds: float) -> None:
        self.recorder = recorder
        self.turns = turns
        self.seconds = seconds
        self._task: asyncio.Task[None] | None = None
        self._storing = False

    async def open(self) -> None:
        if self.seconds <= 0:
            await self.recorder.flush()
            return
        self.turns.hold()
        self._task = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.seconds)
        self._storing = True  # from here on, close() waits for the store
        await self._store_start()

    async def _store_start(self) -> None:
        await self.recorder.flush()
        await self.turns.release()

    async def store(self, event: Event, ctx: CommandContext) -> None:
        """Journal a step of the turn now (with the start, if it is still staged)."""
        await self.recorder.record((event,), ctx, hold=True)
        await self._store_start()

    async def close(self) -> None:
        """The turn ended: a start not stored yet goes with its end, and the deltas held
        back with the notice of that record."""
        task, self._task = self._task, None
        if task is not None and not task.done() and not self._storing:
            task.cancel()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        self.recorder.log.deltas = self.turns.take_held()


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
