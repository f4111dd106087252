"""One session's run on a worker: claim, handle every pending command in order, release.

Nothing here outlives the run. The state is loaded from the bus at the start (snapshot
plus later events), every change is an event appended with the fence, and the state is
advanced by the same fold readers use. A command whose previous owner died half-way is
finished from where its events stop: a stored reply is never produced twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from praxis.bus import Bus, commit, direct, leases, logs, metrics, subjects, tracing, with_retry
from praxis.bus.client import SessionClient
from praxis.bus.errors import (
    BusError,
    FenceRejectedError,
    MessageTooLargeError,
    TransientError,
    UnknownAgentError,
)
from praxis.bus.state import load_state
from praxis.bus.tasks import cancel_and_wait
from praxis.schemas import (
    ACCEPTS_MESSAGES,
    TERMINAL,
    AgentMessage,
    CancelTurn,
    Checkpoint,
    Command,
    CommandDeadLettered,
    CommandFailed,
    CommandOutcome,
    CommandRejected,
    CommandSkipped,
    Complete,
    ContextCompacted,
    CreateSession,
    DeadLetter,
    DecideToolCall,
    Event,
    Expire,
    Interface,
    MessageQueued,
    Resume,
    SessionClaimed,
    SessionCreated,
    SessionState,
    StateChanged,
    Suspend,
    TailNotice,
    ToolCall,
    ToolCallsRequested,
    ToolDecided,
    ToolResult,
    TurnCompleted,
    TurnFailed,
    TurnRolledBack,
    TurnStarted,
    TurnWaiting,
    Usage,
    UserMessage,
    UserMessageAccepted,
    apply,
    can_transition,
    dead_letter_id,
    decode_command,
    new_id,
)
from praxis.schemas.events import created_by
from praxis.schemas.records import OutcomeKind
from praxis.workers.agents import Agent, AgentRegistry, TurnContext
from praxis.workers.agents.base import (
    SUMMARY_CHARS,
    AgentFailure,
    AwaitingApproval,
    TokenUsage,
    TurnJournal,
    builtin_summary,
)
from praxis.workers.live import LiveTurn

log = logging.getLogger("praxis.worker")
V = TypeVar("V")
_CONTROL_KINDS = (b'"cancel_turn"', b'"suspend"', b'"user_message"')
"""Commands the owner acts on as they arrive, while a turn is in flight."""
RETRY_DELAY = 0.5
"""Seconds before work handed back after a bus error is offered again."""
EXPIRY_SLACK = 0.05
EXPIRY_ACTOR = "expiry timer"
"""Seconds early an expiry may be taken (the timer runs on the server's clock)."""


class LeaseLostError(Exception):
    pass


class AttemptFailedError(Exception):
    """Handling a command raised; it is recorded (``command.failed``) and tried again."""


class GaveUpError(Exception):
    """A turn was started ``turn_attempts`` times (its workers died): park the command."""

    def __init__(self, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts (workers died during the turn)")
        self.attempts = attempts


def is_transient(e: BaseException) -> bool:
    """Whether an error says nothing about the command: the bus was unavailable, or the
    session moved to another owner. Such errors do not count as the command failing; a
    refusal (a message too large to store, say) fails the same way every time, and does."""
    if isinstance(e, BusError):
        return e.transient
    return isinstance(e, nats.errors.Error | OSError | TimeoutError)


@dataclass(slots=True)
class Cached:
    state: Checkpoint
    tail: int
    lease_hint: int | None
    unsaved: int = 0
    """Events in ``state`` after the latest snapshot stored."""


class StateCache:
    """Recently folded session states: a cache that may be dropped at any time.

    An entry is only used when the session's latest event is still the one it was folded
    up to; the fence guarantees that nothing else was written in between.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, Cached] = OrderedDict()

    def take(self, session_id: str) -> Cached | None:
        return self._entries.pop(session_id, None)

    def put(self, session_id: str, entry: Cached) -> None:
        if self.size <= 0:
            return
        self._entries[session_id] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class Bounded(Generic[V]):
    """A dict that forgets its oldest entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        return self._items.get(key)

    def put(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)


class RunContext:
    """What runners share within one worker process."""

    def __init__(self, bus: Bus, registry: AgentRegistry, worker_id: str) -> None:
        self.bus = bus
        self.registry = registry
        self.worker_id = worker_id
        self.cache = StateCache(bus.settings.state_cache)
        self.timers = Bounded[datetime](max(bus.settings.state_cache, 1000))
        """The due time of the expiry timer this worker last set, per session."""
        self.stopping = asyncio.Event()
        """Set when the worker drains: runners stop lingering."""
        self.resting: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        """Wrapped around a wait for input: the worker's slot is free meanwhile."""
        self.crowded = asyncio.Event()
        """Set while the worker runs as many sessions as it may, or more work waits on the
        server: runners stop lingering, so that waiting sessions get their turn (a session
        in a fast loop of messages would otherwise keep its slot while the loop lasts)."""


def stream_seq(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


class SessionRunner:
    def __init__(self, ctx: RunContext, session_id: str) -> None:
        self.ctx = ctx
        self.bus = ctx.bus
        self.sid = session_id
        self.triggers: list[Msg] = []
        self.ck: Checkpoint | None = None
        self._loaded: tuple[Checkpoint, int] | None = None
        self._first: direct.StoredMsg | None = None
        self.tail = 0
        self._claimed = False
        self._live: LiveTurn | None = None
        self._subs: list[Subscription] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._optimistic = False
        self._unsaved = 0  # events appended since the latest snapshot
        self._retry_delay = RETRY_DELAY
        self._stopped_by: str | None = None
        self._suspending: str | None = None
        """A suspend seen on its way to this session (its command id), not yet taken in
        order: the messages stored before it are kept for after a resume, not answered."""
        self._waiting: list[ToolCall] | None = None
        self._replying: Replying | None = None
        self._actor: tuple[str | None, str | None] = (None, None)
        self._trace_id: str | None = None  # of the command being handled
        self.accepting = True
        """New triggers for the session may join this run (until its last input check)."""
        self.done = asyncio.Event()
        self._wake = asyncio.Event()  # a new input may be there: a trigger or a command seen

    @property
    def state(self) -> Checkpoint:
        assert self.ck is not None, "state not loaded"
        return self.ck

    # -- the run -------------------------------------------------------------------------

    def add_trigger(self, msg: Msg) -> None:
        self.triggers.append(msg)
        self._wake.set()

    async def run(self) -> None:
        logs.about(self.sid)  # every log line of this run (its own task) names the session
        # Read while claiming: what is read is only used if the claim succeeds, and the
        # fence rejects anything written from a state that was stale.
        cached = self.ctx.cache.take(self.sid)
        hint = cached.lease_hint if cached else None
        claimed, loaded = await asyncio.gather(
            leases.claim(self.bus.leases, self.sid, self.ctx.worker_id, hint),
            self._load(cached),
            return_exceptions=True,
        )
        failure = next((r for r in (claimed, loaded) if isinstance(r, BaseException)), None)
        if failure is not None:
            # The bus failed us before the work began (e.g. a server restarting): give the
            # lease and the triggers back rather than leave them to expire.
            self.accepting = False
            if isinstance(claimed, leases.Lease):
                with contextlib.suppress(Exception):
                    await leases.release(
                        self.bus.nc, self.bus.settings.leases_bucket, claimed, self.bus.timeout
                    )
            await self._settle_triggers(retry_delay=RETRY_DELAY)
            self.done.set()
            raise failure
        lease = claimed
        assert lease is None or isinstance(lease, leases.Lease)
        if lease is None:
            self.accepting = False
            await self._defer_triggers()
            self.done.set()
            return
        ok = False
        try:
            await self._with_renewal(lease, self._work)
            ok = True
        except (FenceRejectedError, LeaseLostError) as e:
            log.warning("session %s: stopped, no longer the owner (%s)", self.sid, e)
        except BusError as e:
            log.error("session %s: bus error, returned for retry: %s", self.sid, e)
        except AttemptFailedError as e:
            log.warning("session %s: %s", self.sid, e)
        finally:
            self.accepting = False
            await self._finish(lease, ok)

    async def _finish(self, lease: leases.Lease, ok: bool) -> None:
        try:
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if ok and self.ck is not None and self._unsaved:
                self._snapshot()  # the next run, here or elsewhere, reads no events
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
            hint: int | None = None
            with contextlib.suppress(Exception):
                hint = await leases.release(
                    self.bus.nc, self.bus.settings.leases_bucket, lease, self.bus.timeout
                )
            if ok and self.ck is not None:
                self.ctx.cache.put(self.sid, Cached(self.ck, self.tail, hint, self._unsaved))
            await self._settle_triggers(retry_delay=None if ok else self._retry_delay)
        finally:
            self.done.set()

    async def _with_renewal(
        self, lease: leases.Lease, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        task = asyncio.create_task(work())
        period = self.bus.settings.lease_ttl / 3
        lost = False
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=period)
                if task.done():
                    break
                if not await leases.renew(self.bus.leases, lease):
                    lost = True
                    task.cancel()
                    break
                for msg in self.triggers:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
        finally:
            if not task.done():
                await cancel_and_wait(task)
            try:
                await task
            except asyncio.CancelledError:
                if not lost:
                    raise
        if lost:
            raise LeaseLostError(f"lease on {self.sid} expired")

    async def _load(self, cached: Cached | None) -> None:
        """The state (the cached one is used as is: the first append's fence checks it)
        and the first pending input."""
        if cached is not None:
            self._loaded = (cached.state, cached.tail)
            self._unsaved = cached.unsaved
            self._optimistic = True
        else:
            self._loaded = await load_state(self.bus, self.sid, include_pending=False)
        if self._loaded is not None:
            ck = self._loaded[0]
            if ck.progress <= ck.input_cursor:
                self._first = await self._next_input(ck.input_cursor + 1)

    async def _next_input(self, from_seq: int) -> direct.StoredMsg | None:
        return await direct.next_by_subject(
            self.bus.nc, self.bus.stream, subjects.inputs(self.sid), from_seq, self.bus.timeout
        )

    async def _work(self) -> None:
        found = self._loaded
        if found is None:
            if not await self._create_from_bus():
                return
        else:
            self.ck, self.tail = found
        logs.about(self.sid, self.state.session.task_id)
        self._claimed = self.state.owner == self.ctx.worker_id
        await self._tell_tail()
        await self._subscribe()
        while True:
            try:
                await self._drain()
                break
            except FenceRejectedError:
                if not self._optimistic:
                    raise
                await self._reload()  # the cached state was stale: read it and go on
        if self._optimistic:
            # Nothing was appended, so nothing checked the cached state: if another worker
            # moved the session on meanwhile (and died before telling its followers, say),
            # the tail told above was old. Tell the real one; forget the stale state.
            last = await direct.last_by_subject(
                self.bus.nc, self.bus.stream, subjects.events(self.sid), self.bus.timeout
            )
            if last is not None and last.seq != self.tail:
                self.ck = None
                await self.bus.nc.publish(
                    subjects.live(self.sid), TailNotice(seq=last.seq).model_dump_json().encode()
                )

    async def _tell_tail(self) -> None:
        """Tell followers the latest event this run starts from (one they missed, a notice
        lost with a worker that died, is then read back)."""
        await self.bus.nc.publish(
            subjects.live(self.sid), TailNotice(seq=self.tail).model_dump_json().encode()
        )

    async def _reload(self) -> None:
        self._optimistic = False
        self._first = None
        found = await load_state(self.bus, self.sid, include_pending=False)
        if found is None:
            raise TransientError(f"session {self.sid} vanished")
        self.ck, self.tail = found
        self._claimed = self.state.owner == self.ctx.worker_id
        await self._tell_tail()

    async def _drain(self) -> None:
        """Handle every pending input; new triggers may join until the last check."""
        if self.state.progress > self.state.input_cursor:
            await self._handle_seq(self.state.progress)  # finish what a dead owner left
        read = True  # the first time round: the triggers that started this run
        while True:
            await self._answer_queued()
            # Before the read: an input arriving after it wakes the linger. Every command
            # sent while this run lasts wakes it (the worker's subscription to commands),
            # and every stored one has a trigger: with neither since the last read there
            # is nothing new to read (one the subscription missed is still taken, by its
            # trigger, in this run or the next).
            read = read or self._wake.is_set() or self._trigger_after_cursor()
            self._wake.clear()
            nxt, self._first = self._first, None
            if (nxt is None or nxt.seq <= self.state.input_cursor) and read:
                nxt = await self._next_input(self.state.input_cursor + 1)
            elif nxt is not None and nxt.seq <= self.state.input_cursor:
                nxt = None
            read = False
            if nxt is None:
                nxt = await self._linger()
            if nxt is None:
                self.accepting = False
                if not self._trigger_after_cursor():
                    return
                self.accepting = True  # a trigger joined after the last read: go on
                read = True
                continue
            await self._handle(nxt.seq, nxt.data, nxt.headers)

    def _trigger_after_cursor(self) -> bool:
        return any(stream_seq(m) > self.state.input_cursor for m in self.triggers)

    async def _linger(self) -> direct.StoredMsg | None:
        """Keep the session a moment after its last input: the next one, if it comes soon,
        is taken without a new claim (whichever worker its trigger reaches).

        A command reaches subscribers a moment before the stream has stored it, so after a
        wake the input is read again, backing off, until it is there or the linger ends.
        """
        with self.ctx.resting():
            return await self._wait_for_input()

    async def _wait_for_input(self) -> direct.StoredMsg | None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.bus.settings.linger
        recheck: float | None = None  # set once woken: read again after this long
        ctx = self.ctx
        while not ctx.stopping.is_set() and not ctx.crowded.is_set():
            remaining = end - loop.time()
            if remaining <= 0:
                return None
            woken = asyncio.ensure_future(self._wake.wait())
            stopping = asyncio.ensure_future(ctx.stopping.wait())
            crowded = asyncio.ensure_future(ctx.crowded.wait())
            wait = remaining if recheck is None else min(remaining, recheck)
            await asyncio.wait(
                {woken, stopping, crowded}, timeout=wait, return_when="FIRST_COMPLETED"
            )
            for waiter in (woken, stopping, crowded):
                waiter.cancel()
            if self._wake.is_set():
                self._wake.clear()
                recheck = 0.001
            elif recheck is None:
                continue
            else:
                recheck = min(recheck * 2, 0.05)
            nxt = await self._next_input(self.state.input_cursor + 1)
            if nxt is not None:
                return nxt
        return None

    async def _answer_queued(self) -> None:
        """Answer the messages kept while the session was suspended, oldest first (each
        with its own command id, so its sender can follow it)."""
        while (
            self.state.queued
            and self.state.session.state is SessionState.ACTIVE
            and not self._is_waiting()
            and self._suspending is None
        ):
            item = self.state.queued[0]
            self._actor = (item.command_id, item.actor)
            if not item.accepted:
                meta = self._meta(item.command_id, item.interface, item.seq)
                await self._append(UserMessageAccepted(**meta, content=item.content))
            try:
                await self._turn(item.seq, item.command_id or "", item.interface, item.content)
            except GaveUpError as e:
                cmd = UserMessage(
                    session_id=self.sid,
                    task_id=self.state.session.task_id,
                    content=item.content,
                    **({"command_id": item.command_id} if item.command_id else {}),
                )
                data = cmd.model_dump_json().encode()
                await self._park(item.seq, cmd, data, e.attempts, str(e))

    async def _handle_seq(self, seq: int) -> None:
        msg = await direct.next_by_subject(
            self.bus.nc, self.bus.stream, subjects.inputs(self.sid), seq, self.bus.timeout
        )
        if msg is None or msg.seq != seq:
            raise TransientError(f"command {seq} of session {self.sid} is missing from the stream")
        await self._handle(msg.seq, msg.data, msg.headers)

    # -- commands ------------------------------------------------------------------------

    async def _handle(self, seq: int, data: bytes, headers: Mapping[str, str]) -> None:
        try:
            cmd = decode_command(data)
        except ValidationError as e:
            await self._reject_invalid(seq, _sent_id(self.sid, headers), _short(e))
            return
        if cmd.session_id != self.sid:
            await self._reject_invalid(seq, cmd.command_id, "session_id differs from the subject")
            return
        metrics.COMMANDS.labels(cmd.kind).inc()
        attributes = {
            **tracing.session_attributes(self.sid, self.state.session.task_id),
            "praxis.command_id": cmd.command_id,
        }
        # The sender's trace goes on here, and into every event this command causes.
        self._trace_id = tracing.trace_id_of(headers)
        try:
            with tracing.span(
                f"handle {cmd.kind}", headers=headers, kind=SpanKind.CONSUMER, attributes=attributes
            ):
                await self._handle_command(seq, cmd, data)
        finally:
            self._trace_id = None

    async def _handle_command(self, seq: int, cmd: Command, data: bytes) -> None:
        resuming = self.state.progress == seq
        self._replying = Replying(cmd.command_id, cmd.reply_to) if cmd.reply_to else None
        self._actor = (cmd.command_id, cmd.actor)
        if not resuming and cmd.command_id in self.state.recent_commands:
            await self._skip(seq, cmd, "repeat of a command already handled")
            return
        try:
            await self._handlers()[type(cmd)](seq, cmd, resuming)
        except GaveUpError as e:
            await self._park(seq, cmd, data, e.attempts, str(e))
        except Exception as e:
            if is_transient(e):
                raise
            await self._failed(seq, cmd, data, e)

    async def _failed(self, seq: int, cmd: Command, data: bytes, e: Exception) -> None:
        """Handling ``cmd`` raised: record it and try again later (any worker), or, once it
        has failed ``command_attempts`` times, park it as a dead letter and go on."""
        log.error("session %s: command %s at %d raised", self.sid, cmd.kind, seq, exc_info=e)
        error = f"{type(e).__name__}: {e}"[:2000]
        failing = self.state.failing
        attempt = (failing.attempts if failing and failing.seq == seq else 0) + 1
        limit = self.bus.settings.command_attempts
        if attempt >= limit:
            reason = f"failed {attempt} times; last error: {error}"
            await self._park(seq, cmd, data, attempt, reason)
            return
        meta = self._meta(cmd.command_id, cmd.interface, None)
        failed = CommandFailed(
            **meta, command_kind=cmd.kind, failed_seq=seq, attempt=attempt, error=error, retry=True
        )
        await self._append(failed)
        self._retry_delay = min(RETRY_DELAY * 2 ** (attempt - 1), 5.0)
        raise AttemptFailedError(
            f"{cmd.kind} at {seq} failed (attempt {attempt} of {limit}), "
            f"tried again in {self._retry_delay:g}s: {error}"
        )

    async def _park(self, seq: int, cmd: Command, data: bytes, attempts: int, reason: str) -> None:
        """Store the command in the dead-letter bucket, then end it with
        ``command.dead_lettered`` (a turn in flight for it fails first)."""
        metrics.DEAD_LETTERS.inc()
        letter_id = dead_letter_id(self.sid, seq)
        letter = DeadLetter(
            id=letter_id,
            session_id=self.sid,
            task_id=self.state.session.task_id,
            seq=seq,
            command_id=cmd.command_id,
            command_kind=cmd.kind,
            command=json.loads(data),
            attempts=attempts,
            error=reason,
            parked_at=datetime.now(UTC),
            worker_id=self.ctx.worker_id,
        )
        # First the letter, then the event: a crash in between parks it again, same key.
        await self.bus.dead_letters.put(letter_id, letter.model_dump_json().encode())
        log.error("session %s: command %s at %d parked as %s", self.sid, cmd.kind, seq, letter_id)
        meta = self._meta(cmd.command_id, cmd.interface, seq)
        turn = self.state.turn
        if turn is not None and turn.input_seq == seq:
            await self._append(
                TurnFailed(**meta, turn_id=turn.turn_id, reason=f"dead-lettered: {reason}")
            )
        await self._append(
            CommandDeadLettered(
                **meta,
                final=True,
                command_kind=cmd.kind,
                dead_letter_id=letter_id,
                attempts=attempts,
                reason=reason,
            )
        )

    def _handlers(self) -> dict[type[Command], Callable[[int, Any, bool], Awaitable[None]]]:
        return {
            CreateSession: self._on_create,
            UserMessage: self._on_message,
            Suspend: self._on_transition,
            Resume: self._on_transition,
            Complete: self._on_transition,
            CancelTurn: self._on_cancel,
            Expire: self._on_expire,
            DecideToolCall: self._on_decide,
        }

    async def _on_create(self, seq: int, cmd: CreateSession, resuming: bool) -> None:
        """Start the session: the agent's greeting, if it has one, or the answer to the
        create's own first message (a whole turn in one command, for pipelines)."""
        agent = self.ctx.registry.get(self.state.session.agent)
        if not resuming:
            if self.state.session.state is not SessionState.CREATED:
                await self._reject(seq, cmd, "session already exists")
                return
            if agent is None:
                reason = f"agent {self.state.session.agent!r} is not available here"
                await self._transition(seq, cmd, SessionState.FAILED, True, reason)
                return
            turn = cmd.message is not None or _greets(agent, self._context(None))
            await self._transition(seq, cmd, SessionState.ACTIVE, not turn, "started")
            if not turn:
                return
        if cmd.message is None:
            await self._turn(seq, cmd.command_id, cmd.interface, None)
            return
        if self.state.last_user is None or self.state.last_user[0] != seq:
            accepted = UserMessageAccepted(
                **self._meta(cmd.command_id, cmd.interface, seq),
                content=cmd.message,
            )
            try:
                await self._append(accepted)
            except MessageTooLargeError as e:
                await self._reject(seq, cmd, f"the message is too large to store ({e})")
                return
        await self._turn(seq, cmd.command_id, cmd.interface, cmd.message)

    async def _on_message(self, seq: int, cmd: UserMessage, resuming: bool) -> None:
        if not resuming and await self._suspend_follows(seq):
            # A suspend was sent after this message: it takes effect first, and this
            # message waits for the resume (in order, under its own command id).
            meta = self._meta(cmd.command_id, cmd.interface, seq)
            await self._append(MessageQueued(**meta, final=True, content=cmd.content))
            return
        if not resuming and self._is_waiting() and not await self._while_waiting(seq, cmd):
            return
        if not resuming:
            state = self.state.session.state
            busy = self._came_while_busy(seq)
            way = cmd.on_busy or self.state.session.double_texting
            if busy and way == "reject":
                reason = "the session was busy with an earlier message (double texting: reject)"
                await self._reject(seq, cmd, reason)
                return
            last = self.state.last_turn
            if busy and way == "rollback" and last is not None:
                meta = self._meta(cmd.command_id, cmd.interface, seq)
                rollback = TurnRolledBack(
                    **meta, turn_id=last.turn_id, from_seq=last.start_seq, to_seq=last.end_seq
                )
                await self._append(rollback)
            if state is SessionState.SUSPENDED and cmd.queue:
                meta = self._meta(cmd.command_id, cmd.interface, seq)
                await self._append(MessageQueued(**meta, final=True, content=cmd.content))
                return
            if state not in ACCEPTS_MESSAGES:
                await self._reject(seq, cmd, f"session is {state.value} and takes no messages")
                return
            if state is SessionState.CREATED:
                await self._transition(seq, cmd, SessionState.ACTIVE, False, None)
            accepted = UserMessageAccepted(
                **self._meta(cmd.command_id, cmd.interface, seq),
                content=cmd.content,
            )
            try:
                await self._append(accepted)
            except MessageTooLargeError as e:
                await self._reject(seq, cmd, f"the message is too large to store ({e})")
                return
        await self._turn(seq, cmd.command_id, cmd.interface, cmd.content)

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

    def _is_waiting(self) -> bool:
        turn = self.state.turn
        return turn is not None and bool(turn.waiting)

    async def _while_waiting(self, seq: int, cmd: UserMessage) -> bool:
        """A message while a turn waits for approval: kept until the turn ends (enqueue),
        refused (reject), or it ends the waiting turn (interrupt, rollback) and is taken
        like any message that came while busy. ``True``: go on taking it."""
        way = cmd.on_busy or self.state.session.double_texting
        turn = self.state.turn
        assert turn is not None
        tools = ", ".join(c.tool for c in turn.pending) or "tool calls"
        meta = self._meta(cmd.command_id, cmd.interface, seq)
        if way == "reject":
            reason = f"the session is waiting for approval of {tools} (double texting: reject)"
            await self._reject(seq, cmd, reason)
            return False
        if way == "enqueue":
            await self._append(MessageQueued(**meta, final=True, content=cmd.content))
            return False
        await self._end_waiting(meta, f"a newer message came while waiting for {tools}", cmd)
        return True

    async def _end_waiting(
        self, meta: dict[str, Any], why: str, cmd: Command, *, final: bool = False
    ) -> None:
        """End the turn that waits for approval (its text so far is kept, interrupted)."""
        turn = self.state.turn
        assert turn is not None
        if turn.text:
            await self._append(
                AgentMessage(**meta, turn_id=turn.turn_id, content=turn.text, interrupted=True)
            )
        await self._append(
            TurnFailed(
                **meta,
                turn_id=turn.turn_id,
                reason=f"interrupted: {why}",
                cancelled=True,
                cancelled_by=cmd.command_id,
                final=final,
            )
        )

    async def _on_decide(self, seq: int, cmd: DecideToolCall, resuming: bool) -> None:
        turn = self.state.turn
        if not resuming:
            state = self.state.session.state
            if state is not SessionState.ACTIVE:
                await self._reject(seq, cmd, f"session is {state.value}: resume it first")
                return
            if turn is None or not turn.waiting:
                await self._reject(seq, cmd, "no tool call is waiting for approval")
                return
            call = next((c for c in turn.waiting if c.call_id == cmd.call_id), None)
            if call is None:
                waiting = ", ".join(c.call_id for c in turn.pending)
                reason = f"no tool call {cmd.call_id!r} waits for approval (waiting: {waiting})"
                await self._reject(seq, cmd, reason)
                return
            if cmd.call_id in turn.decisions:
                verb = "approved" if turn.decisions[cmd.call_id].approved else "denied"
                await self._reject(seq, cmd, f"tool call {cmd.call_id!r} was already {verb}")
                return
            last = len(turn.pending) == 1
            await self._append(
                ToolDecided(
                    **self._meta(cmd.command_id, cmd.interface, seq),
                    final=not last,
                    call_id=cmd.call_id,
                    tool=call.tool,
                    approved=cmd.approve,
                    reason=cmd.reason,
                )
            )
            if not last:
                return  # the turn goes on once every call it waits on is decided
        turn = self.state.turn
        if turn is None:
            await self._skip(seq, cmd, "the turn it was for has ended")
            return
        await self._turn(seq, cmd.command_id, cmd.interface, turn.message, origin=turn.input_seq)

    def _came_while_busy(self, seq: int) -> bool:
        """Whether the message at ``seq`` was stored before the session's latest turn ended
        (it came while an earlier message was being answered, or was waiting to be)."""
        last = self.state.last_turn
        return last is not None and seq < last.end_seq

    async def _on_transition(self, seq: int, cmd: Suspend | Resume | Complete, _: bool) -> None:
        target = {
            Suspend: SessionState.SUSPENDED,
            Resume: SessionState.ACTIVE,
            Complete: SessionState.COMPLETED,
        }[type(cmd)]
        if cmd.command_id == self._suspending:
            self._suspending = None  # taken: the messages kept before it wait for a resume
        current = self.state.session.state
        if not can_transition(current, target):
            await self._reject(seq, cmd, f"cannot {cmd.kind} a session that is {current.value}")
            return
        await self._transition(seq, cmd, target, True, getattr(cmd, "reason", None))

    async def _on_cancel(self, seq: int, cmd: CancelTurn, _: bool) -> None:
        if self._is_waiting():
            meta = self._meta(cmd.command_id, cmd.interface, seq)
            await self._end_waiting(meta, f"cancelled by {cmd.command_id}", cmd, final=True)
            return
        # A cancel acts on the turn in flight as it arrives (on_command); taken in order,
        # after that turn, there is nothing left to cancel.
        await self._skip(seq, cmd, "no turn in flight when the cancel was taken in order")

    async def _on_expire(self, seq: int, cmd: Expire, _: bool) -> None:
        record = self.state.session
        if record.state in TERMINAL:
            await self._skip(seq, cmd, f"the session already ended ({record.state.value})")
            return
        now = datetime.now(UTC)
        due = record.expires_at
        if due is None or now < due - timedelta(seconds=EXPIRY_SLACK):
            await self._skip(seq, cmd, "not due: there was activity after the timer was set")
            return
        lifetime = record.created_at + timedelta(seconds=record.max_lifetime)
        if record.max_lifetime > 0 and lifetime <= due:
            detail = f"its lifetime of {_span(record.max_lifetime)} ended"
        else:
            detail = f"idle for {_span(record.idle_timeout)}"
        await self._transition(seq, cmd, SessionState.EXPIRED, True, "expired", detail)

    async def _transition(
        self,
        seq: int,
        cmd: Command,
        target: SessionState,
        final: bool,
        reason: str | None,
        detail: str | None = None,
    ) -> None:
        if target in TERMINAL and self._is_waiting():
            why = f"the session ended ({target.value}) while waiting for approval"
            await self._end_waiting(self._meta(cmd.command_id, cmd.interface, seq), why, cmd)
        meta = self._meta(cmd.command_id, cmd.interface, seq)
        meta |= {"state": target}
        await self._append(
            StateChanged(
                **meta,
                final=final,
                from_state=self.state.session.state,
                to_state=target,
                reason=reason,
                detail=detail,
            )
        )

    async def _reject(self, seq: int, cmd: Command, reason: str) -> None:
        await self._conclude(CommandRejected, seq, cmd.command_id, cmd.interface, cmd.kind, reason)

    async def _skip(self, seq: int, cmd: Command, reason: str) -> None:
        await self._conclude(CommandSkipped, seq, cmd.command_id, cmd.interface, cmd.kind, reason)

    async def _reject_invalid(self, seq: int, command_id: str | None, reason: str) -> None:
        log.warning("session %s: invalid command at %d: %s", self.sid, seq, reason)
        reason = f"invalid command: {reason}"
        await self._conclude(CommandRejected, seq, command_id, Interface.BUS, "invalid", reason)

    async def _conclude(
        self,
        kind: type[CommandRejected | CommandSkipped],
        seq: int,
        command_id: str | None,
        interface: Interface | None,
        command_kind: str,
        reason: str,
    ) -> None:
        """End a command with one event that has no other effect."""
        meta = self._meta(command_id, interface, seq)
        await self._append(kind(**meta, final=True, command_kind=command_kind, reason=reason))

    async def _create_from_bus(self) -> bool:
        """Inputs for a session with no events: a create published on the bus makes one."""
        first = await direct.next_by_subject(
            self.bus.nc, self.bus.stream, subjects.inputs(self.sid), 1, self.bus.timeout
        )
        try:
            cmd = decode_command(first.data) if first else None
        except ValidationError:
            cmd = None
        if not isinstance(cmd, CreateSession) or cmd.session_id != self.sid:
            log.warning("session %s: commands for an unknown session dropped", self.sid)
            await self._drop_triggers()
            return False
        if self.ctx.registry.get(cmd.agent) is None:
            await self._refuse_create(cmd, self.ctx.registry.names())
            return False
        try:
            settings = self.bus.settings
            created = created_by(cmd, settings.session_idle_timeout, settings.session_max_lifetime)
            assert first is not None
            trace_id = tracing.trace_id_of(first.headers)
            await self._append(created.model_copy(update={"trace_id": trace_id}))
        except MessageTooLargeError as e:  # its metadata: the edge bounds it, the bus may not
            log.warning("session %s: not created, its first event is too large: %s", self.sid, e)
            await self._drop_triggers()
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
        await self._drop_triggers()

    async def _drop_triggers(self) -> None:
        for msg in self.triggers:
            with contextlib.suppress(Exception):
                await msg.term()
        self.triggers.clear()

    # -- turns ---------------------------------------------------------------------------

    async def _turn(
        self,
        seq: int,
        command_id: str,
        interface: Interface | None,
        content: str | None,
        *,
        origin: int | None = None,
    ) -> None:
        """Run (or finish) the turn answering command ``origin`` (``seq``, unless the turn
        goes on after an approval), its events caused by command ``seq``."""
        meta = self._meta(command_id, interface, seq)
        origin = origin or seq
        turn = self.state.turn
        attempt = 1
        if turn is not None and turn.input_seq == origin:
            if turn.replied:  # the reply is stored: only the end of the turn is missing
                await self._append(
                    TurnCompleted(**meta, final=True, turn_id=turn.turn_id, duration_ms=0)
                )
                return
            # Taken over from a worker that died in it: one more attempt. Going on after
            # an approval is not a new attempt.
            attempt = 1 if turn.waiting else turn.attempt + 1
        if attempt > self.bus.settings.turn_attempts:
            raise GaveUpError(attempt - 1)
        if turn is None or turn.input_seq != origin:
            await self._compact(meta)
        turn_id = new_id("turn")
        await self._append(
            TurnStarted(
                **meta,
                turn_id=turn_id,
                attempt=attempt,
                worker_id=self.ctx.worker_id,
                origin_seq=origin if origin != seq else None,
            )
        )
        began = time.perf_counter()
        text, error, spent = await self._run_agent(turn_id, content, attempt, meta, origin)
        usage = Usage(**asdict(spent)) if spent else None
        metrics.TURN_SECONDS.observe(time.perf_counter() - began)
        if self._waiting is not None:
            metrics.TURNS.labels("waiting").inc()
            calls, self._waiting = self._waiting, None
            await self._append(
                TurnWaiting(
                    **meta, final=True, turn_id=turn_id, calls=calls, message=content, text=text
                )
            )
            return
        if text:
            message = AgentMessage(
                **meta, turn_id=turn_id, content=text, interrupted=error is not None
            )
            try:
                await self._append(message)
            except MessageTooLargeError as e:
                error = f"the reply is too large to store ({e})"
        metrics.TURNS.labels("completed" if error is None else "failed").inc()
        if error is None:
            ms = (time.perf_counter() - began) * 1000
            await self._append(
                TurnCompleted(**meta, final=True, turn_id=turn_id, duration_ms=ms, usage=usage)
            )
        else:
            await self._append(
                TurnFailed(
                    **meta,
                    final=True,
                    turn_id=turn_id,
                    reason=error,
                    cancelled=self._stopped_by is not None,
                    cancelled_by=self._stopped_by,
                    usage=usage,
                )
            )

    async def _compact(self, meta: dict[str, Any]) -> None:
        """Keep the agent's context within its policy: past its message or character
        budget, the oldest messages (down to half the budgets) become part of a running
        summary, recorded as ``context.compacted`` (the history keeps them)."""
        agent = self.ctx.registry.get(self.state.session.agent)
        if agent is None:
            return
        settings = self.bus.settings
        max_messages = min(
            agent.context_messages or settings.context_messages, settings.context_cap
        )
        max_chars = min(agent.context_chars or settings.context_chars, settings.context_chars)
        context = self.state.context
        if len(context) <= max_messages and sum(len(m.content) for m in context) <= max_chars:
            return
        kept, chars = 0, 0
        for m in reversed(context):  # the newest, within half of each budget (at least one)
            if kept and (kept >= max_messages // 2 or chars + len(m.content) > max_chars // 2):
                break
            kept, chars = kept + 1, chars + len(m.content)
        dropped = context[: len(context) - kept]
        if not dropped:
            return
        try:
            summary = agent.summarize(self.state.summary, dropped)
            if inspect.isawaitable(summary):
                summary = await summary
        except Exception:
            log.exception("session %s: the agent's summarize failed; built-in used", self.sid)
            summary = builtin_summary(self.state.summary, dropped)
        await self._append(
            ContextCompacted(
                **meta,
                from_seq=dropped[0].seq,
                to_seq=dropped[-1].seq,
                messages=len(dropped),
                summary=str(summary)[: 4 * SUMMARY_CHARS],
            )
        )

    async def _run_agent(
        self, turn_id: str, content: str | None, attempt: int, meta: dict[str, Any], origin: int
    ) -> tuple[str, str | None, TokenUsage]:
        agent = self.ctx.registry.get(self.state.session.agent)
        if agent is None:
            name = self.state.session.agent
            return "", f"agent {name!r} is not available on this worker", TokenUsage()
        ctx = self._context(content, attempt, turn_id, self._journal(meta, turn_id), origin)
        text, error = await self._stream(turn_id, lambda: _pieces_for(agent, ctx))
        return text, error, ctx.usage

    async def _stream(
        self, turn_id: str, pieces: Callable[[], AsyncIterator[str]]
    ) -> tuple[str, str | None]:
        """Run the agent's reply (everything the agent's code does happens in here, so
        whatever it raises or however long it takes, the turn ends with a reason)."""
        live = LiveTurn(self.sid, turn_id)
        self._live = live
        self._stopped_by = None
        live.task = asyncio.create_task(self._consume(live, pieces))
        timeout = self.bus.settings.turn_timeout
        try:
            async with asyncio.timeout(timeout):
                await live.task
            return live.text, None
        except TimeoutError:
            return live.text, f"timed out after {timeout:g}s"
        except AgentFailure as e:
            log.warning("session %s: turn failed: %s", self.sid, e)
            return live.text, str(e) or type(e).__name__
        except AwaitingApproval as e:
            self._waiting = e.calls
            return live.text, None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if live.cancelled_by is not None and (current is None or current.cancelling() == 0):
                self._stopped_by = live.cancelled_by
                return live.text, f"{live.why} by {live.cancelled_by}"
            raise
        except Exception as e:
            log.exception("session %s: agent failed", self.sid)
            return live.text, f"agent error: {type(e).__name__}: {e}"
        finally:
            self._live = None

    async def _consume(self, live: LiveTurn, pieces: Callable[[], AsyncIterator[str]]) -> None:
        subject = subjects.live(self.sid)
        async for piece in pieces():
            if piece:
                delta = live.add(piece)
                await self.bus.nc.publish(subject, delta.model_dump_json().encode())

    def _journal(self, meta: dict[str, Any], turn_id: str) -> TurnJournal:
        """The turn's recorded steps, and the way to record more (one append at a time:
        tools may run concurrently)."""
        turn = self.state.turn
        lock = asyncio.Lock()

        async def record_response(step: int, calls: list[ToolCall], response: str) -> None:
            event = ToolCallsRequested(
                **meta, turn_id=turn_id, step=step, calls=calls, response=response
            )
            async with lock:
                await self._append(event)

        async def record_result(call_id: str, tool: str, content: Any, denied: bool) -> None:
            event = ToolResult(
                **meta, turn_id=turn_id, call_id=call_id, tool=tool, content=content, denied=denied
            )
            async with lock:
                await self._append(event)

        return TurnJournal(
            responses=list(turn.responses) if turn else [],
            results=dict(turn.results) if turn else {},
            decisions=dict(turn.decisions) if turn else {},
            record_response=record_response,
            record_result=record_result,
            # A result must fit in one event with room for the envelope (and wide chars).
            max_result_chars=self.bus.settings.max_message_bytes // 8,
        )

    def _context(
        self,
        message: str | None,
        attempt: int = 1,
        turn_id: str = "",
        journal: TurnJournal | None = None,
        origin: int = 0,
    ) -> TurnContext:
        ck = self.state
        record = ck.session
        history = ck.context[:-1] if message is not None else ck.context
        return TurnContext(
            session_id=self.sid,
            task_id=record.task_id,
            agent=record.agent,
            metadata=record.metadata,
            history=tuple(history),
            user_messages=record.counters.user_messages,
            message=message,
            attempt=attempt,
            summary=ck.summary,
            turn_id=turn_id,
            journal=journal or TurnJournal(),
            origin_seq=origin,
        )

    # -- live side channels --------------------------------------------------------------

    async def _subscribe(self) -> None:
        nc = self.bus.nc
        self._subs.append(await nc.subscribe(subjects.snapshot(self.sid), cb=self._on_snapshot))

    async def _on_snapshot(self, msg: Msg) -> None:
        if not subjects.is_inbox(msg.reply):
            return
        live = self._live
        body = live.snapshot().model_dump_json().encode() if live else b""
        with contextlib.suppress(Exception):
            await msg.respond(body)

    async def on_command(self, msg: Msg) -> None:
        """A command sent to this session (as sent: it may not be stored yet)."""
        self._wake.set()  # a new command for this session
        cmd = self._control(msg)
        if cmd is None:
            return
        if isinstance(cmd, Suspend):
            self._suspending = cmd.command_id
        if self._live is not None:
            self._act_on_turn(self._live, cmd)

    def _control(self, msg: Msg) -> Command | None:
        """``msg``'s command, if it is one acted on as it arrives: during a turn, a cancel,
        a suspend or a message; at any time, a suspend."""
        if self._live is None and b'"suspend"' not in msg.data:
            return None
        if not any(k in msg.data for k in _CONTROL_KINDS):
            return None
        try:
            cmd = decode_command(msg.data)
        except ValidationError:
            return None
        return cmd if cmd.session_id == self.sid else None

    def _act_on_turn(self, live: LiveTurn, cmd: Command) -> None:
        if isinstance(cmd, CancelTurn):
            live.cancel(cmd.command_id)
        elif isinstance(cmd, Suspend) and can_transition(
            self.state.session.state, SessionState.SUSPENDED
        ):
            # Suspending stops the turn in flight now (at its next token); the partial
            # reply is kept, marked interrupted, and the suspend is then taken in order,
            # the messages before it kept for after a resume (_suspend_follows).
            live.cancel(cmd.command_id, "interrupted: the session was suspended")
        elif isinstance(cmd, UserMessage) and not self._same_command(cmd.command_id):
            way = cmd.on_busy or self.state.session.double_texting
            if way == "interrupt":
                live.cancel(cmd.command_id, "interrupted: superseded")
            elif way == "rollback":
                live.cancel(cmd.command_id, "rolled back: superseded")

    def _same_command(self, command_id: str) -> bool:
        """Whether ``command_id`` is the turn in flight's own (a sender's retry)."""
        turn = self.ck.turn if self.ck is not None else None
        return turn is not None and turn.command_id == command_id

    # -- appending -----------------------------------------------------------------------

    async def _append(self, event: Event) -> None:
        """Store ``event`` (fenced), fold it, tell followers; after a final one, snapshot."""
        if not self._claimed and not isinstance(event, SessionCreated):
            self._claimed = True
            previous = self.state.owner
            await self._append(
                SessionClaimed(
                    **self._meta(None, None, None),
                    worker_id=self.ctx.worker_id,
                    previous_owner=previous,
                )
            )
            if previous is not None:
                metrics.TAKEOVERS.inc()
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
        self._optimistic = False  # the fence confirmed the state this run works from
        # A CommitNotice, written around the event's JSON rather than serialising it again.
        notice = b'{"type":"commit","prev":%d,"seq":%d,"events":[{"seq":%d,"event":%s}]}' % (
            self.tail,
            seq,
            seq,
            payload,
        )
        self.tail = seq
        self._unsaved += 1
        self.ck = apply(self.ck, seq, event, self.bus.settings.context_cap)
        await self.bus.nc.publish(subjects.live(self.sid), notice)
        replying = self._replying
        if replying is not None and event.command_id == replying.command_id:
            await self._reply(replying, seq, event)
        if event.final or isinstance(event, SessionCreated):
            self._save(ended=isinstance(event, StateChanged) and event.to_state in TERMINAL)
            await self._ack_done()

    async def _reply(self, replying: Replying, seq: int, event: Event) -> None:
        """Tell the command's ``reply_to`` subject how it ended (best effort, core NATS)."""
        if isinstance(event, AgentMessage):
            replying.text = event.content
        if not event.final:
            return
        self._replying = None
        outcome = CommandOutcome(
            session_id=self.sid,
            task_id=self.state.session.task_id,
            command_id=event.command_id,
            outcome=_outcome_of(event),
            reply=event.text if isinstance(event, TurnWaiting) else replying.text,
            reason=getattr(event, "reason", None),
            waiting_for=event.calls if isinstance(event, TurnWaiting) else [],
            usage=getattr(event, "usage", None),
            state=self.state.session.state,
            cursor=seq,
        )
        try:
            await self.bus.nc.publish(replying.subject, outcome.model_dump_json().encode())
        except Exception as e:  # the events hold the outcome whatever happens here
            log.warning("session %s: reply to %s failed: %s", self.sid, replying.subject, e)

    def _save(self, ended: bool = False) -> None:
        """Record and expiry timer, and every ``checkpoint_every`` events a snapshot, in the
        background (the events are already the truth; a snapshot only saves folding)."""
        record = self.state.session.model_dump_json().encode()
        self._in_background(self.bus.sessions.put(self.sid, record))
        if ended or self._unsaved >= self.bus.settings.checkpoint_every:
            self._snapshot()
        timer = self._timer_job(ended)
        if timer is not None:
            self._in_background(timer)

    def _snapshot(self) -> None:
        snapshot = self.state.model_dump_json().encode()
        self._unsaved = 0
        self._in_background(
            commit.save_checkpoint(self.bus.nc, self.sid, snapshot, self.bus.timeout)
        )

    def _in_background(self, job: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _timer_job(self, ended: bool) -> Coroutine[Any, Any, Any] | None:
        """Set, move or cancel the expiry timer if its due time changed (much): a timer
        that fires a little early finds the session not due and is set again."""
        record = self.state.session
        due = record.expires_at
        timers = self.ctx.timers
        armed = timers.get(self.sid)
        if due is None:
            timers.pop(self.sid)
            return self._cancel_timer() if ended or armed is not None else None
        slack = min(60.0, 0.05 * record.idle_timeout) if record.idle_timeout else 0.0
        if armed is not None and armed <= due <= armed + timedelta(seconds=slack):
            return None
        timers.put(self.sid, due)
        return self._set_timer(due)

    async def _set_timer(self, due: datetime) -> None:
        cmd = Expire(session_id=self.sid, task_id=self.state.session.task_id, actor=EXPIRY_ACTOR)
        at = due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        headers = {"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": subjects.inputs(self.sid)}
        try:
            await with_retry(
                lambda: self.bus.js.publish(
                    subjects.timer(self.sid), cmd.model_dump_json().encode(), headers=headers
                ),
                what=f"expiry timer of {self.sid}",
                deadline=self.bus.settings.retry_window,
            )
        except Exception as e:
            self.ctx.timers.pop(self.sid)  # set it again after the next command
            log.warning("session %s: expiry timer not set: %s", self.sid, e)

    async def _cancel_timer(self) -> None:
        try:
            await self.bus.js.purge_stream(self.bus.stream, subject=subjects.timer(self.sid))
        except Exception as e:  # it then fires on an ended session, which skips it
            log.warning("session %s: expiry timer not cancelled: %s", self.sid, e)

    def _meta(
        self, command_id: str | None, interface: Interface | None, seq: int | None
    ) -> dict[str, Any]:
        actor = self._actor[1] if command_id and self._actor[0] == command_id else None
        return {
            "session_id": self.sid,
            "task_id": self.state.session.task_id,
            "command_id": command_id,
            "interface": interface,
            "actor": actor,  # who sent the command: every event it causes says so
            "input_seq": seq,
            "state": self.state.session.state,
            "trace_id": self._trace_id,
        }

    # -- triggers ------------------------------------------------------------------------

    async def _ack_done(self) -> None:
        keep: list[Msg] = []
        for msg in self.triggers:
            if stream_seq(msg) <= self.state.input_cursor:
                with contextlib.suppress(Exception):
                    await msg.ack()
            else:
                keep.append(msg)
        self.triggers = keep

    async def _defer_triggers(self) -> None:
        """Another worker holds the session: it will see these inputs; check back soon."""
        for msg in self.triggers:
            delay = min(0.02 * 2 ** min(msg.metadata.num_delivered, 8), 1.0)
            with contextlib.suppress(Exception):
                await msg.nak(delay=delay)
        self.triggers.clear()

    async def _settle_triggers(self, retry_delay: float | None) -> None:
        cursor = self.ck.input_cursor if self.ck is not None else 0
        for msg in self.triggers:
            with contextlib.suppress(Exception):
                if stream_seq(msg) <= cursor:
                    await msg.ack()
                else:
                    await msg.nak(delay=retry_delay)
        self.triggers.clear()


def _sent_id(session_id: str, headers: Mapping[str, str]) -> str | None:
    """The command id a command that cannot be read was sent under (its ``Nats-Msg-Id``,
    without the session it is scoped by): the id its sender follows."""
    msg_id = headers.get("Nats-Msg-Id")
    return msg_id.removeprefix(f"{session_id}.") if msg_id else None


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _greets(agent: Agent, ctx: TurnContext) -> bool:
    """Whether the agent speaks first; if asking raises, the greeting turn fails with it."""
    try:
        return agent.greet(ctx) is not None
    except Exception:
        return True


@dataclass(slots=True)
class Replying:
    """A command whose outcome goes to a reply subject, and its reply so far."""

    command_id: str
    subject: str
    text: str | None = None


def _outcome_of(event: Event) -> OutcomeKind:
    match event:
        case TurnCompleted():
            return "completed"
        case TurnFailed():
            return "failed"
        case StateChanged(to_state=SessionState.FAILED):
            return "failed"
        case TurnWaiting():
            return "waiting"
        case CommandRejected():
            return "rejected"
        case MessageQueued():
            return "queued"
        case CommandDeadLettered():
            return "dead_lettered"
        case _:
            return "done"


def _pieces_for(agent: Agent, ctx: TurnContext) -> AsyncIterator[str]:
    if ctx.message is None:
        return agent.greet(ctx) or _empty()
    return agent.respond(ctx)


async def _empty() -> AsyncIterator[str]:
    return
    yield  # pragma: no cover


def _short(e: ValidationError) -> str:
    errs = e.errors()
    if not errs:
        return str(e)
    first = errs[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "message"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"
