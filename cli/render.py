"""Printing sessions, histories and turns."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from praxis.cli.term import AGENT, NOTE, USER, paint
from praxis.schemas import (
    AgentMessage,
    CommandDeadLettered,
    CommandRejected,
    DeadLetter,
    Delivery,
    HistoryItem,
    SessionRecord,
    StateChanged,
    TokenDelta,
    ToolCall,
    ToolCallsRequested,
    ToolResult,
    TurnFailed,
    TurnWaiting,
    WorkerInfo,
)


@dataclass
class TurnOutcome:
    reply: str = ""
    failure: str | None = None
    waiting: list[ToolCall] = field(default_factory=list)
    """The turn paused: these calls wait for a human's approval."""


async def print_turn(
    items: AsyncIterator[Delivery], out: TextIO, prefix: str, notes: TextIO | None = None
) -> TurnOutcome:
    """Stream a turn's reply to ``out`` as it is generated; report how it ended. Tool calls
    and their results are shown on ``notes``, if given."""
    outcome = TurnOutcome()
    started = False
    async for item in items:
        ev = item.event
        if notes is not None and isinstance(ev, ToolCallsRequested | ToolResult):
            started = _show_note(ev, out, notes, started)
        if isinstance(ev, TokenDelta):
            if not started:
                out.write(paint(prefix, AGENT, out))
                started = True
            out.write(ev.text)
            out.flush()
        elif isinstance(ev, AgentMessage):
            outcome.reply = ev.content
            if not started:  # nothing streamed to us (joined late): print it whole
                out.write(paint(prefix, AGENT, out) + ev.content)
                started = True
        elif isinstance(ev, TurnWaiting):
            outcome.waiting = [c for c in ev.calls if c.needs_approval] or list(ev.calls)
        elif (failure := _failure(ev)) is not None:
            outcome.failure = failure
    if started:
        out.write("\n")
        out.flush()
    return outcome


def _failure(ev: object) -> str | None:
    """What to tell the user when ``ev`` ends a command unsuccessfully."""
    if isinstance(ev, TurnFailed):
        return f"turn failed: {ev.reason}"
    if isinstance(ev, CommandRejected):
        return ev.reason
    if isinstance(ev, CommandDeadLettered):
        return (
            f"the command kept failing and was parked as dead letter {ev.dead_letter_id} "
            f"({ev.reason}); see 'praxis dead-letters show {ev.dead_letter_id}'"
        )
    if isinstance(ev, StateChanged) and ev.final and ev.to_state.value == "FAILED":
        return f"session failed: {ev.reason}"
    return None


def _show_note(
    ev: ToolCallsRequested | ToolResult, out: TextIO, notes: TextIO, started: bool
) -> bool:
    """Show a tool step between lines of the reply; the reply then starts a new line."""
    if started:
        out.write("\n")
        out.flush()
    notes.write(paint(_note(ev), NOTE, notes) + "\n")
    notes.flush()
    return False


def _note(ev: ToolCallsRequested | ToolResult) -> str:
    if isinstance(ev, ToolCallsRequested):
        return "\n".join(
            f"  [tool] {call_text(c)}" + (" (needs approval)" if c.needs_approval else "")
            for c in ev.calls
        )
    content = ev.content if isinstance(ev.content, str) else json.dumps(ev.content)
    short = content if len(content) <= 200 else content[:199] + "…"
    return f"  [{'denied' if ev.denied else 'result'}] {short}"


def call_text(call: ToolCall) -> str:
    args = call.args if isinstance(call.args, str) else json.dumps(call.args, ensure_ascii=False)
    return f"{call.tool}({args})"


def history_lines(items: list[HistoryItem], out: TextIO | None = None) -> list[str]:
    """``You: ...`` and ``Agent: ...`` lines (the labels in colour if ``out`` is styled)."""

    def label(role: str) -> str:
        text = "You:" if role == "user" else "Agent:"
        return paint(text, USER if role == "user" else AGENT, out) if out else text

    return [f"{label(h.role)} {h.content}" for h in items]


def _ago(ts: datetime) -> str:
    secs = int((datetime.now(UTC) - ts).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit} ago"
    return f"{max(secs, 0)}s ago"


def session_rows(records: list[SessionRecord]) -> list[list[str]]:
    rows = [["SESSION", "TASK", "AGENT", "STATE", "MESSAGES", "UPDATED"]]
    for r in records:
        messages = r.counters.user_messages + r.counters.agent_messages
        rows.append(
            [r.session_id, r.task_id, r.agent, r.state.value, str(messages), _ago(r.updated_at)]
        )
    return rows


def worker_rows(workers: list[WorkerInfo]) -> list[list[str]]:
    partitioned = any(w.partitions not in ([], [0]) for w in workers)  # a bus of several
    rows = [["WORKER", "HOST", "PID", "SESSIONS", "AGENTS", "STARTED", "SEEN"]]
    rows[0] += ["PARTITIONS"] if partitioned else []
    for w in workers:
        rows.append(
            [
                w.worker_id,
                w.host,
                str(w.pid),
                f"{w.active_sessions}/{w.capacity}",
                ",".join(a.name for a in w.agents),
                _ago(w.started_at),
                _ago(w.seen_at),
                *([",".join(map(str, w.partitions))] if partitioned else []),
            ]
        )
    return rows


def dead_letter_rows(letters: list[DeadLetter]) -> list[list[str]]:
    rows = [["DEAD LETTER", "COMMAND", "ATTEMPTS", "PARKED", "STATUS", "ERROR"]]
    for x in letters:
        error = x.error if len(x.error) <= 60 else x.error[:59] + "…"
        rows.append([x.id, x.command_kind, str(x.attempts), _ago(x.parked_at), x.status, error])
    return rows
