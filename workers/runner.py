"""One session's run on a worker: claim, handle every pending command in order, release.

Nothing here outlives the run: the checkpoint read at the start is the truth, every change
is committed (fenced) before it counts, and a run that loses its lease stops writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from bus import Bus, commit, direct, leases, subjects
from bus.errors import BusError, FenceRejectedError
from bus.follow import read_checkpoint
from schemas import (
    ACCEPTS_MESSAGES,
    AgentMessage,
    CancelTurn,
    ChatMessage,
    Checkpoint,
    Command,
    CommandRejected,
    CommitNotice,
    Complete,
    CreateSession,
    Event,
    Interface,
    Resume,
    SessionClaimed,
    SessionCreated,
    SessionRecord,
    SessionState,
    StateChanged,
    StoredEvent,
    Suspend,
    TailNotice,
    TurnCompleted,
    TurnFailed,
    TurnInFlight,
    TurnStarted,
    UserMessage,
    UserMessageAccepted,
    can_transition,
    decode_command,
    new_id,
)
from workers.agents import Agent, AgentRegistry, TurnContext
from workers.live import LiveTurn

log = logging.getLogger("praxis.worker")
RECENT_COMMANDS = 256
MAX_ATTEMPTS = 5


class LeaseLostError(Exception):
    pass


class RunContext:
    """What runners share within one worker process."""

    def __init__(self, bus: Bus, registry: AgentRegistry, worker_id: str) -> None:
        self.bus = bus
        self.registry = registry
        self.worker_id = worker_id


def stream_seq(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


class SessionRunner:
    def __init__(self, ctx: RunContext, session_id: str) -> None:
        self.ctx = ctx
        self.bus = ctx.bus
        self.sid = session_id
        self.triggers: list[Msg] = []
        self.ck: Checkpoint
        self.tail = 0
        self._claim = True
        self._live: LiveTurn | None = None
        self._subs: list[Subscription] = []
        self._puts: set[asyncio.Task[Any]] = set()
        self.finished = False

    # -- the run -------------------------------------------------------------------------

    def add_trigger(self, msg: Msg) -> None:
        self.triggers.append(msg)

    async def run(self) -> None:
        lease = await leases.claim(self.bus.leases, self.sid, self.ctx.worker_id)
        if lease is None:
            await self._defer_triggers()
            self.finished = True
            return
        ok = False
        try:
            await self._with_renewal(lease, self._work)
            ok = True
        except (FenceRejectedError, LeaseLostError) as e:
            log.warning("session %s: stopped, no longer the owner (%s)", self.sid, e)
        except BusError as e:
            log.error("session %s: bus error, returned for retry: %s", self.sid, e)
        finally:
            self.finished = True
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if self._puts:
                await asyncio.gather(*self._puts, return_exceptions=True)
            await leases.release(self.bus.leases, lease)
            await self._settle_triggers(retry_delay=None if ok else 0.5)

    async def _with_renewal(self, lease: leases.Lease, work: Callable[[], Awaitable[None]]) -> None:
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
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not lost:
                    raise
        if lost:
            raise LeaseLostError(f"lease on {self.sid} expired")

    async def _work(self) -> None:
        found = await read_checkpoint(self.bus, self.sid)
        if found is None:
            await self._without_session()
            return
        self.ck, self.tail = found
        self._claim = self.ck.owner != self.ctx.worker_id
        await self.bus.nc.publish(
            subjects.live(self.sid), TailNotice(seq=self.tail).model_dump_json().encode()
        )
        await self._subscribe()
        if self.ck.turn is not None:
            await self._rerun_turn(self.ck.turn)
        while True:
            nxt = await direct.next_by_subject(
                self.bus.nc,
                self.bus.stream,
                subjects.inputs(self.sid),
                self.ck.input_cursor + 1,
                self.bus.timeout,
            )
            if nxt is None:
                return
            await self._handle(nxt.seq, nxt.data, nxt.headers.get("Nats-Msg-Id"))

    # -- commands ------------------------------------------------------------------------

    async def _handle(self, seq: int, data: bytes, msg_id: str | None) -> None:
        try:
            cmd = decode_command(data)
        except ValidationError as e:
            await self._reject_invalid(seq, msg_id, _short(e))
            return
        if cmd.session_id != self.sid:
            await self._reject_invalid(seq, cmd.command_id, "session_id differs from the subject")
            return
        if cmd.command_id in self.ck.recent_commands:
            await self._commit([], done=seq)  # a repeat of a command already handled
            return
        handler = self._handlers()[type(cmd)]
        await handler(seq, cmd)

    def _handlers(self) -> dict[type[Command], Callable[[int, Any], Awaitable[None]]]:
        return {
            CreateSession: self._on_create,
            UserMessage: self._on_message,
            Suspend: self._on_transition,
            Resume: self._on_transition,
            Complete: self._on_transition,
            CancelTurn: self._on_cancel,
        }

    async def _on_create(self, seq: int, cmd: CreateSession) -> None:
        record = self.ck.session
        if record.state is not SessionState.CREATED:
            await self._reject(seq, cmd, "session already exists")
            return
        agent = self.ctx.registry.get(record.agent)
        if agent is None:
            reason = f"agent {record.agent!r} is not available (known: {self.ctx.registry.names()})"
            event = self._state(SessionState.FAILED, cmd.command_id, cmd.interface, True, reason)
            await self._commit([event], done=seq, command_id=cmd.command_id)
            return
        greeting = agent.greet(self._context(None))
        started = self._state(
            SessionState.ACTIVE, cmd.command_id, cmd.interface, greeting is None, "started"
        )
        if greeting is None:
            await self._commit([started], done=seq, command_id=cmd.command_id)
            return
        await self._turn(seq, cmd.command_id, cmd.interface, None, [started], greeting)

    async def _on_message(self, seq: int, cmd: UserMessage) -> None:
        record = self.ck.session
        if record.state not in ACCEPTS_MESSAGES:
            await self._reject(seq, cmd, f"session is {record.state.value} and takes no messages")
            return
        pre: list[Event] = []
        if record.state is SessionState.CREATED:
            pre.append(self._state(SessionState.ACTIVE, cmd.command_id, cmd.interface, False, None))
        pre.append(
            UserMessageAccepted(
                **self._meta(cmd.command_id, cmd.interface), content=cmd.content, input_seq=seq
            )
        )
        self.ck.context.append(ChatMessage(role="user", content=cmd.content))
        self.ck.session.counters.user_messages += 1
        await self._turn(seq, cmd.command_id, cmd.interface, cmd.content, pre, None)

    async def _on_transition(self, seq: int, cmd: Suspend | Resume | Complete) -> None:
        target = {
            Suspend: SessionState.SUSPENDED,
            Resume: SessionState.ACTIVE,
            Complete: SessionState.COMPLETED,
        }[type(cmd)]
        current = self.ck.session.state
        if not can_transition(current, target):
            await self._reject(seq, cmd, f"cannot {cmd.kind} a session that is {current.value}")
            return
        reason = getattr(cmd, "reason", None)
        event = self._state(target, cmd.command_id, cmd.interface, True, reason)
        await self._commit([event], done=seq, command_id=cmd.command_id)

    async def _on_cancel(self, seq: int, cmd: CancelTurn) -> None:
        # A cancel acts on the turn in flight as it arrives (see _on_control); in order,
        # after that turn, there is nothing left to cancel.
        await self._commit([], done=seq, command_id=cmd.command_id)

    async def _reject(self, seq: int, cmd: Command, reason: str) -> None:
        event = CommandRejected(
            **self._meta(cmd.command_id, cmd.interface),
            final=True,
            command_kind=cmd.kind,
            reason=reason,
            state=self.ck.session.state,
        )
        await self._commit([event], done=seq, command_id=cmd.command_id)

    async def _reject_invalid(self, seq: int, command_id: str | None, reason: str) -> None:
        log.warning("session %s: invalid command at %d: %s", self.sid, seq, reason)
        event = CommandRejected(
            **self._meta(command_id, Interface.BUS),
            final=True,
            command_kind="invalid",
            reason=f"invalid command: {reason}",
            state=self.ck.session.state,
        )
        await self._commit([event], done=seq)

    async def _without_session(self) -> None:
        """Inputs for a session with no checkpoint: a create from the bus makes one."""
        nxt = await direct.next_by_subject(
            self.bus.nc, self.bus.stream, subjects.inputs(self.sid), 1, self.bus.timeout
        )
        try:
            cmd = decode_command(nxt.data) if nxt else None
        except ValidationError:
            cmd = None
        if not isinstance(cmd, CreateSession) or cmd.session_id != self.sid:
            log.warning("session %s: commands for an unknown session dropped", self.sid)
            for msg in self.triggers:
                with contextlib.suppress(Exception):
                    await msg.term()
            self.triggers.clear()
            return
        now = datetime.now(UTC)
        record = SessionRecord(
            session_id=self.sid,
            task_id=cmd.task_id,
            agent=cmd.agent,
            state=SessionState.CREATED,
            created_at=now,
            updated_at=now,
            metadata=cmd.metadata,
            created_by=cmd.interface,
        )
        self.ck = Checkpoint(session=record, commit_id=cmd.command_id)
        self.tail = 0
        created = SessionCreated(
            **self._meta(cmd.command_id, cmd.interface), agent=cmd.agent, metadata=cmd.metadata
        )
        await self._commit([created])
        await self._work()

    # -- turns ---------------------------------------------------------------------------

    async def _turn(
        self,
        seq: int,
        command_id: str,
        interface: Interface | None,
        user_content: str | None,
        pre: list[Event],
        greeting: AsyncIterator[str] | None,
    ) -> None:
        turn = TurnInFlight(
            turn_id=new_id("turn"),
            input_seq=seq,
            command_id=command_id,
            interface=interface,
            user_content=user_content,
        )
        self.ck.turn = turn
        started = TurnStarted(
            **self._meta(command_id, interface),
            turn_id=turn.turn_id,
            input_seq=seq,
            worker_id=self.ctx.worker_id,
        )
        await self._commit([*pre, started])
        await self._execute(turn, greeting)

    async def _rerun_turn(self, turn: TurnInFlight) -> None:
        """The previous owner died in this turn: run it again (its input is stored)."""
        turn.attempt += 1
        turn.turn_id = new_id("turn")
        if turn.attempt > MAX_ATTEMPTS:
            failed = TurnFailed(
                **self._meta(turn.command_id, turn.interface),
                final=True,
                turn_id=turn.turn_id,
                reason=f"gave up after {MAX_ATTEMPTS} attempts (workers died during the turn)",
            )
            self.ck.turn = None
            self.ck.session.counters.failed_turns += 1
            await self._commit([failed], done=turn.input_seq, command_id=turn.command_id)
            return
        started = TurnStarted(
            **self._meta(turn.command_id, turn.interface),
            turn_id=turn.turn_id,
            input_seq=turn.input_seq,
            attempt=turn.attempt,
            worker_id=self.ctx.worker_id,
        )
        await self._commit([started])
        await self._execute(turn, None)

    async def _execute(self, turn: TurnInFlight, pieces: AsyncIterator[str] | None) -> None:
        agent = self.ctx.registry.get(self.ck.session.agent)
        began = time.perf_counter()
        if agent is None:
            text, error = "", f"agent {self.ck.session.agent!r} is not available on this worker"
        else:
            if pieces is None:
                pieces = _pieces_for(agent, self._context(turn.user_content, turn.attempt))
            text, error = await self._stream(turn.turn_id, pieces)
        meta = self._meta(turn.command_id, turn.interface)
        events: list[Event] = []
        counters = self.ck.session.counters
        if text:
            events.append(
                AgentMessage(**meta, turn_id=turn.turn_id, content=text, interrupted=error is not None)
            )
            self.ck.context.append(ChatMessage(role="agent", content=text))
            counters.agent_messages += 1
        if error is None:
            ms = (time.perf_counter() - began) * 1000
            events.append(TurnCompleted(**meta, final=True, turn_id=turn.turn_id, duration_ms=ms))
            counters.turns += 1
        else:
            cancelled = error.startswith("cancelled")
            events.append(
                TurnFailed(**meta, final=True, turn_id=turn.turn_id, reason=error, cancelled=cancelled)
            )
            counters.failed_turns += 1
        self.ck.turn = None
        await self._commit(events, done=turn.input_seq, command_id=turn.command_id)

    async def _stream(self, turn_id: str, pieces: AsyncIterator[str]) -> tuple[str, str | None]:
        live = LiveTurn(self.sid, turn_id)
        self._live = live
        live.task = asyncio.create_task(self._consume(live, pieces))
        timeout = self.bus.settings.turn_timeout
        try:
            async with asyncio.timeout(timeout):
                await live.task
            return live.text, None
        except TimeoutError:
            return live.text, f"timed out after {timeout:g}s"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if live.cancelled_by is not None and (current is None or current.cancelling() == 0):
                return live.text, f"cancelled by {live.cancelled_by}"
            raise
        except Exception as e:
            log.exception("session %s: agent failed", self.sid)
            return live.text, f"agent error: {type(e).__name__}: {e}"
        finally:
            self._live = None

    async def _consume(self, live: LiveTurn, pieces: AsyncIterator[str]) -> None:
        subject = subjects.live(self.sid)
        async for piece in pieces:
            if piece:
                delta = live.add(piece)
                await self.bus.nc.publish(subject, delta.model_dump_json().encode())

    def _context(self, message: str | None, attempt: int = 1) -> TurnContext:
        record = self.ck.session
        history = self.ck.context[:-1] if message is not None else self.ck.context
        return TurnContext(
            session_id=self.sid,
            task_id=record.task_id,
            agent=record.agent,
            metadata=record.metadata,
            history=tuple(history),
            user_messages=record.counters.user_messages,
            message=message,
            attempt=attempt,
        )

    # -- live side channels --------------------------------------------------------------

    async def _subscribe(self) -> None:
        nc = self.bus.nc
        self._subs.append(await nc.subscribe(subjects.snapshot(self.sid), cb=self._on_snapshot))
        self._subs.append(await nc.subscribe(subjects.inputs(self.sid), cb=self._on_control))

    async def _on_snapshot(self, msg: Msg) -> None:
        live = self._live
        body = live.snapshot().model_dump_json().encode() if live else b""
        with contextlib.suppress(Exception):
            await msg.respond(body)

    async def _on_control(self, msg: Msg) -> None:
        live = self._live
        if live is None or b'"cancel_turn"' not in msg.data:
            return
        try:
            cmd = decode_command(msg.data)
        except ValidationError:
            return
        if isinstance(cmd, CancelTurn) and cmd.session_id == self.sid:
            live.cancel(cmd.command_id)

    # -- committing ----------------------------------------------------------------------

    async def _commit(
        self, events: list[Event], *, done: int | None = None, command_id: str | None = None
    ) -> None:
        ck = self.ck
        if self._claim:
            claimed = SessionClaimed(
                **self._meta(None, None), worker_id=self.ctx.worker_id, previous_owner=ck.owner
            )
            events = [claimed, *events]
        ck.owner = self.ctx.worker_id
        ck.commit_id = new_id("cmt")
        if done is not None:
            ck.input_cursor = max(ck.input_cursor, done)
        if command_id is not None:
            ck.recent_commands = [*ck.recent_commands, command_id][-RECENT_COMMANDS:]
        limit = self.bus.settings.context_messages
        if len(ck.context) > limit:
            ck.context = ck.context[-limit:]
        ck.session.updated_at = datetime.now(UTC)
        ck.session.counters.events += len(events)
        result = await commit.append(
            self.bus.nc,
            self.bus.stream,
            self.sid,
            events=[e.model_dump_json().encode() for e in events],
            checkpoint=ck.model_dump_json().encode(),
            commit_id=ck.commit_id,
            expected_seq=self.tail,
            max_bytes=self.bus.settings.max_message_bytes,
            timeout=self.bus.timeout,
        )
        self._claim = False
        notice = CommitNotice(
            prev=self.tail,
            seq=result.checkpoint_seq,
            events=[
                StoredEvent(seq=s, event=e)
                for s, e in zip(result.event_seqs(len(events)), events, strict=True)
            ],
        )
        self.tail = result.checkpoint_seq
        await self.bus.nc.publish(subjects.live(self.sid), notice.model_dump_json().encode())
        self._put_record()
        await self._ack_done()

    def _put_record(self) -> None:
        payload = self.ck.session.model_dump_json().encode()
        task = asyncio.create_task(self.bus.sessions.put(self.sid, payload))
        self._puts.add(task)
        task.add_done_callback(self._puts.discard)

    def _meta(self, command_id: str | None, interface: Interface | None) -> dict[str, Any]:
        return {
            "session_id": self.sid,
            "task_id": self.ck.session.task_id,
            "command_id": command_id,
            "interface": interface,
        }

    def _state(
        self,
        target: SessionState,
        command_id: str,
        interface: Interface | None,
        final: bool,
        reason: str | None,
    ) -> StateChanged:
        current = self.ck.session.state
        self.ck.session.state = target
        return StateChanged(
            **self._meta(command_id, interface),
            final=final,
            from_state=current,
            to_state=target,
            reason=reason,
        )

    # -- triggers ------------------------------------------------------------------------

    async def _ack_done(self) -> None:
        keep: list[Msg] = []
        for msg in self.triggers:
            if stream_seq(msg) <= self.ck.input_cursor:
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
        cursor = self.ck.input_cursor if hasattr(self, "ck") else 0
        for msg in self.triggers:
            with contextlib.suppress(Exception):
                if stream_seq(msg) <= cursor:
                    await msg.ack()
                else:
                    await msg.nak(delay=retry_delay)
        self.triggers.clear()


def _pieces_for(agent: Agent, ctx: TurnContext) -> AsyncIterator[str]:
    if ctx.message is None:
        greeting = agent.greet(ctx)
        if greeting is not None:
            return greeting
        return _empty()
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


__all__ = ["LeaseLostError", "RunContext", "SessionRunner"]
