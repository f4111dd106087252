"""Import and export of whole conversations as JSON lines (OpenAI chat-format messages).

One line is one conversation::

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
     "session_id": "...", "task_id": "...", "agent": "...", "metadata": {...}}

Everything but ``messages`` is optional. An imported conversation becomes an ACTIVE session
whose history is those messages, resumable like any other. The importer writes the events
itself, as the session's owner (it holds the lease of a session nobody else knows yet), in
pipelined publishes: a 100,000-message conversation takes seconds, not a turn per message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bus import commit, leases, subjects
from bus.client import SessionClient
from bus.connection import with_retry
from bus.errors import BusError, FenceRejectedError, SessionExistsError, check_size
from schemas import (
    AgentMessage,
    AgentName,
    Event,
    Interface,
    SessionCreated,
    SessionId,
    SessionRecord,
    SessionState,
    StateChanged,
    TaskId,
    UserMessageAccepted,
    apply,
    new_id,
)

PIPELINE = 512
"""Publishes in flight at once while importing."""


class ChatLine(BaseModel):
    """One message in OpenAI chat format (other keys, e.g. ``name``, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]

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
        return "".join(str(p.get("text", "")) for p in self.content)


class Conversation(BaseModel):
    """One line of an import file."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatLine] = Field(min_length=1)
    session_id: SessionId | None = None
    task_id: TaskId | None = None
    agent: AgentName | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


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
) -> Iterator[Event]:
    """The events that make ``conv`` a session: created, active, then its messages."""
    system = [m.text for m in conv.messages if m.role == "system"]
    metadata = dict(conv.metadata)
    if system and "system" not in metadata:
        metadata["system"] = "\n\n".join(system)
    base: dict[str, Any] = {"session_id": sid, "task_id": task_id, "interface": Interface.BUS}
    yield SessionCreated(
        **base,
        agent=agent,
        metadata=metadata,
        idle_timeout=expiry[0],
        max_lifetime=expiry[1],
    )
    active = base | {"state": SessionState.ACTIVE}
    yield StateChanged(
        **active, from_state=SessionState.CREATED, to_state=SessionState.ACTIVE, reason="imported"
    )
    for i, m in enumerate(conv.messages):
        if m.role == "user":
            yield UserMessageAccepted(**active, content=m.text)
        elif m.role == "assistant":
            yield AgentMessage(**active, turn_id=f"imported_{i}", content=m.text)


async def import_conversation(
    client: SessionClient, conv: Conversation, *, agent: str | None, task_id: str | None
) -> SessionRecord:
    """Write ``conv`` as a new session; on any failure nothing of it remains."""
    bus = client.bus
    settings = bus.settings
    name = conv.agent or agent
    if name is None:
        raise ValueError("no agent: give --agent or an 'agent' in the line")
    sid = conv.session_id or new_id("ses")
    tid = conv.task_id or task_id or new_id("task")
    expiry = (settings.session_idle_timeout, settings.session_max_lifetime)
    events = list(conversation_events(conv, sid, tid, name, expiry))
    payloads = [e.model_dump_json().encode() for e in events]
    for p in payloads:  # before anything is written
        check_size(p, {"Nats-Expected-Last-Subject-Sequence": "0" * 12}, settings.max_message_bytes)
    lease = await leases.claim(bus.leases, sid, f"import_{new_id('imp')}")
    if lease is None:
        raise SessionExistsError(sid)
    try:
        try:
            first = await commit.append(
                bus.nc,
                bus.stream,
                sid,
                payloads[0],
                expected_seq=0,
                max_bytes=settings.max_message_bytes,
                timeout=bus.timeout,
                deadline=settings.retry_window,
            )
        except FenceRejectedError as e:
            raise SessionExistsError(sid) from e
        seqs = [first, *await _pipeline(client, sid, payloads[1:], lease)]
        ck = None
        for seq, event in zip(seqs, events, strict=True):
            ck = apply(ck, seq, event, settings.context_cap)
        assert ck is not None
        await commit.save_checkpoint(bus.nc, sid, ck.model_dump_json().encode(), bus.timeout)
        await bus.sessions.put(sid, ck.session.model_dump_json().encode())
        return ck.session
    except BaseException:
        await client.purge(sid)  # nothing half-imported remains
        raise
    finally:
        await leases.release(bus.nc, settings.leases_bucket, lease, bus.timeout)


async def _pipeline(
    client: SessionClient, sid: str, payloads: list[bytes], lease: leases.Lease
) -> list[int]:
    """Publish in order with up to PIPELINE in flight; return the sequences in order.

    One connection keeps the order of what it sends, so the events are stored in order;
    nobody else writes: the session is unknown to everyone but the lease holder. Each
    event has a message id, so a publish retried through a leader change is stored once."""
    bus = client.bus
    subject = subjects.events(sid)

    async def publish(index: int, payload: bytes) -> int:
        headers = {"Nats-Msg-Id": f"{sid}.import.{index}"}
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
            raise BusError(f"import into {sid}: events were stored out of order")
        out.extend(seqs)
        if not await leases.renew(bus.leases, lease):
            raise BusError(f"import into {sid}: lost the session's lease")
    return out


async def export_session(client: SessionClient, session_id: str) -> dict[str, Any]:
    """The session as one import line (agent replies are ``assistant`` messages)."""
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
        }
        if h.interrupted:
            item["interrupted"] = True
        messages.append(item)
    metadata = {k: v for k, v in record.metadata.items() if k != "system"}
    return {
        "session_id": record.session_id,
        "task_id": record.task_id,
        "agent": record.agent,
        "metadata": metadata,
        "messages": messages,
    }


def dumps_line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
