"""Reading sessions: a session's record, the list of sessions, a conversation's history,
and the KV buckets behind them (read in batches by direct get, with no consumer)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from praxis.bus import direct, subjects
from praxis.bus.client.base import ClientState, Page
from praxis.bus.errors import InvalidCursorError, SessionNotFoundError
from praxis.bus.partitions import in_partition
from praxis.bus.state import load_head, load_state
from praxis.schemas import (
    ChatMessage,
    Checkpoint,
    Event,
    HistoryItem,
    SessionRecord,
    SessionState,
    check_token,
    event_id,
    record_dicts,
    record_seq,
)


async def checkpoint(c: ClientState, session_id: str) -> tuple[Checkpoint, int]:
    check_token(session_id, "session id")
    found = await load_state(c.bus, session_id)
    if found is None:
        raise SessionNotFoundError(session_id)
    return found


async def head(c: ClientState, session_id: str) -> tuple[Event, int]:
    """The session's latest event and its sequence (remembering the session's task)."""
    check_token(session_id, "session id")
    found = await load_head(c.bus, session_id)
    if found is None:
        raise SessionNotFoundError(session_id)
    c.caches.task_ids.put(session_id, found[0].task_id)
    return found


async def bucket_values(c: ClientState, bucket: str) -> list[bytes]:
    """The current values of a KV bucket (history 1), read in batches by direct get."""
    msgs = await direct.read_subject(
        c.bus.nc,
        subjects.kv_stream(bucket),
        subjects.kv_key(bucket, ">"),
        after=0,
        timeout=c.bus.timeout,
    )
    return [m.data for m in msgs if m.data and "KV-Operation" not in m.headers]


async def records(c: ClientState) -> list[SessionRecord]:
    """Every session record."""
    """Every session record, of every partition."""
    base, parts = c.bus.settings.sessions_bucket, c.bus.partitions
    found = await asyncio.gather(*(bucket_values(c, in_partition(base, k)) for k in parts.all()))
    return [SessionRecord.model_validate_json(v) for values in found for v in values]


async def get(c: ClientState, session_id: str) -> SessionRecord:
    ck, _ = await checkpoint(c, session_id)
    if not c.sees(ck.session):
        raise SessionNotFoundError(session_id)
    return ck.session


async def list_sessions(
    c: ClientState,
    *,
    state: SessionState | None,
    agent: str | None,
    task_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page:
    for value, kind in ((agent, "agent name"), (task_id, "task id")):
        if value is not None:
            check_token(value, kind)
    after = _decode_cursor(cursor) if cursor else None
    found = [
        r
        for r in await records(c)
        if c.sees(r)
        and (state is None or r.state == state)
        and (agent is None or r.agent == agent)
        and (task_id is None or r.task_id == task_id)
        and (created_after is None or r.created_at >= created_after)
        and (created_before is None or r.created_at < created_before)
    ]
    found.sort(key=_order_key)
    if after is not None:
        found = [r for r in found if _order_key(r) > after]
    page = found[: max(1, limit)]
    more = len(found) > len(page)
    return Page(page, _encode_cursor(_order_key(page[-1])) if more and page else None)


async def history(
    c: ClientState, session_id: str, before: int | None, limit: int | None
) -> tuple[list[HistoryItem], bool]:
    """The last ``limit`` messages before the cursor ``before``, and whether there are
    older ones."""
    ck, tail = await checkpoint(c, session_id)
    if not c.sees(ck.session):
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

    up_to = min(tail, before - 1) if before else tail

    p = c.bus.partition(session_id)
    return await direct.read_last(
        c.bus.nc,
        c.bus.partitions.stream(p),
        subjects.events(session_id, p),
        up_to=record_seq(up_to),
        keep=_messages_in(0, up_to, ranges),
        want=limit or None,
        timeout=c.bus.timeout,
    )


async def history_after(
    c: ClientState, session_id: str, after: int, limit: int
) -> tuple[list[HistoryItem], bool]:
    """The first ``limit`` messages after the cursor ``after`` (0: from the start), oldest
    first, and whether there are later ones."""
    ck, tail = await checkpoint(c, session_id)
    if not c.sees(ck.session):
        raise SessionNotFoundError(session_id)
    p = c.bus.partition(session_id)
    return await direct.read_first(
        c.bus.nc,
        c.bus.partitions.stream(p),
        subjects.events(session_id, p),
        after=max(0, record_seq(after) - 1) if after else 0,  # the record that holds it
        keep=_messages_in(after, tail, ck.rolled_back),
        want=limit,
        timeout=c.bus.timeout,
    )


def _messages_in(
    after: int, up_to: int, ranges: list[tuple[int, int]]
) -> Callable[[direct.StoredMsg], list[HistoryItem]]:
    """A record's messages with ``after < cursor <= up_to``, marked if rolled back."""

    def keep(m: direct.StoredMsg) -> list[HistoryItem]:
        items = [i for i in _history_items(m.seq, m.data) if after < i.seq <= up_to]
        for item in items:
            item.rolled_back = any(a <= item.seq <= b for a, b in ranges)
        return items

    return keep


def _history_items(seq: int, data: bytes) -> list[HistoryItem]:
    """The messages of the record at ``seq`` (parsed only as far as the history needs)."""
    events = record_dicts(data)
    items = (_history_item(event_id(seq, i), e) for i, e in enumerate(events))
    return [item for item in items if item is not None]


def _history_item(seq: int, event: dict[str, Any]) -> HistoryItem | None:
    kind = event.get("type")
    if kind == "user.message":
        return HistoryItem(seq=seq, role="user", content=event["content"], ts=event["ts"])
    if kind == "agent.message":
        return HistoryItem(
            seq=seq,
            role="agent",
            content=event["content"],
            ts=event["ts"],
            interrupted=event.get("interrupted", False),
        )
    return None


def _from_context(m: ChatMessage) -> HistoryItem:
    assert m.ts is not None
    return HistoryItem(
        seq=m.seq, role=m.role, content=m.content, ts=m.ts, interrupted=m.interrupted
    )


def list_cursor(record: SessionRecord) -> str:
    """The cursor of ``list_sessions()`` that continues after ``record`` (for per-item
    cursors)."""
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
