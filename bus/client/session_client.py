"""``SessionClient``: what the CLI, the edge and any other service use to drive sessions.

A thin façade: one method per operation, each a call into the module of its concern
(:mod:`.commands`, :mod:`.lifecycle`, :mod:`.following`, :mod:`.reading`, :mod:`.scope`,
:mod:`.dead_letters`, :mod:`.fleet`, :mod:`.admin`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Any, Literal, overload

from praxis.bus.client import (
    admin,
    commands,
    dead_letters,
    fleet,
    following,
    lifecycle,
    reading,
)
from praxis.bus.client.base import ClientState, Page, Receipt
from praxis.schemas import (
    AgentInfo,
    Complete,
    DeadLetter,
    Delivery,
    DoubleTexting,
    Event,
    HistoryItem,
    Resume,
    SessionRecord,
    SessionState,
    Suspend,
    WorkerInfo,
)


class SessionClient(ClientState):
    """Drive sessions over the bus (cheap to make; it remembers sessions' task ids)."""

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
        instructions: str | None = None,
    ) -> tuple[SessionRecord, Receipt]:
        """Create a session; ``idle_timeout`` and ``max_lifetime`` (seconds, 0: never)
        default to ``PRAXIS_SESSION_IDLE_TIMEOUT`` and ``PRAXIS_SESSION_MAX_LIFETIME``.
        ``instructions``: for the turn answering ``initial_message`` (see ``send``)."""
        return await commands.create(
            self,
            agent,
            task_id=task_id,
            metadata=metadata,
            initial_message=initial_message,
            session_id=session_id,
            command_id=command_id,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            double_texting=double_texting,
            instructions=instructions,
        )

    async def send(
        self,
        session_id: str,
        message: str,
        *,
        command_id: str | None = None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
        instructions: str | None = None,
    ) -> Receipt:
        """Queue a user message; the reply arrives as events after ``Receipt.cursor``.
        ``queue``: kept while the session is suspended (``message.queued``), not refused.
        ``on_busy``: its way if the session is busy (default: its ``double_texting``).
        ``instructions``: for the turn answering this message only (a model agent adds
        them to its system prompt for that turn)."""
        return await commands.send(
            self, session_id, message, command_id, queue, on_busy, instructions=instructions
        )

    @overload
    def turn(
        self,
        session_id: str,
        message: str,
        *,
        command_id: str | None = None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
        instructions: str | None = None,
    ) -> AsyncGenerator[Delivery, None]: ...

    @overload
    def turn(
        self,
        session_id: str,
        message: str,
        *,
        command_id: str | None = None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
        instructions: str | None = None,
        updates: Literal[True],
        keepalive: float | None = None,
        accepted: bool = False,
    ) -> AsyncGenerator[Receipt | Delivery | None, None]: ...

    def turn(
        self,
        session_id: str,
        message: str,
        *,
        command_id: str | None = None,
        queue: bool = False,
        on_busy: DoubleTexting | None = None,
        instructions: str | None = None,
        updates: bool = False,
        keepalive: float | None = None,
        accepted: bool = False,
    ) -> AsyncGenerator[Delivery, None] | AsyncGenerator[Receipt | Delivery | None, None]:
        """Send a message and yield what it causes (deltas, reply) until the turn ends.

        ``updates=True`` (for relays): also ``None`` after each ``keepalive`` seconds of
        quiet, and with ``accepted``, first the :class:`Receipt` as soon as the message is
        stored (the session's state is then checked first, so that a message it refuses
        raises instead)."""
        items = following.turn(
            self,
            session_id,
            message,
            command_id=command_id,
            keepalive=keepalive,
            queue=queue,
            on_busy=on_busy,
            accepted=accepted,
            instructions=instructions,
        )
        return items if updates else following.deliveries(items)

    @overload
    def follow(
        self, receipt: Receipt, *, deltas: bool = True
    ) -> AsyncGenerator[Delivery, None]: ...

    @overload
    def follow(
        self,
        receipt: Receipt,
        *,
        deltas: bool = True,
        updates: Literal[True],
        keepalive: float | None = None,
    ) -> AsyncGenerator[Delivery | None, None]: ...

    def follow(
        self,
        receipt: Receipt,
        *,
        deltas: bool = True,
        updates: bool = False,
        keepalive: float | None = None,
    ) -> AsyncGenerator[Delivery, None] | AsyncGenerator[Delivery | None, None]:
        """Yield what a stored command causes (deltas included) until it is done;
        ``updates=True``: also ``None`` after each ``keepalive`` seconds of quiet."""
        items = following.follow(self, receipt, deltas=deltas, keepalive=keepalive)
        return items if updates else following.deliveries(items)

    async def wait(self, receipt: Receipt) -> list[Event]:
        """Wait for the outcome of a stored command; return the events it caused."""
        return await lifecycle.wait(self, receipt)

    # -- lifecycle -----------------------------------------------------------------------

    async def suspend(self, session_id: str, reason: str | None = None) -> SessionRecord:
        return await lifecycle.transition(self, session_id, Suspend, reason)

    async def resume(self, session_id: str) -> SessionRecord:
        return await lifecycle.transition(self, session_id, Resume)

    async def complete(self, session_id: str, reason: str | None = None) -> SessionRecord:
        return await lifecycle.transition(self, session_id, Complete, reason)

    async def cancel(self, session_id: str) -> Receipt:
        """Ask the owner to stop the turn in flight (the turn ends with ``turn.failed``)."""
        return await commands.cancel(self, session_id)

    async def add_messages(
        self,
        session_id: str,
        messages: Sequence[tuple[str, str]] = (),
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Receipt:
        """Add ``(role, text)`` messages (``user`` or ``assistant``) to the history without
        a turn, and/or replace the session's metadata; follow the receipt for the events."""
        return await commands.add_messages(self, session_id, messages, metadata)

    # -- human in the loop ---------------------------------------------------------------

    async def delete_response(self, session_id: str, response_id: str) -> Receipt:
        """Record that a response of the OpenAI API is deleted (``response.deleted``): the
        edge's ``/v1/responses/{id}`` answers 404 for it from then on. The turn stays in
        the history; to erase a conversation, purge its session."""
        return await commands.delete_response(self, session_id, response_id)

    async def decide(
        self, session_id: str, call_id: str, *, approve: bool, reason: str | None = None
    ) -> Receipt:
        """Approve or deny a tool call the turn waits on (``waiting_for``); once all are
        decided the turn goes on: follow the receipt for the rest of it."""
        return await commands.decide(self, session_id, call_id, approve, reason)

    async def approve(self, session_id: str, call_id: str, reason: str | None = None) -> Receipt:
        return await self.decide(session_id, call_id, approve=True, reason=reason)

    async def deny(self, session_id: str, call_id: str, reason: str | None = None) -> Receipt:
        return await self.decide(session_id, call_id, approve=False, reason=reason)

    # -- reading -------------------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRecord:
        return await reading.get(self, session_id)

    async def list_sessions(
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
        """Sessions newest first, filtered, ``limit`` a page; pass ``next_cursor`` on
        (``created_after`` is inclusive, ``created_before`` exclusive)."""
        return await reading.list_sessions(
            self,
            state=state,
            agent=agent,
            task_id=task_id,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )

    async def records(self) -> list[SessionRecord]:
        """Every session record (whoever owns it)."""
        return await reading.records(self)

    @overload
    async def history(
        self,
        session_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> list[HistoryItem]: ...

    @overload
    async def history(
        self,
        session_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        more: Literal[True],
    ) -> tuple[list[HistoryItem], bool]: ...

    async def history(
        self,
        session_id: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        more: bool = False,
    ) -> list[HistoryItem] | tuple[list[HistoryItem], bool]:
        """The conversation, oldest first; ``before``/``limit`` page backwards by cursor
        (``more=True``: also whether there are older messages), ``after``/``limit``
        forwards (``more=True``: whether there are later ones)."""
        if after is not None:
            if before is not None:
                raise ValueError("page by before or by after, not both")
            want = limit if limit is not None else 2**62
            items, later = await reading.history_after(self, session_id, after, want)
            return (items, later) if more else items
        items, older = await reading.history(self, session_id, before, limit)
        return (items, older) if more else items

    @overload
    async def events(
        self, session_id: str, after: int | None = None
    ) -> AsyncGenerator[Delivery, None]: ...

    @overload
    async def events(
        self,
        session_id: str,
        after: int | None = None,
        *,
        updates: Literal[True],
        keepalive: float | None = None,
    ) -> AsyncGenerator[Delivery | None, None]: ...

    async def events(
        self,
        session_id: str,
        after: int | None = None,
        *,
        updates: bool = False,
        keepalive: float | None = None,
    ) -> AsyncGenerator[Delivery, None] | AsyncGenerator[Delivery | None, None]:
        """The session's durable events after ``after`` (``None``: from now), then live
        ones, with deltas: ``async for item in await client.events(...)``. The session is
        looked up and ``after`` checked before this returns. ``updates=True``: also
        ``None`` after each ``keepalive`` seconds of quiet."""
        items = await following.events(self, session_id, after, keepalive)
        return items if updates else following.deliveries(items)

    # -- removing ------------------------------------------------------------------------

    async def purge(self, session_id: str, *, missing_ok: bool = True) -> None:
        """Remove everything of a session from the bus: its commands, events, snapshot and
        timer, its record, lease and dead letters, with no marker left behind."""
        await admin.purge(self, session_id, missing_ok)

    async def request_purge(self, session_id: str) -> None:
        """:meth:`purge` done by a worker, for callers whose bus user may not purge the
        stream (the edge)."""
        await admin.request_purge(self, session_id)

    # -- dead letters --------------------------------------------------------------------

    async def dead_letters(
        self, session_id: str | None = None, *, include_replayed: bool = False
    ) -> list[DeadLetter]:
        """Commands parked after failing repeatedly, oldest first (replayed ones too, if
        asked)."""
        return await dead_letters.letters(self, session_id, include_replayed)

    async def dead_letter(self, letter_id: str) -> DeadLetter:
        return await dead_letters.letter(self, letter_id)

    async def replay(self, letter_id: str) -> tuple[DeadLetter, Receipt]:
        """Send a parked command again under a new id; the letter and a receipt."""
        return await dead_letters.replay(self, letter_id)

    async def drop_dead_letter(self, letter_id: str) -> DeadLetter:
        """Forget a dead letter (the session's history keeps its ``command.dead_lettered``)."""
        return await dead_letters.drop(self, letter_id)

    # -- workers and agents --------------------------------------------------------------

    async def workers(self) -> list[WorkerInfo]:
        """Live workers: those whose last heartbeat is recent (killed ones age out)."""
        return await fleet.workers(self)

    async def known_agents(self) -> dict[str, AgentInfo]:
        """Agents offered by live workers, by name (cached for two seconds)."""
        return await fleet.known_agents(self)

    async def agents(self, *, unlisted: bool = False) -> list[AgentInfo]:
        """:meth:`known_agents`, sorted by name (what REST and GraphQL list); those not
        ``listed`` (used by name only) if asked for."""
        found = (await self.known_agents()).values()
        return sorted((a for a in found if unlisted or a.listed), key=lambda a: a.name)
