"""Import and export of whole conversations as JSON lines (OpenAI chat-format messages).

One line is one conversation::

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
     "session_id": "...", "task_id": "...", "agent": "...", "metadata": {...}}

Everything but ``messages`` is optional. An imported conversation becomes an ACTIVE session
whose history is those messages, resumable like any other. The importer writes the events
itself, as the session's owner (it holds the lease of a session nobody else knows yet), in
pipelined publishes: a 100,000-message conversation takes seconds, not a turn per message.

An export (``praxis agent export``, ``cleanup --export``) is a backup: besides the messages
(each with its time, and whether it was cut short or rolled back) it carries what a
restore needs of the session (its owner, state, times, expiry settings and turn counters),
and importing it brings the session back as it was, under the same ids.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from praxis.bus import commit, leases, subjects
from praxis.bus.client import SessionClient
from praxis.bus.connection import with_retry
from praxis.bus.errors import FenceRejectedError, SessionExistsError, TransientError, check_size
from praxis.schemas import (
    TERMINAL,
    AgentMessage,
    AgentName,
    Checkpoint,
    Event,
    Interface,
    SessionCreated,
    SessionId,
    SessionImported,
    SessionRecord,
    SessionState,
    TaskId,
    TurnRolledBack,
    UserMessageAccepted,
    apply,
    event_id,
    new_id,
    record_of,
)
from praxis.schemas.commands import DoubleTexting, Owner, Seconds

PIPELINE = 512
"""Publishes in flight at once while importing."""


class ChatLine(BaseModel):
    """One message in OpenAI chat format (other keys, e.g. ``name``, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]
    ts: datetime | None = None
    """When it was said (exports carry it; absent: the time of the import)."""
    interrupted: bool = False
    """An agent reply cut short (its turn failed or was cancelled)."""
    rolled_back: bool = False
    """Part of a turn discarded by a newer message: kept in the history, not in the
    agent's context."""

    @field_validator("content")
    @classmethod
    def _text(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, list) and any(p.get("type") != "text" for p in value):
            raise ValueError("only text content parts can be imported")
        return value

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n\n".join(str(p.get("text", "")) for p in self.content)  # parts: paragraphs


class Conversation(BaseModel):
    """One line of an import file."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatLine] = Field(min_length=1)
    session_id: SessionId | None = None
    task_id: TaskId | None = None
    agent: AgentName | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # What an export carries beyond the conversation, for a restore (all optional):
    state: SessionState | None = None
    """The state to restore (absent: ACTIVE)."""
    owner: Owner | None = None
    created_by: Interface | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    active_at: datetime | None = None
    idle_timeout: Seconds | None = None
    max_lifetime: Seconds | None = None
    double_texting: DoubleTexting | None = None
    turns: int = Field(default=0, ge=0)
    failed_turns: int = Field(default=0, ge=0)

    @property
    def needs_agent(self) -> bool:
        """Whether the restored session can still take messages (an ended one never asks
        its agent for anything again)."""
        return self.state is None or self.state not in TERMINAL


class LineError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def parse_lines(lines: Iterable[str]) -> tuple[list[tuple[int, Conversation]], list[LineError]]:
    """Every conversation of a file, with its line number, and every bad line."""
    good: list[tuple[int, Conversation]] = []
    bad: list[LineError] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            good.append((number, Conversation.model_validate_json(raw)))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "line"
            more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
            bad.append(LineError(number, f"{where}: {first.get('msg', 'invalid')}{more}"))
    return good, bad


def conversation_events(
    conv: Conversation, sid: str, task_id: str, agent: str, expiry: tuple[float, float]
) -> list[Event]:
    """The events that make ``conv`` a session, up to its messages (its last events, the
    rollbacks and :func:`closing_event`, name the sequences of these)."""
    now = datetime.now(UTC)
    system = [m.text for m in conv.messages if m.role == "system"]
    metadata = dict(conv.metadata)
    if system and "system" not in metadata:
        metadata["system"] = "\n\n".join(system)
    base: dict[str, Any] = {"session_id": sid, "task_id": task_id, "interface": Interface.BUS}
    events: list[Event] = [
        SessionCreated(
            **base | {"interface": conv.created_by or Interface.BUS},
            ts=conv.created_at or now,
            agent=agent,
            metadata=metadata,
            idle_timeout=expiry[0] if conv.idle_timeout is None else conv.idle_timeout,
            max_lifetime=expiry[1] if conv.max_lifetime is None else conv.max_lifetime,
            double_texting=conv.double_texting or "enqueue",
            owner=conv.owner,
        )
    ]
    for i, m in enumerate(conv.messages):
        ts = m.ts or now
        if m.role == "user":
            events.append(UserMessageAccepted(**base, ts=ts, content=m.text))
        elif m.role == "assistant":
            events.append(
                AgentMessage(
                    **base,
                    ts=ts,
                    turn_id=f"imported_{i}",
                    content=m.text,
                    interrupted=m.interrupted,
                )
            )
    return events


def rollbacks(conv: Conversation, sid: str, task_id: str, seqs: list[int]) -> list[Event]:
    """A ``turn.rolled_back`` for each run of messages exported as rolled back (``seqs``:
    the messages' event ids, in order)."""
    chat = [m for m in conv.messages if m.role != "system"]
    runs: list[tuple[int, int]] = []
    in_run = False
    for m, seq in zip(chat, seqs, strict=True):
        if m.rolled_back and in_run:
            runs[-1] = (runs[-1][0], seq)
        elif m.rolled_back:
            runs.append((seq, seq))
        in_run = m.rolled_back
    return [
        TurnRolledBack(
            session_id=sid,
            task_id=task_id,
            interface=Interface.BUS,
            turn_id=f"imported_rollback_{i}",
            from_seq=a,
            to_seq=b,
        )
        for i, (a, b) in enumerate(runs)
    ]


def closing_event(conv: Conversation, sid: str, task_id: str) -> SessionImported:
    """The last event: the session's state, turns and times (as exported, or ACTIVE now)."""
    return SessionImported(
        session_id=sid,
        task_id=task_id,
        interface=Interface.BUS,
        ts=conv.updated_at or datetime.now(UTC),
        state=conv.state or SessionState.ACTIVE,
        turns=conv.turns,
        failed_turns=conv.failed_turns,
        active_at=conv.active_at,
    )


async def import_conversation(
    client: SessionClient, conv: Conversation, *, agent: str | None, task_id: str | None
) -> SessionRecord:
    """Write ``conv`` as a new session; on any failure nothing of it remains.

    Each run has its own message ids (:func:`subjects.import_msg_id`): importing the same
    file again, after a purge or a failed try, stores everything again."""
    bus = client.bus
    settings = bus.settings
    name = conv.agent or agent
    if name is None:
        raise ValueError("no agent: give --agent or an 'agent' in the line")
    sid = conv.session_id or bus.partitions.new_session_id()
    bus.partition(sid)  # an id that names a partition this bus lacks: refused first
    tid = conv.task_id or task_id or new_id("task")
    expiry = (settings.session_idle_timeout, settings.session_max_lifetime)
    events = conversation_events(conv, sid, tid, name, expiry)
    payloads = [record_of([e], settings.record_format) for e in events]
    last = closing_event(conv, sid, tid)
    for p in [*payloads, last.model_dump_json().encode()]:  # before anything is written
        check_size(p, {"Nats-Expected-Last-Subject-Sequence": "0" * 12}, settings.max_message_bytes)
    run = new_id("imp")
    lease = await leases.claim(bus.leases_of(sid), sid, f"import_{run}")
    if lease is None:
        raise SessionExistsError(sid)
    try:
        try:
            first = await _append(client, sid, payloads[0], 0)
        except FenceRejectedError as e:
            raise SessionExistsError(sid) from e
        seqs = [first, *await _pipeline(client, sid, payloads[1:], lease, run)]
        ids = [event_id(seq) for seq in seqs]  # one event per record
        for event in [*rollbacks(conv, sid, tid, ids[1:]), last]:
            record = record_of([event], settings.record_format)
            seqs.append(await _append(client, sid, record, seqs[-1]))
            events.append(event)
        ck: Checkpoint | None = None
        for seq, event in zip(seqs, events, strict=True):
            ck = apply(ck, event_id(seq), event, settings.context_cap)
        assert ck is not None
        await commit.save_checkpoint(
            bus.nc, sid, bus.partition(sid), ck.model_dump_json().encode(), bus.timeout
        )
        await bus.records_of(sid).put(sid, ck.session.model_dump_json().encode())
        return ck.session
    except BaseException:
        await client.purge(sid)  # nothing half-imported remains
        raise
    finally:
        await leases.release(bus.nc, bus.lease_bucket(sid), lease, bus.timeout)


async def _append(client: SessionClient, sid: str, payload: bytes, after: int) -> int:
    settings = client.bus.settings
    return await commit.append(
        client.bus.nc,
        client.bus.stream_of(sid),
        sid,
        payload,
        partition=client.bus.partition(sid),
        expected_seq=after,
        max_bytes=settings.max_message_bytes,
        timeout=client.bus.timeout,
        deadline=settings.retry_window,
    )


async def _pipeline(
    client: SessionClient, sid: str, payloads: list[bytes], lease: leases.Lease, run: str
) -> list[int]:
    """Publish in order with up to PIPELINE in flight; return the sequences in order.

    One connection keeps the order of what it sends, so the events are stored in order;
    nobody else writes: the session is unknown to everyone but the lease holder. Each
    event has a message id of this run, so a publish retried through a leader change is
    stored once."""
    bus = client.bus
    subject = subjects.events(sid, bus.partition(sid))

    async def publish(index: int, payload: bytes) -> int:
        headers = {"Nats-Msg-Id": subjects.import_msg_id(sid, run, index)}
        ack = await with_retry(
            lambda: bus.js.publish(subject, payload, headers=headers),
            what=f"import into {sid}",
            deadline=bus.settings.retry_window,
        )
        return int(ack.seq)

    out: list[int] = []
    for start in range(0, len(payloads), PIPELINE):
        chunk = payloads[start : start + PIPELINE]
        seqs = list(await asyncio.gather(*(publish(start + i, p) for i, p in enumerate(chunk))))
        if seqs != sorted(seqs) or (out and seqs[0] < out[-1]):
            raise TransientError(f"import into {sid}: events were stored out of order")
        out.extend(seqs)
        if not await leases.renew(bus.leases_of(sid), lease):
            raise TransientError(f"import into {sid}: lost the session's lease")
    return out


async def export_session(client: SessionClient, session_id: str) -> dict[str, Any]:
    """The session as one import line (agent replies are ``assistant`` messages), with
    what a restore needs: importing it brings the session back as it was."""
    record = await client.get(session_id)
    history = await client.history(session_id)
    messages: list[dict[str, Any]] = []
    system = record.metadata.get("system")
    if isinstance(system, str):
        messages.append({"role": "system", "content": system})
    for h in history:
        item: dict[str, Any] = {
            "role": "user" if h.role == "user" else "assistant",
            "content": h.content,
            "ts": h.ts.isoformat(),
        }
        if h.interrupted:
            item["interrupted"] = True
        if h.rolled_back:
            item["rolled_back"] = True
        messages.append(item)
    metadata = {k: v for k, v in record.metadata.items() if k != "system"}
    return {
        "session_id": record.session_id,
        "task_id": record.task_id,
        "agent": record.agent,
        "metadata": metadata,
        "state": record.state.value,
        "owner": record.owner.model_dump() if record.owner else None,
        "created_by": record.created_by.value,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "active_at": record.active_at.isoformat() if record.active_at else None,
        "idle_timeout": record.idle_timeout,
        "max_lifetime": record.max_lifetime,
        "double_texting": record.double_texting,
        "turns": record.counters.turns,
        "failed_turns": record.counters.failed_turns,
        "messages": messages,
    }


def dumps_line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
