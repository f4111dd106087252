"""``SessionClient``: what the CLI, the edge and any other service use to drive sessions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import PubAck
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from opentelemetry.trace import SpanKind

from praxis.bus import commit, direct, logs, subjects, tracing
from praxis.bus.connection import Bus, with_retry
from praxis.bus.errors import (
    MESSAGE_TOO_LARGE,
    AlreadyReplayedError,
    CommandDeadLetteredError,
    CommandIdReusedError,
    CommandTimeoutError,
    DeadLetterNotFoundError,
    IllegalTransitionError,
    InvalidCursorError,
    MessageTooLargeError,
    PublishError,
    QuotaExceededError,
    SessionExistsError,
    SessionNotFoundError,
    ToolCallNotWaitingError,
    UnknownAgentError,
    check_size,
)
from praxis.bus.follow import Follower
from praxis.bus.state import first_command, load_head, load_state
from praxis.schemas import (
    ACCEPTS_MESSAGES,
    TERMINAL,
    AgentInfo,
    CancelTurn,
    ChatMessage,
    Checkpoint,
    Command,
    CommandDeadLettered,
    CommandRejected,
    Complete,
    CreateSession,
    DeadLetter,
    DecideToolCall,
    Delivery,
    DoubleTexting,
    Event,
    HistoryItem,
    Interface,
    Owner,
    Resume,
    SessionCreated,
    SessionRecord,
    SessionState,
    Suspend,
    TokenDelta,
    TurnStarted,
    UserMessage,
    WorkerInfo,
    can_transition,
    check_token,
    decode_command,
    new_id,
)
from praxis.schemas.events import CommandEffects, created_by
from praxis.schemas.fold import start as fold_start


@dataclass(frozen=True, slots=True)
class Scope:
    """A caller as the edge authenticated it: the owner of the sessions it creates, and
    whether it may see every session (``admin``)."""

    owner: Owner
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """A command the bus has stored: follow ``events(session_id, after=cursor)`` for its effects."""

    session_id: str
    command_id: str
    cursor: int


@dataclass(frozen=True, slots=True)
class Page:
    items: list[SessionRecord]
    next_cursor: str | None


# SessionClient has a method named ``list``: name the types it returns out here.
Records = list[SessionRecord]
Workers = list[WorkerInfo]
Agents = list[AgentInfo]
Letters = list[DeadLetter]
History = list[HistoryItem]
Events = list[Event]
Values = list[bytes]


_TASK_IDS_KEPT = 100_000

_ACTIONS: dict[type[Command], tuple[str, SessionState]] = {
    Suspend: ("suspend", SessionState.SUSPENDED),
    Resume: ("resume", SessionState.ACTIVE),
    Complete: ("complete", SessionState.COMPLETED),
}


class SessionClient:
    """Drive sessions over the bus. Cheap to make; of sessions it only remembers their task
    ids (which never change), so that a turn can publish without reading first."""

    def __init__(
        self, bus: Bus, interface: Interface = Interface.BUS, actor: str | None = None
    ) -> None:
        self.bus = bus
        self.interface = interface
        self.actor = actor
        """Who drives the sessions through this client, recorded in the events it causes."""
        self.scope: Scope | None = None
        """Whose sessions this client may see (None: everyone's, as the CLI and workers)."""
        self._agents_cache: tuple[float, dict[str, AgentInfo]] | None = None
        self._live_cache: list[tuple[float, asyncio.Future[int | None]]] = []  # shared by copies
        self._task_ids: dict[str, str] = {}  # sessions' task ids never change
        self._owners: dict[str, Owner | None] = {}  # nor do their owners

    def scoped(self, scope: Scope | None, actor: str | None = None) -> SessionClient:
        """A client for one caller: it creates sessions owned by ``scope.owner`` and, unless
        ``scope.admin``, sees no other owner's session (they are 'unknown', never
        'forbidden', so ids cannot be probed). Shares this client's caches."""
        other = copy.copy(self)
        other.scope = scope
        other.actor = actor or self.actor
        return other

    def via(self, interface: Interface) -> SessionClient:
        """This client for another interface (recorded in the events it causes, and as a
        session's ``created_by``). Shares this client's caches."""
        other = copy.copy(self)
        other.interface = interface
        return other

    async def _guard(self, session_id: str) -> None:
        """Raise :class:`SessionNotFoundError` for a session the scope may not see."""
        check_token(session_id, "session id")
        logs.about(session_id, self._task_ids.get(session_id))  # for this task's log lines
        scope = self.scope
        if scope is None or scope.admin:
            return
        if session_id in self._owners:
            owner = self._owners[session_id]
        else:
            checkpoint, _ = await self._checkpoint(session_id)
            owner = checkpoint.session.owner
            if len(self._owners) >= _TASK_IDS_KEPT:
                del self._owners[next(iter(self._owners))]
            self._owners[session_id] = owner
        if owner != scope.owner:
            raise SessionNotFoundError(session_id)

    async def _check_quota(self) -> None:
        scope, limit = self.scope, self.bus.settings.max_sessions_per_owner
        if scope is None or scope.admin or limit <= 0:
            return
        live = sum(
            1 for r in await self.records() if r.owner == scope.owner and r.state not in TERMINAL
        )
        if live >= limit:
            raise QuotaExceededError(f"{scope.owner.principal} ({scope.owner.tenant})", limit)

    def _sees(self, record: SessionRecord) -> bool:
        scope = self.scope
        return scope is None or scope.admin or record.owner == scope.owner

    # -- creating and talking ------------------------------------------------------------

    async def create(
        self,
        agent: str,
        *,
        task_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        initial_message: str | None = None,
        session_id: str | None = None,
        command_id: str | None = None,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        double_texting: DoubleTexting = "enqueue",
    ) -> tuple[SessionRecord, Receipt]:
        """Create a session (its first commit is made here, fenced on 'no session yet').

        ``idle_timeout`` and ``max_lifetime`` (seconds, 0 for never) default to
        ``PRAXIS_SESSION_IDLE_TIMEOUT`` and ``PRAXIS_SESSION_MAX_LIFETIME``."""
        check_token(agent, "agent name")
        sid = check_token(session_id, "session id") if session_id is not None else new_id("ses")
        tid = check_token(task_id, "task id") if task_id is not None else new_id("task")
        logs.about(sid, tid)
        known = await self.known_agents()
        if known and agent not in known:
            raise UnknownAgentError(agent, list(known))
        await self._check_quota()
        cmd = CreateSession(
            session_id=sid,
            task_id=tid,
            interface=self.interface,
            actor=self.actor,
            agent=agent,
            metadata=metadata or {},
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            double_texting=double_texting,
            owner=self.scope.owner if self.scope else None,
            **_command_id(command_id),
        )
        # The command is the session: stored only if nothing was ever sent to this id
        # (fenced on the input subject), it is what a worker makes the session from. The
        # worker writes every event; until it has, readers see the session from this
        # command (bus.state), so the create is over once the command is stored.
        try:
            await self._publish(cmd, new_session=True)
        except SessionExistsError:
            # Ours, if its first command has our id: a retry whose first try had landed
            # (the server checks the fence before it spots the repeated command id).
            stored = await first_command(self.bus, sid)
            if not isinstance(stored, CreateSession) or stored.command_id != cmd.command_id:
                raise
            cmd, tid = stored, stored.task_id
        self._remember(sid, tid)
        created = self._created(cmd)
        record = fold_start(created, 0).session
        # The index that listings read; the worker's own write wins a race.
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.bus.sessions.create(sid, record.model_dump_json().encode())
        receipt = Receipt(sid, cmd.command_id, 0)
        if initial_message is not None:
            receipt = await self._send(created, 0, initial_message, None)
        return record, receipt

    def _created(self, cmd: CreateSession) -> SessionCreated:
        settings = self.bus.settings
        return created_by(cmd, settings.session_idle_timeout, settings.session_max_lifetime)

    async def send(
        self,
        session_id: str,
        message: str,
        *,
        command_id: str | None = None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
    ) -> Receipt:
        """Queue a user message; the reply arrives as events after ``Receipt.cursor``.

        ``queue``: if the session is suspended, keep the message (``message.queued``) and
        answer it when the session is resumed, instead of refusing it. ``on_busy``: what
        the message does if the session is busy with an earlier one (default: the
        session's ``double_texting``)."""
        await self._guard(session_id)
        head, tail = await self._head(session_id)
        return await self._send(head, tail, message, command_id, queue, on_busy)

    async def _send(
        self,
        head: Event,
        tail: int,
        message: str,
        command_id: str | None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
    ) -> Receipt:
        """Publish a user message, given the session's latest event (its state and tail)."""
        if head.state not in ACCEPTS_MESSAGES and not (
            queue and head.state is SessionState.SUSPENDED
        ):
            raise IllegalTransitionError(
                head.session_id,
                "send a message to",
                head.state,
                f"session {head.session_id!r} is {head.state.value} and takes no messages"
                + (" (resume it first)" if head.state is SessionState.SUSPENDED else ""),
            )
        cmd = self._message(head.session_id, head.task_id, message, command_id, queue, on_busy)
        ack = await self._store(cmd)
        # A repeat: what the first one caused may be stored already, after its own sequence.
        cursor = min(tail, int(ack.seq)) if ack.duplicate else tail
        return Receipt(head.session_id, cmd.command_id, cursor)

    def turn(
        self, session_id: str, message: str, *, command_id: str | None = None
    ) -> AsyncGenerator[Delivery, None]:
        """Send a message and yield what it causes (deltas, reply) until the turn ends."""
        return cast(
            AsyncGenerator[Delivery, None],
            self.turn_updates(session_id, message, command_id=command_id, keepalive=None),
        )

    async def turn_updates(
        self,
        session_id: str,
        message: str,
        *,
        command_id: str | None = None,
        keepalive: float | None = None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
        accepted: bool = False,
    ) -> AsyncGenerator[Receipt | Delivery | None, None]:
        """:meth:`turn`, and ``None`` after each ``keepalive`` seconds of quiet (for relays
        that must show an idle connection is alive while an agent thinks).

        ``accepted``: first yield the :class:`Receipt` as soon as the message is stored
        (before a worker has answered anything); the session's state is then checked
        before storing, so that a message it refuses raises instead."""
        await self._guard(session_id)
        follower = Follower(self.bus, session_id)
        try:
            task_id = None if accepted else self._task_ids.get(session_id)
            if task_id is None:
                head, tail = await follower.open()
                receipt = await self._send(head, tail, message, command_id, queue, on_busy)
                await follower.start(receipt.cursor, tail, join_turn=False)
            else:
                # A session's task never changes: no need to read its state first (the
                # worker refuses a message the state does not allow: command.rejected).
                cmd = self._message(session_id, task_id, message, command_id, queue, on_busy)
                await follower.subscribe()
                ack = await self._store(cmd)
                receipt = Receipt(session_id, cmd.command_id, int(ack.seq))
                if not ack.duplicate:
                    follower.start_at(receipt.cursor)  # no read: all it causes is to come
                else:  # a repeat: what it caused may be stored already
                    _, tail = await follower.head()
                    await follower.start(receipt.cursor, tail, join_turn=False)
            if accepted:
                yield receipt
            async for item in self._until_final(follower, receipt, keepalive):
                yield item
        finally:
            await follower.close()

    def _message(
        self,
        session_id: str,
        task_id: str,
        message: str,
        command_id: str | None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
    ) -> UserMessage:
        return UserMessage(
            session_id=session_id,
            task_id=task_id,
            interface=self.interface,
            actor=self.actor,
            content=message,
            queue=queue,
            on_busy=on_busy,
            **_command_id(command_id),
        )

    async def _until_final(
        self, follower: Follower, receipt: Receipt, keepalive: float | None = None
    ) -> AsyncGenerator[Delivery | None, None]:
        """What ``receipt``'s command causes (its turns' deltas included) until it is done.

        The command is stored, so it will be answered: this waits as long as live workers
        (by their heartbeats) can answer it, up to ``queue_timeout`` in all (a worker that
        died holding the session is taken over one lease time later; busy workers take it
        in turn). Once a turn has started, the worker's own ``turn_timeout`` bounds it (it
        then ends the turn with ``turn.failed``), so the wait allows for that instead. It
        gives up sooner, after ``command_timeout`` of quiet, only when no worker is live.
        The error says what is true: stored, not yet answered, and the cursor to follow.
        """
        settings = self.bus.settings
        quiet = settings.command_timeout
        effects = CommandEffects(receipt.command_id)
        stream = follower.updates(keepalive)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + quiet
        until = started + max(settings.queue_timeout, quiet)
        try:
            while True:
                try:  # asyncio.timeout, not wait_for: no task per item on this hot path
                    async with asyncio.timeout_at(min(deadline, until)):
                        item = await anext(stream)
                except TimeoutError:
                    if await load_head(self.bus, receipt.session_id) is None:
                        raise SessionNotFoundError(
                            receipt.session_id,
                            "it was removed while its command waited (purged, or its create "
                            "refused: an agent no worker offers)",
                        ) from None
                    now = loop.time()
                    live = await self._live_workers()
                    if now >= until or live == 0:
                        raise CommandTimeoutError(
                            receipt.session_id,
                            receipt.command_id,
                            now - started,
                            cursor=receipt.cursor,
                            live_workers=live,
                        ) from None
                    # Live workers will answer it: wait on. The follower keeps its place;
                    # only this iteration of it was cancelled.
                    stream = follower.updates(keepalive)
                    deadline = now + quiet
                    continue
                if item is None:
                    yield None  # quiet for keepalive seconds; the deadline stands
                    continue
                deadline = loop.time() + quiet
                if not effects.takes(item):
                    continue
                ev = item.event
                if isinstance(ev, TokenDelta):
                    yield item
                    continue
                if isinstance(ev, TurnStarted):
                    quiet = settings.turn_timeout + settings.command_timeout
                    deadline = loop.time() + quiet
                    until = max(until, deadline)
                yield item
                if ev.final:
                    return
        finally:
            await stream.aclose()

    async def follow(self, receipt: Receipt, *, deltas: bool = True) -> AsyncIterator[Delivery]:
        """Yield what a stored command causes (its turns' deltas included) until it is done.

        ``deltas=False``: no need for the text of a turn already in flight (no snapshot is
        asked of the owner, which may be just finishing a run and not answer)."""
        async for item in self.follow_updates(receipt, deltas=deltas):
            if item is not None:
                yield item

    async def follow_updates(
        self, receipt: Receipt, *, deltas: bool = True, keepalive: float | None = None
    ) -> AsyncGenerator[Delivery | None, None]:
        """:meth:`follow`, and ``None`` after each ``keepalive`` seconds of quiet."""
        follower = Follower(self.bus, receipt.session_id)
        try:
            _, tail = await follower.open()
            await follower.start(receipt.cursor, tail, join_turn=deltas)
            async for item in self._until_final(follower, receipt, keepalive):
                yield item
        finally:
            await follower.close()

    async def wait(self, receipt: Receipt) -> Events:
        """Wait for the outcome of a stored command; return the events it caused."""
        return [
            item.event
            async for item in self.follow(receipt, deltas=False)
            if not isinstance(item.event, TokenDelta)
        ]

    # -- lifecycle -----------------------------------------------------------------------

    async def suspend(self, session_id: str, reason: str | None = None) -> SessionRecord:
        return await self._transition(session_id, Suspend, reason=reason)

    async def resume(self, session_id: str) -> SessionRecord:
        return await self._transition(session_id, Resume)

    async def complete(self, session_id: str, reason: str | None = None) -> SessionRecord:
        return await self._transition(session_id, Complete, reason=reason)

    async def _transition(
        self, session_id: str, kind: type[Suspend | Resume | Complete], **fields: Any
    ) -> SessionRecord:
        action, target = _ACTIONS[kind]
        await self._guard(session_id)
        head, tail = await self._head(session_id)
        if not can_transition(head.state, target):
            raise IllegalTransitionError(session_id, action, head.state)
        fields = {k: v for k, v in fields.items() if v is not None and kind is not Resume}
        cmd = kind(
            session_id=session_id,
            task_id=head.task_id,
            interface=self.interface,
            actor=self.actor,
            **fields,
        )
        await self._publish(cmd)
        for event in await self.wait(Receipt(session_id, cmd.command_id, tail)):
            if isinstance(event, CommandRejected):
                raise IllegalTransitionError(session_id, action, event.state, event.reason)
            if isinstance(event, CommandDeadLettered):
                raise CommandDeadLetteredError(session_id, event.dead_letter_id, event.reason)
        return await self.get(session_id)

    async def cancel(self, session_id: str) -> Receipt:
        """Ask the owner to stop the turn in flight (the turn ends with ``turn.failed``)."""
        await self._guard(session_id)
        head, tail = await self._head(session_id)
        cmd = CancelTurn(
            session_id=session_id, task_id=head.task_id, interface=self.interface, actor=self.actor
        )
        await self._publish(cmd)
        return Receipt(session_id, cmd.command_id, tail)

    # -- human in the loop ---------------------------------------------------------------

    async def decide(
        self, session_id: str, call_id: str, *, approve: bool, reason: str | None = None
    ) -> Receipt:
        """Approve or deny a tool call the session's turn waits on (``waiting_for``). Once
        every call it waits on is decided the turn goes on: follow the receipt for the rest
        of it (its reply, ``turn.completed``)."""
        await self._guard(session_id)
        ck, tail = await self._checkpoint(session_id)
        state = ck.session.state
        if state is not SessionState.ACTIVE:
            verb = "approve" if approve else "deny"
            raise IllegalTransitionError(session_id, f"{verb} a tool call of", state)
        waiting = [c.call_id for c in ck.session.waiting_for]
        if call_id not in waiting:
            raise ToolCallNotWaitingError(session_id, call_id, waiting)
        cmd = DecideToolCall(
            session_id=session_id,
            task_id=ck.session.task_id,
            interface=self.interface,
            actor=self.actor,
            call_id=call_id,
            approve=approve,
            reason=reason,
        )
        await self._publish(cmd)
        return Receipt(session_id, cmd.command_id, tail)

    async def approve(self, session_id: str, call_id: str, reason: str | None = None) -> Receipt:
        return await self.decide(session_id, call_id, approve=True, reason=reason)

    async def deny(self, session_id: str, call_id: str, reason: str | None = None) -> Receipt:
        return await self.decide(session_id, call_id, approve=False, reason=reason)

    # -- reading -------------------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRecord:
        checkpoint, _ = await self._checkpoint(session_id)
        if not self._sees(checkpoint.session):
            raise SessionNotFoundError(session_id)
        return checkpoint.session

    async def list(
        self,
        *,
        state: SessionState | None = None,
        agent: str | None = None,
        task_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Sessions newest first, filtered, ``limit`` a page; pass ``next_cursor`` on.

        ``created_after`` is inclusive, ``created_before`` exclusive."""
        for value, kind in ((agent, "agent name"), (task_id, "task id")):
            if value is not None:
                check_token(value, kind)
        after = _decode_cursor(cursor) if cursor else None
        records = [
            r
            for r in await self.records()
            if self._sees(r)
            and (state is None or r.state == state)
            and (agent is None or r.agent == agent)
            and (task_id is None or r.task_id == task_id)
            and (created_after is None or r.created_at >= created_after)
            and (created_before is None or r.created_at < created_before)
        ]
        records.sort(key=_order_key)
        if after is not None:
            records = [r for r in records if _order_key(r) > after]
        page = records[: max(1, limit)]
        more = len(records) > len(page)
        return Page(page, _encode_cursor(_order_key(page[-1])) if more and page else None)

    async def records(self) -> Records:
        """Every session record."""
        values = await self._bucket_values(self.bus.settings.sessions_bucket)
        return [SessionRecord.model_validate_json(v) for v in values]

    async def history(
        self, session_id: str, *, before: int | None = None, limit: int | None = None
    ) -> History:
        """The conversation, oldest first; ``before``/``limit`` page backwards by cursor."""
        items, _ = await self.history_page(session_id, before=before, limit=limit)
        return items

    async def history_page(
        self, session_id: str, *, before: int | None = None, limit: int | None = None
    ) -> tuple[History, bool]:
        """The last ``limit`` messages before the cursor ``before``, and whether there are
        older ones."""
        ck, tail = await self._checkpoint(session_id)
        if not self._sees(ck.session):
            raise SessionNotFoundError(session_id)
        ranges = ck.rolled_back
        if before is None and limit:
            # The end of the history is in the session's state (its recent context): one
            # read of the snapshot, however long the history is.
            total = ck.session.counters.user_messages + ck.session.counters.agent_messages
            recent = ck.context[-limit:]
            known = all(m.seq and m.ts for m in recent)  # older snapshots lack them
            whole = not ranges or (recent and max(b for _, b in ranges) < recent[0].seq)
            if known and whole and (len(ck.context) > limit or len(ck.context) == total):
                items = [_from_context(m) for m in recent]
                return items, total > len(items)

        def keep(m: direct.StoredMsg) -> HistoryItem | None:
            item = _history_item(m.seq, m.data)
            if item is not None and any(a <= item.seq <= b for a, b in ranges):
                item.rolled_back = True
            return item

        return await direct.read_last(
            self.bus.nc,
            self.bus.stream,
            subjects.events(session_id),
            up_to=min(tail, before - 1) if before else tail,
            keep=keep,
            want=limit or None,
            timeout=self.bus.timeout,
        )

    async def events(self, session_id: str, after: int | None = None) -> AsyncIterator[Delivery]:
        """Durable events after ``after`` (``None``: from now) then live ones, with deltas."""
        await self._guard(session_id)
        follower = Follower(self.bus, session_id)
        try:
            _, tail = await follower.open()
            await follower.start(after, tail)
            async for item in follower.deliveries():
                yield item
        finally:
            await follower.close()

    async def watch(
        self, session_id: str, after: int | None = None, *, keepalive: float | None = None
    ) -> AsyncGenerator[Delivery | None, None]:
        """Like :meth:`events`, but the session is looked up (and ``after`` checked) before
        this returns, and ``None`` comes after each ``keepalive`` seconds of quiet."""
        await self._guard(session_id)
        follower = Follower(self.bus, session_id)
        try:
            _, tail = await follower.open()
            if after is not None and after > tail:
                raise InvalidCursorError(
                    f"cursor {after} is beyond the last event of session {session_id!r} ({tail})"
                )
            await follower.start(after, tail)
        except BaseException:
            await follower.close()
            raise
        return self._relay(follower, keepalive)

    @staticmethod
    async def _relay(
        follower: Follower, keepalive: float | None
    ) -> AsyncGenerator[Delivery | None, None]:
        try:
            async for item in follower.updates(keepalive):
                yield item
        finally:
            await follower.close()

    async def purge(self, session_id: str, *, missing_ok: bool = True) -> None:
        """Remove everything of a session from the bus: its commands, events, snapshot and
        timer, its record, lease and dead letters, with no marker left behind."""
        check_token(session_id, "session id")
        if self.scope is not None and not self.scope.admin:
            await self._guard(session_id)  # an unknown one is not found, whatever missing_ok
        if not missing_ok:
            await self._head(session_id)
        self._task_ids.pop(session_id, None)
        js, settings = self.bus.js, self.bus.settings
        await js.purge_stream(self.bus.stream, subject=subjects.session_all(session_id))
        for bucket, key in (
            (settings.sessions_bucket, session_id),
            (settings.leases_bucket, session_id),
            (settings.dead_letters_bucket, f"{session_id}.*"),
        ):
            # The bucket's own stream, not KV purge: that would leave a marker naming the key.
            await js.purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}")

    async def request_purge(self, session_id: str) -> None:
        """:meth:`purge` done by a worker (``subjects.PURGE_REQUESTS``): for callers whose
        bus user may drive sessions but not purge the stream (the edge). An unknown
        session, or one the scope may not see, is :class:`SessionNotFoundError`."""
        await self._guard(session_id)
        await self._head(session_id)
        request = json.dumps({"session_id": session_id}).encode()
        timeout = self.bus.settings.command_timeout
        try:
            resp = await self.bus.nc.request(subjects.PURGE_REQUESTS, request, timeout=timeout)
        except (NoRespondersError, NatsTimeoutError) as e:
            raise CommandTimeoutError(session_id, "purge", timeout) from e
        error = json.loads(resp.data or b"{}").get("error")
        if error:
            raise PublishError(f"purge of session {session_id!r} failed: {error}")
        self._task_ids.pop(session_id, None)

    # -- dead letters --------------------------------------------------------------------

    async def dead_letters(
        self, session_id: str | None = None, *, include_replayed: bool = False
    ) -> Letters:
        """Commands parked after failing repeatedly, oldest first (replayed ones too, if
        asked)."""
        bucket = self.bus.settings.dead_letters_bucket
        keys = f"{check_token(session_id, 'session id')}.*" if session_id else ">"
        msgs = await direct.read_subject(
            self.bus.nc, f"KV_{bucket}", f"$KV.{bucket}.{keys}", after=0, timeout=self.bus.timeout
        )
        letters = [
            DeadLetter.model_validate_json(m.data)
            for m in msgs
            if m.data and "KV-Operation" not in m.headers
        ]
        return [
            x
            for x in sorted(letters, key=lambda x: (x.parked_at, x.id))
            if include_replayed or x.status == "parked"
        ]

    async def dead_letter(self, letter_id: str) -> DeadLetter:
        sid, _, seq = letter_id.rpartition(".")
        if not seq.isdigit():
            raise DeadLetterNotFoundError(letter_id)
        check_token(sid, "session id")
        try:
            entry = await self.bus.dead_letters.get(letter_id)
        except KeyNotFoundError:
            raise DeadLetterNotFoundError(letter_id) from None
        if not entry.value:
            raise DeadLetterNotFoundError(letter_id)
        return DeadLetter.model_validate_json(entry.value)

    async def replay(self, letter_id: str) -> tuple[DeadLetter, Receipt]:
        """Publish a parked command again (at the end of its session's queue) under a new
        command id; return the updated letter and the receipt to follow the outcome.

        The new id is derived from the letter's, so a replay repeated after a crash is
        dropped as a duplicate instead of running twice."""
        letter = await self.dead_letter(letter_id)
        if letter.status == "replayed":
            raise AlreadyReplayedError(letter_id, letter.replayed_as)
        _, tail = await self._head(letter.session_id)
        command_id = "cmd_r" + hashlib.sha256(letter_id.encode()).hexdigest()[:24]
        original = decode_command(json.dumps(letter.command))
        cmd = original.model_copy(
            update={
                "command_id": command_id,
                "interface": self.interface,
                "issued_at": datetime.now(UTC),
            }
        )
        await self._publish(cmd)
        now = datetime.now(UTC)
        done = letter.model_copy(
            update={"status": "replayed", "replayed_as": command_id, "replayed_at": now}
        )
        await self.bus.dead_letters.put(letter_id, done.model_dump_json().encode())
        return done, Receipt(letter.session_id, command_id, tail)

    async def drop_dead_letter(self, letter_id: str) -> DeadLetter:
        """Forget a dead letter (the session's history keeps its ``command.dead_lettered``)."""
        letter = await self.dead_letter(letter_id)
        await self.bus.dead_letters.purge(letter_id)
        return letter

    # -- workers and agents --------------------------------------------------------------

    async def workers(self) -> Workers:
        """Live workers: those whose last heartbeat is recent (killed ones age out)."""
        values = await self._bucket_values(self.bus.settings.workers_bucket)
        infos = [WorkerInfo.model_validate_json(v) for v in values]
        horizon = 3 * self.bus.settings.heartbeat_interval
        now = datetime.now(UTC)
        return [w for w in infos if (now - w.seen_at).total_seconds() <= horizon]

    async def _live_workers(self) -> int | None:
        """How many workers are live (``None`` if the workers cannot be read). One read a
        second at most, shared by every caller: when no worker answers, many commands
        time out together."""
        now = time.monotonic()
        if not self._live_cache or now - self._live_cache[0][0] >= 1.0:
            self._live_cache[:] = [(now, asyncio.ensure_future(self._count_live()))]
        return await asyncio.shield(self._live_cache[0][1])

    async def _count_live(self) -> int | None:
        try:
            return len(await self.workers())
        except Exception:
            return None

    async def known_agents(self) -> dict[str, AgentInfo]:
        """Agents offered by live workers (cached for two seconds)."""
        now = time.monotonic()
        if self._agents_cache and now - self._agents_cache[0] < 2.0:
            return self._agents_cache[1]
        agents = {a.name: a for w in await self.workers() for a in w.agents}
        self._agents_cache = (now, agents)
        return agents

    async def agents(self) -> Agents:
        """:meth:`known_agents`, by name (what REST and GraphQL list)."""
        return sorted((await self.known_agents()).values(), key=lambda a: a.name)

    # -- internals -----------------------------------------------------------------------

    async def _bucket_values(self, bucket: str) -> Values:
        """The current values of a KV bucket (history 1), read in batches by direct get."""
        msgs = await direct.read_subject(
            self.bus.nc, f"KV_{bucket}", f"$KV.{bucket}.>", after=0, timeout=self.bus.timeout
        )
        return [m.data for m in msgs if m.data and "KV-Operation" not in m.headers]

    async def _head(self, session_id: str) -> tuple[Event, int]:
        check_token(session_id, "session id")
        found = await load_head(self.bus, session_id)
        if found is None:
            raise SessionNotFoundError(session_id)
        self._remember(session_id, found[0].task_id)
        return found

    def _remember(self, session_id: str, task_id: str) -> None:
        ids = self._task_ids
        if len(ids) >= _TASK_IDS_KEPT:  # a long-lived edge talks to endless sessions
            del ids[next(iter(ids))]
        ids[session_id] = task_id

    async def _checkpoint(self, session_id: str) -> tuple[Checkpoint, int]:
        check_token(session_id, "session id")
        found = await load_state(self.bus, session_id)
        if found is None:
            raise SessionNotFoundError(session_id)
        return found

    async def _publish(self, cmd: Command, *, new_session: bool = False) -> int:
        """Store a command (retried through leader changes); return its stream sequence.

        ``new_session``: only if no command was ever stored for the session (else
        :class:`SessionExistsError`)."""
        return int((await self._store(cmd, new_session=new_session)).seq)

    async def _store(self, cmd: Command, *, new_session: bool = False) -> PubAck:
        """:meth:`_publish`, with the server's acknowledgement (``duplicate``: a repeat of a
        command id already stored)."""
        payload = cmd.model_dump_json().encode()
        subject = subjects.inputs(cmd.session_id)
        headers = {"Nats-Msg-Id": subjects.command_msg_id(cmd.session_id, cmd.command_id)}
        if new_session:
            headers[commit.EXPECTED_LAST_SUBJECT_SEQ] = "0"
        check_size(payload, headers, self.bus.settings.max_message_bytes)
        attributes = {
            **tracing.session_attributes(cmd.session_id, cmd.task_id),
            "praxis.command_id": cmd.command_id,
        }
        try:
            with tracing.span(f"send {cmd.kind}", kind=SpanKind.PRODUCER, attributes=attributes):
                tracing.inject(headers)  # the worker continues this trace
                ack = await with_retry(
                    lambda: self.bus.js.publish(subject, payload, headers=headers),
                    what=f"publish {cmd.kind} to {cmd.session_id}",
                    deadline=self.bus.settings.retry_window,
                )
        except PublishError as e:
            cause = e.__cause__
            if isinstance(cause, APIError) and cause.err_code == MESSAGE_TOO_LARGE:
                raise MessageTooLargeError(len(payload), None) from e  # the stream's own limit
            if isinstance(cause, APIError) and cause.err_code == commit.WRONG_LAST_SEQUENCE:
                raise SessionExistsError(cmd.session_id) from e
            raise
        if ack.duplicate:
            await self._check_repeat(cmd, int(ack.seq))
        return ack

    async def _check_repeat(self, cmd: Command, seq: int) -> None:
        """A command id the session stored already (``seq``): a retry of the same command
        is fine (it is stored once), a different command under that id is refused."""
        stored = await direct.by_seq(self.bus.nc, self.bus.stream, seq, self.bus.timeout)
        if stored is None:
            return  # removed since (a purge): nothing left to differ from
        try:
            before = decode_command(stored.data)
        except ValueError:
            before = None
        if before is None or _what(before) != _what(cmd):
            raise CommandIdReusedError(cmd.session_id, cmd.command_id)


_CIRCUMSTANCES = {"issued_at", "interface", "actor", "reply_to"}
"""Fields that say when, where from and by whom a command was sent, not what it is: a
retry of a command may differ in them."""


def _what(cmd: Command) -> dict[str, Any]:
    return cmd.model_dump(mode="json", exclude=_CIRCUMSTANCES)


def _command_id(command_id: str | None) -> dict[str, str]:
    """A caller's own command id (validated), or nothing: the model then makes one."""
    return {} if command_id is None else {"command_id": check_token(command_id, "command id")}


def _history_item(seq: int, data: bytes) -> HistoryItem | None:
    head = json.loads(data)
    kind = head.get("type")
    if kind == "user.message":
        return HistoryItem(seq=seq, role="user", content=head["content"], ts=head["ts"])
    if kind == "agent.message":
        return HistoryItem(
            seq=seq,
            role="agent",
            content=head["content"],
            ts=head["ts"],
            interrupted=head.get("interrupted", False),
        )
    return None


def _from_context(m: ChatMessage) -> HistoryItem:
    assert m.ts is not None
    return HistoryItem(
        seq=m.seq, role=m.role, content=m.content, ts=m.ts, interrupted=m.interrupted
    )


def list_cursor(record: SessionRecord) -> str:
    """The cursor of ``list()`` that continues after ``record`` (for per-item cursors)."""
    return _encode_cursor(_order_key(record))


def _order_key(r: SessionRecord) -> tuple[float, str]:
    return (-r.created_at.timestamp(), r.session_id)


def _encode_cursor(key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        ts, sid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(ts), str(sid)
    except Exception as e:
        raise InvalidCursorError(
            f"invalid list cursor {cursor[:40]!r}: pass a next_cursor back unchanged"
        ) from e
