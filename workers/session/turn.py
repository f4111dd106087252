"""The agent's part of a turn: streaming its reply as token deltas, stopping it when a
command interrupts it, answering followers who join mid-turn, journalling its tool calls,
and compacting the context before it.

Everything the agent's code does happens inside :meth:`TurnDriver.run`, so whatever it
raises or however long it takes, the turn ends with an outcome the policy records.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from praxis.bus import Bus, subjects
from praxis.schemas import (
    ChatMessage,
    Checkpoint,
    ContextCompacted,
    Event,
    TokenDelta,
    ToolCall,
    ToolCallsRequested,
    ToolResult,
    Usage,
    encode_delta,
)
from praxis.workers.agents import Agent, TurnContext
from praxis.workers.agents.base import (
    SUMMARY_CHARS,
    AgentFailure,
    AwaitingApproval,
    TurnJournal,
    builtin_summary,
)
from praxis.workers.live import LiveTurn
from praxis.workers.session.policy import CommandContext, TurnOutcome

log = logging.getLogger("praxis.worker")
Record = Callable[[Event], Awaitable[None]]
"""Store one event of the turn (the session log's append, with its effects)."""


class TurnDriver:
    def __init__(self, bus: Bus, session_id: str) -> None:
        self.bus = bus
        self.sid = session_id
        self.live: LiveTurn | None = None
        self._held: list[TokenDelta] | None = None
        """Token deltas kept back while the turn's start is not stored yet."""

    def hold(self) -> None:
        """Keep the token deltas back until :meth:`release` (the start is not stored)."""
        self._held = []

    async def release(self) -> None:
        """Send the deltas kept back, and the later ones as they come."""
        held, self._held = self._held, None
        for d in held or ():
            data = encode_delta(d.session_id, d.turn_id, d.index, d.text)
            await self.bus.nc.publish(subjects.live(self.sid), data)

    def take_held(self) -> TokenDelta | None:
        """The deltas kept back (the turn ended before its start was stored: they go with
        the notice of the record that holds the whole turn), as one snapshot: nobody saw
        them."""
        held, self._held = self._held, None
        if not held:
            return None
        return held[-1].model_copy(update={"text": "".join(d.text for d in held)})

    # -- running the agent --------------------------------------------------------------------

    async def run(self, agent: Agent | None, ctx: TurnContext, name: str) -> TurnOutcome:
        """Run ``agent``'s reply to ``ctx`` (agent ``name``, ``None`` if not offered here)."""
        if agent is None:
            return TurnOutcome(error=f"agent {name!r} is not available on this worker")
        outcome = await self._stream(ctx.turn_id, lambda: pieces_for(agent, ctx))
        spent = ctx.usage
        usage = Usage(**spent.known()) if spent else None
        return TurnOutcome(outcome.text, outcome.error, usage, outcome.waiting, outcome.stopped_by)

    async def _stream(self, turn_id: str, pieces: Callable[[], AsyncIterator[str]]) -> TurnOutcome:
        live = LiveTurn(self.sid, turn_id)
        self.live = live
        live.task = asyncio.create_task(self._consume(live, pieces))
        timeout = self.bus.settings.turn_timeout
        try:
            async with asyncio.timeout(timeout):
                await live.task
            return TurnOutcome(live.text)
        except TimeoutError:
            return TurnOutcome(live.text, f"timed out after {timeout:g}s")
        except AgentFailure as e:
            log.warning("session %s: turn failed: %s", self.sid, e)
            return TurnOutcome(live.text, str(e) or type(e).__name__)
        except AwaitingApproval as e:
            return TurnOutcome(live.text, waiting=e.calls)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if live.cancelled_by is not None and (current is None or current.cancelling() == 0):
                why = f"{live.why} by {live.cancelled_by}"
                return TurnOutcome(live.text, why, stopped_by=live.cancelled_by)
            raise
        except Exception as e:
            log.exception("session %s: agent failed", self.sid)
            return TurnOutcome(live.text, f"agent error: {type(e).__name__}: {e}")
        finally:
            self.live = None

    async def _consume(self, live: LiveTurn, pieces: Callable[[], AsyncIterator[str]]) -> None:
        subject = subjects.live(self.sid)
        async for piece in pieces():
            if piece:
                index = live.add(piece)
                if self._held is not None:
                    self._held.append(live.delta(index, piece))
                else:
                    await self.bus.nc.publish(
                        subject, encode_delta(self.sid, live.turn_id, index, piece)
                    )

    def interrupt(self, command_id: str, why: str) -> None:
        """Stop the turn in flight now (at its next token), on ``command_id``'s account."""
        if self.live is not None:
            self.live.cancel(command_id, why)

    # -- followers joining mid-turn ---------------------------------------------------------

    def snapshot(self) -> bytes:
        """The text of the turn in flight so far, to a follower joining mid-turn (see
        :mod:`.snapshots`); empty with no turn in flight."""
        live = self.live if self._held is None else None  # a turn not stored has no text yet
        return live.snapshot().model_dump_json().encode() if live else b""

    # -- the journal of tool calls -------------------------------------------------------------

    def journal(
        self, state: Checkpoint, ctx: CommandContext, turn_id: str, record: Record
    ) -> TurnJournal:
        """The turn's recorded steps, and the way to record more (one append at a time:
        tools may run concurrently)."""
        turn = state.turn
        lock = asyncio.Lock()
        meta = ctx.meta(state.session.state)

        async def record_response(step: int, calls: list[ToolCall], response: str) -> None:
            event = ToolCallsRequested(
                **meta, turn_id=turn_id, step=step, calls=calls, response=response
            )
            async with lock:
                await record(event)

        async def record_result(call_id: str, tool: str, content: Any, denied: bool) -> None:
            event = ToolResult(
                **meta, turn_id=turn_id, call_id=call_id, tool=tool, content=content, denied=denied
            )
            async with lock:
                await record(event)

        return TurnJournal(
            responses=list(turn.responses) if turn else [],
            results=dict(turn.results) if turn else {},
            decisions=dict(turn.decisions) if turn else {},
            record_response=record_response,
            record_result=record_result,
            # A result must fit in one event with room for the envelope (and wide chars).
            max_result_chars=self.bus.settings.max_message_bytes // 8,
        )

    # -- compaction -------------------------------------------------------------------------

    async def summarize(
        self, agent: Agent, state: Checkpoint, ctx: CommandContext, dropped: list[ChatMessage]
    ) -> ContextCompacted:
        """The record of folding ``dropped`` into the running summary (the agent's own
        summary, or the built-in one if it fails; the history keeps the messages)."""
        try:
            summary = agent.summarize(state.summary, dropped)
            if inspect.isawaitable(summary):
                summary = await summary
        except Exception:
            log.exception("session %s: the agent's summarize failed; built-in used", self.sid)
            summary = builtin_summary(state.summary, dropped)
        return ContextCompacted(
            **ctx.meta(state.session.state),
            from_seq=dropped[0].seq,
            to_seq=dropped[-1].seq,
            messages=len(dropped),
            summary=str(summary)[: 4 * SUMMARY_CHARS],
        )


def turn_context(
    state: Checkpoint,
    message: str | None,
    attempt: int = 1,
    turn_id: str = "",
    journal: TurnJournal | None = None,
    origin: int = 0,
    actor: str | None = None,
) -> TurnContext:
    """What the agent sees of the session for one turn."""
    record = state.session
    history = state.context[:-1] if message is not None else state.context
    # The user message a turn answers is the context's last (its instructions with it).
    said = state.context[-1] if message is not None and state.context else None
    return TurnContext(
        session_id=record.session_id,
        task_id=record.task_id,
        agent=record.agent,
        metadata=record.metadata,
        history=tuple(history),
        user_messages=record.counters.user_messages,
        message=message,
        attempt=attempt,
        summary=state.summary,
        turn_id=turn_id,
        journal=journal or TurnJournal(),
        origin_seq=origin,
        actor=actor,
        instructions=said.instructions if said is not None and said.role == "user" else None,
    )


def greets(agent: Agent, ctx: TurnContext) -> bool:
    """Whether the agent speaks first; if asking raises, the greeting turn fails with it."""
    try:
        return agent.greet(ctx) is not None
    except Exception:
        return True


def pieces_for(agent: Agent, ctx: TurnContext) -> AsyncIterator[str]:
    if ctx.message is None:
        return agent.greet(ctx) or _empty()
    return agent.respond(ctx)


async def _empty() -> AsyncIterator[str]:
    return
    yield  # pragma: no cover
