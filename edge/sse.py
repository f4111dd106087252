"""Server-Sent Events from a session's deliveries.

Each durable event is one SSE message: ``id:`` its stream sequence (what a client sends
back as ``Last-Event-ID``), ``event:`` its type, ``data:`` its :class:`EventEnvelope`.
Token deltas have no ``id:``, so a reconnecting client resumes from the last durable event.
A streamed command's stream starts with ``command.accepted`` (no ``id:`` either): it is
stored, and this is the cursor to follow its outcome from if the stream breaks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

from litestar.response import ServerSentEventMessage, Stream
from litestar.response.base import ASGIResponse

from praxis.bus import BusError, Receipt, metrics
from praxis.edge.problems import problem_for
from praxis.schemas import Delivery, TokenDelta
from praxis.schemas.api import CommandAccepted, EventEnvelope, delta_envelope, envelope_json

KEEPALIVE_MESSAGE = ServerSentEventMessage(data=None, comment="keep-alive")
"""For streams of :class:`ServerSentEventMessage` (see :func:`encoded`)."""
KEEPALIVE = KEEPALIVE_MESSAGE.encode()
OPENED = ServerSentEventMessage(data=None, comment="stream open").encode()


def message(item: Delivery) -> bytes:
    """One delivery as an SSE message (what Litestar's ``ServerSentEventMessage`` writes,
    written directly: the relay's hot path; the JSON holds no line break)."""
    ev = item.event
    if type(ev) is TokenDelta:
        return b"event: token.delta\r\ndata: %s\r\n\r\n" % delta_envelope(ev)
    ident = b"" if item.cursor is None else b"id: %d\r\n" % item.cursor
    return b"%sevent: %s\r\ndata: %s\r\n\r\n" % (
        ident,
        ev.type.encode(),
        envelope_json(item).encode(),
    )


def accepted(receipt: Receipt) -> bytes:
    """The first message of a streamed command: it is stored (and will be answered)."""
    data = CommandAccepted(
        session_id=receipt.session_id, command_id=receipt.command_id, cursor=receipt.cursor
    )
    envelope = EventEnvelope(
        type=data.type, cursor=None, timestamp=datetime.now(UTC), data=data.model_dump()
    )
    return ServerSentEventMessage(event=data.type, data=envelope.model_dump_json()).encode()


def error(exc: BusError) -> bytes:
    """The last message of a stream that could not go on (an ``error`` event)."""
    return ServerSentEventMessage(event="error", data=problem_for(exc).model_dump_json()).encode()


async def relay(
    items: AsyncGenerator[Receipt | Delivery | None, None],
    first: bytes = OPENED,
    on_close: Callable[[], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """``first``, then every item; ``None`` becomes a keep-alive comment."""
    subscribers = metrics.SUBSCRIBERS.labels("sse")
    subscribers.inc()
    try:
        yield first
        async for item in items:
            if item is None:
                yield KEEPALIVE
            else:
                yield accepted(item) if isinstance(item, Receipt) else message(item)
    except BusError as e:
        yield error(e)
    finally:
        subscribers.dec()
        await items.aclose()
        if on_close is not None:
            on_close()


async def encoded(
    messages: AsyncGenerator[ServerSentEventMessage | bytes, None],
) -> AsyncGenerator[bytes, None]:
    """A stream of Litestar's SSE messages, written (or already written: bytes)."""
    try:
        async for msg in messages:
            yield msg if isinstance(msg, bytes) else msg.encode()
    finally:
        await messages.aclose()


class EventStream(Stream):
    """A ``text/event-stream`` response of written SSE messages, with the headers Litestar's
    ``ServerSentEvent`` sets, that keeps its own media type and status on any route.

    Litestar 2.25 gives a handler's media type precedence over a streamed response's own
    (its docstring says the opposite); ``POST /messages`` answers JSON or a stream.
    """

    def __init__(self, chunks: AsyncGenerator[bytes, None]) -> None:
        super().__init__(chunks, media_type="text/event-stream", status_code=200)
        self.headers.setdefault("Cache-Control", "no-cache")
        self.headers["Connection"] = "keep-alive"
        self.headers["X-Accel-Buffering"] = "no"

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def response(chunks: AsyncGenerator[bytes, None]) -> EventStream:
    return EventStream(chunks)
