"""How a session's events are stored: records of events, and the events' ids.

A **record** is what one decision stores: the events of one fenced publish on
``sess.<id>.out.evt`` (accepting a message and starting its turn; the reply and the end of
the turn; or a whole fast turn). What its events share (the session, task, command, input,
interface, actor, state and trace of the decision) is stored once:

    {"r": 2, "h": {<the fields the events share>}, "e": [{"type": ..., <its own fields>}, ...]}

An event is its record's ``h`` and its own object together (no field is in both). Fields at
their defaults are left out, so the default of a stored field must never change. Two
earlier formats still read: a JSON array of whole events (format 1, and what
``PRAXIS_RECORD_FORMAT=1`` writes during a rolling upgrade from a release that reads only
that), and one event per message (a JSON object: a record of one).

An **event id** is the record's stream sequence and the event's index in it, packed into
one integer: ``seq * ID_SCALE + index``. Ids are monotonic within a session (and across the
whole stream, so an id compares with a command's stream sequence scaled the same way), fit
in a JavaScript number, and stay the integer cursors every interface already takes: any id
resumes with exactly the events after it, even one in the middle of a record. Decimal
scaling keeps them readable: event 7,002 is the third event of record 7.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import msgspec
from pydantic import TypeAdapter

from praxis.schemas.events import (
    ContextCompacted,
    Event,
    TurnRolledBack,
    decode_event,
)

ID_SCALE = 1000
"""Event ids per record: a record holds at most this many events."""
MAX_RECORD_EVENTS = ID_SCALE

_RECORD: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def event_id(seq: int, index: int = 0) -> int:
    """The id of the ``index``-th event of the record stored at stream sequence ``seq``."""
    return seq * ID_SCALE + index


def record_seq(event_id: int) -> int:
    """The stream sequence of the record that holds the event ``event_id``."""
    return event_id // ID_SCALE


def first_id(seq: int) -> int:
    """The lowest id a record at ``seq`` can hold; also a command's stream sequence
    ``seq`` on the event ids' scale (everything stored after it has a higher id)."""
    return seq * ID_SCALE


SHARED: set[str] = {
    *("v", "session_id", "task_id", "command_id", "input_seq", "interface", "actor", "state"),
    "trace_id",
}
"""Fields a record stores once when all its events agree on them (a decision's events do)."""

_SHARED_OF = attrgetter(*sorted(SHARED))

RECORD_FORMAT = 2
"""The format this release writes (see the module's docstring); it reads this one and
every earlier one."""


class _Compact(msgspec.Struct):
    r: int
    h: msgspec.Raw
    e: list[msgspec.Raw]


_COMPACT = msgspec.json.Decoder(_Compact)


def encode_record(events: Sequence[bytes]) -> bytes:
    """A record of format 1, from its events' whole JSON (not serialised again)."""
    return b"[" + b",".join(events) + b"]"


def own_json(event: Event) -> bytes:
    """The JSON of an event's own fields in a record: its type, and its fields that are
    neither shared by records (:data:`SHARED`) nor at their defaults."""
    body = event.model_dump_json(exclude=SHARED, exclude_defaults=True).encode()
    return _joined(b'{"type":"%s"}' % event.type.encode(), body)


def compact_record(events: Sequence[tuple[Event, bytes]]) -> bytes:
    """A record of format 2, from its events and their :func:`own_json`. A shared field
    on which the events do not all agree is stored in each event instead."""
    first = events[0][0]
    shared = _SHARED_OF(first)
    apart: set[str] = set()
    for e, _ in events[1:]:
        if _SHARED_OF(e) != shared:
            apart |= {k for k in SHARED if getattr(e, k) != getattr(first, k)}
    head = first.model_dump_json(include=SHARED - apart, exclude_defaults=True).encode()
    owns = [own for _, own in events]
    if apart:
        owns = [
            _joined(e.model_dump_json(include=apart, exclude_defaults=True).encode(), own)
            for (e, _), own in zip(events, owns, strict=True)
        ]
    return b'{"r":2,"h":%s,"e":[%s]}' % (head, b",".join(owns))


def record_of(events: Sequence[Event], fmt: int = RECORD_FORMAT) -> bytes:
    """The record of ``events`` in format ``fmt`` (2, or 1 for a rolling upgrade)."""
    if fmt == 1:
        return encode_record([e.model_dump_json().encode() for e in events])
    return compact_record([(e, own_json(e)) for e in events])


def decode_record(seq: int, data: bytes | str) -> list[tuple[int, Event]]:
    """The events of the record at ``seq``, with their ids (any format)."""
    raw = data.encode() if isinstance(data, str) else data
    head = raw.lstrip()[:1]
    if head == b"[":
        return [(seq * ID_SCALE + i, e) for i, e in enumerate(_RECORD.validate_json(raw))]
    if raw.lstrip().startswith(b'{"r"'):
        return [(seq * ID_SCALE + i, e) for i, e in enumerate(_expand(raw))]
    return [(seq * ID_SCALE, _legacy(decode_event(raw)))]


def record_dicts(data: bytes | str) -> list[dict[str, Any]]:
    """The events of a record of any format as plain JSON objects, for a reader that needs a
    few fields of many events (the history) rather than the events."""
    raw = json.loads(data)
    if isinstance(raw, list):
        return raw
    if "r" in raw:
        head = raw["h"]
        return [{**head, **own} for own in raw["e"]]
    return [raw]


def _expand(data: bytes) -> list[Event]:
    """The events of a record of format 2: each its record's shared fields and its own."""
    try:
        rec = _COMPACT.decode(data)
    except msgspec.DecodeError as e:
        raise ValueError(f"not a record: {e}") from e
    if rec.r != RECORD_FORMAT:
        raise ValueError(
            f"a record of format {rec.r}: this release reads formats 1 to {RECORD_FORMAT}"
        )
    head = bytes(rec.h)
    whole = b",".join(_joined(head, bytes(own)) for own in rec.e)
    return _RECORD.validate_json(b"[" + whole + b"]")


def _joined(a: bytes, b: bytes) -> bytes:
    """Two JSON objects with no key in common, as one."""
    inner_a, inner_b = a.strip()[1:-1].strip(), b.strip()[1:-1].strip()
    if not inner_a:
        return b"{" + inner_b + b"}"
    if not inner_b:
        return b"{" + inner_a + b"}"
    return b"{" + inner_a + b"," + inner_b + b"}"


def _legacy(event: Event) -> Event:
    """An event stored one per message, whose ids of other events were stream sequences:
    on the ids' scale now."""
    if isinstance(event, ContextCompacted | TurnRolledBack):
        return event.model_copy(
            update={"from_seq": event.from_seq * ID_SCALE, "to_seq": event.to_seq * ID_SCALE}
        )
    return event
