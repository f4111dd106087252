"""How a session's events are stored: records of events, and the events' ids.

A **record** is what one decision stores: the events of one fenced publish on
``sess.<id>.out.evt`` (accepting a message and starting its turn; the reply and the end of
the turn; or a whole fast turn). It is a JSON array of events. A record of the earlier
format, one event per message (a JSON object), reads as a record of one.

An **event id** is the record's stream sequence and the event's index in it, packed into
one integer: ``seq * ID_SCALE + index``. Ids are monotonic within a session (and across the
whole stream, so an id compares with a command's stream sequence scaled the same way), fit
in a JavaScript number, and stay the integer cursors every interface already takes: any id
resumes with exactly the events after it, even one in the middle of a record. Decimal
scaling keeps them readable: event 7,002 is the third event of record 7.
"""

from __future__ import annotations

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


def encode_record(events: list[bytes]) -> bytes:
    """A record's stored JSON, from its events' JSON (not serialised again)."""
    return b"[" + b",".join(events) + b"]"


def decode_record(seq: int, data: bytes | str) -> list[tuple[int, Event]]:
    """The events of the record at ``seq``, with their ids."""
    head = data.lstrip()[:1]
    if head in (b"[", "["):
        return [(seq * ID_SCALE + i, e) for i, e in enumerate(_RECORD.validate_json(data))]
    return [(seq * ID_SCALE, _legacy(decode_event(data)))]


def _legacy(event: Event) -> Event:
    """An event stored one per message, whose ids of other events were stream sequences:
    on the ids' scale now."""
    if isinstance(event, ContextCompacted | TurnRolledBack):
        return event.model_copy(
            update={"from_seq": event.from_seq * ID_SCALE, "to_seq": event.to_seq * ID_SCALE}
        )
    return event
