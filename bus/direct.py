"""Direct get: read stored messages without a consumer (nats-py has no batch helper)."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError

from praxis.bus.errors import TransientError

MAX_BATCH = 1000
T = TypeVar("T")

READS_IN_FLIGHT = 128
"""Direct gets a connection has in flight at once; more wait their turn before they are
sent. A surge (thousands of followers opening at once on an edge) would otherwise send
them all, and their answers would wait in the process's queue behind each other until
their timeouts passed; waiting for a turn does not count against a read's timeout."""
_GATES: weakref.WeakKeyDictionary[Client, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _gate(nc: Client) -> asyncio.Semaphore:
    found = _GATES.get(nc)
    if found is None:
        found = _GATES[nc] = asyncio.Semaphore(READS_IN_FLIGHT)
    return found


HEDGE = 0.5
"""Seconds after which a read not answered yet is asked again (a hedge), the first answer
taken: any replica of a stream answers a direct get, and one that was lost with its node
(killed, or cut off) would otherwise hold the read for its whole timeout."""


async def _request(nc: Client, subject: str, payload: bytes, timeout: float) -> Msg:
    """A direct get (a read: hedged, see :data:`HEDGE`; and asked again once if no answer
    came in time, as when the process was too busy to take it, in the surge above)."""
    async with _gate(nc):
        try:
            return await _hedged(nc, subject, payload, timeout)
        except NatsTimeoutError:
            return await nc.request(subject, payload, timeout=timeout)


async def _hedged(nc: Client, subject: str, payload: bytes, timeout: float) -> Msg:
    first = asyncio.ensure_future(nc.request(subject, payload, timeout=timeout))
    done, _ = await asyncio.wait({first}, timeout=min(HEDGE, timeout))
    if done:
        return first.result()
    second = asyncio.ensure_future(nc.request(subject, payload, timeout=timeout))
    asks = {first, second}
    try:
        while True:
            done, asks = await asyncio.wait(asks, return_when=asyncio.FIRST_COMPLETED)
            answered = [ask for ask in done if ask.exception() is None]
            if answered:
                return answered[0].result()
            if not asks:
                return done.pop().result()  # both failed: the error
    finally:
        for ask in asks:
            ask.cancel()


@dataclass(frozen=True, slots=True)
class StoredMsg:
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str]


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


def _lift(msg: Msg) -> StoredMsg:
    headers = msg.headers or {}
    return StoredMsg(
        seq=int(headers["Nats-Sequence"]),
        subject=headers["Nats-Subject"],
        data=msg.data,
        headers=headers,
    )


async def last_by_subject(
    nc: Client, stream: str, subject: str, timeout: float
) -> StoredMsg | None:
    """The last message stored on ``subject``, or ``None``."""
    resp = await _request(nc, f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout)
    return _one(resp)


async def next_by_subject(
    nc: Client, stream: str, subject: str, from_seq: int, timeout: float
) -> StoredMsg | None:
    """The first message on ``subject`` with a sequence >= ``from_seq``, or ``None``."""
    req = json.dumps({"seq": max(from_seq, 1), "next_by_subj": subject}).encode()
    resp = await _request(nc, f"$JS.API.DIRECT.GET.{stream}", req, timeout)
    return _one(resp)


async def by_seq(nc: Client, stream: str, seq: int, timeout: float) -> StoredMsg | None:
    """The message stored at ``seq``, or ``None`` (never stored, or removed since)."""
    req = json.dumps({"seq": seq}).encode()
    resp = await _request(nc, f"$JS.API.DIRECT.GET.{stream}", req, timeout)
    return _one(resp)


def _one(resp: Msg) -> StoredMsg | None:
    status = _status(resp)
    if status == "404":
        return None
    if status is not None:
        raise TransientError(f"direct get failed: {status} {resp.headers}")
    return _lift(resp)


async def batch(
    nc: Client,
    stream: str,
    request: dict[str, Any],
    timeout: float,
) -> tuple[list[StoredMsg], int]:
    """One batched direct get; returns the messages and how many more match."""
    async with _gate(nc):
        return await _batch(nc, stream, request, timeout)


async def _batch(
    nc: Client, stream: str, request: dict[str, Any], timeout: float
) -> tuple[list[StoredMsg], int]:
    subject, data = f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode()
    subs: list[Subscription] = []

    async def ask() -> asyncio.Queue[Msg]:
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def _put(msg: Msg) -> None:
            queue.put_nowait(msg)

        inbox = nc.new_inbox()
        subs.append(await nc.subscribe(inbox, cb=_put))
        await nc.publish(subject, data, reply=inbox)
        return queue

    try:
        queue = await ask()
        try:
            msg = await asyncio.wait_for(queue.get(), min(HEDGE, timeout))
        except TimeoutError:  # hedged (see HEDGE): the answers of whichever comes first
            msg, queue = await _first(queue, await ask(), timeout)
        out: list[StoredMsg] = []
        while True:
            status = _status(msg)
            if status == "204":
                return out, int((msg.headers or {}).get("Nats-Num-Pending", "0"))
            if status == "404":
                return out, 0
            if status is not None:
                raise TransientError(f"batched direct get failed: {status} {msg.headers}")
            out.append(_lift(msg))
            msg = await asyncio.wait_for(queue.get(), timeout)
    finally:
        for sub in subs:
            await sub.unsubscribe()


async def _first(
    one: asyncio.Queue[Msg], other: asyncio.Queue[Msg], timeout: float
) -> tuple[Msg, asyncio.Queue[Msg]]:
    """The first message either queue gets (within ``timeout``), and its queue."""
    gets = {asyncio.ensure_future(q.get()): q for q in (one, other)}
    done, pending = await asyncio.wait(gets, timeout=timeout, return_when="FIRST_COMPLETED")
    for get in pending:
        get.cancel()
    if not done:
        raise TimeoutError
    got = done.pop()
    return got.result(), gets[got]


async def read_subject(
    nc: Client,
    stream: str,
    subject: str,
    *,
    after: int,
    up_to: int | None = None,
    timeout: float,
    batch_size: int = MAX_BATCH,
) -> list[StoredMsg]:
    """All messages on ``subject`` (a wildcard is allowed) with ``after < seq <= up_to``.

    A batch may run past ``up_to`` (the server does not stop it there): a small
    ``batch_size`` bounds what is read for nothing when the range holds few messages."""
    out: list[StoredMsg] = []
    start = after + 1
    while True:
        req: dict[str, Any] = {"seq": start, "next_by_subj": subject, "batch": batch_size}
        if up_to is not None and start > up_to:
            return out
        got, pending = await batch(nc, stream, req, timeout)
        if up_to is not None and got and got[-1].seq > up_to:
            # The server applies up_to_seq to multi_last only, not to a batch by subject.
            out.extend(m for m in got if m.seq <= up_to)
            return out
        out.extend(got)
        if not got or pending == 0:
            return out
        start = got[-1].seq + 1


async def read_first(
    nc: Client,
    stream: str,
    subject: str,
    *,
    after: int,
    keep: Callable[[StoredMsg], list[T]],
    want: int,
    timeout: float,
) -> tuple[list[T], bool]:
    """The first ``want`` items kept from the messages on ``subject`` after ``after``,
    oldest first, and whether more exist. Forward reads by subject skip other subjects on
    the server: the cost follows ``want``, not the subject's length."""
    items: list[T] = []
    start = after + 1
    while True:
        request = {"seq": start, "next_by_subj": subject, "batch": min(MAX_BATCH, want + 16)}
        got, pending = await batch(nc, stream, request, timeout)
        for m in got:
            for item in keep(m):
                if len(items) == want:
                    return items, True
                items.append(item)
        if not got or pending == 0:
            return items, False
        start = got[-1].seq + 1


async def read_last(
    nc: Client,
    stream: str,
    subject: str,
    *,
    up_to: int,
    keep: Callable[[StoredMsg], list[T]],
    want: int | None,
    timeout: float,
) -> tuple[list[T], bool]:
    """The last ``want`` items kept from the messages on ``subject`` up to ``up_to``
    (``keep`` gives each message's items, oldest first), oldest first, and whether older
    ones exist; ``want=None``: all of them.

    JetStream reads forward only, and a session's messages are spread over a stream shared
    with every other session: read windows backwards from ``up_to``, each four times wider
    than the last, until enough is found. The cost follows ``want``, not the subject's
    length (a 100,000-message history pages as fast as a short one)."""
    items: list[T] = []  # newest first while collecting
    hi = up_to
    # A session's history has about two events per message (a turn is four events).
    width = hi if want is None else max(16, want * 3)
    while hi > 0:
        lo = max(0, hi - width)
        size = MAX_BATCH if want is None else min(MAX_BATCH, width + 16)
        msgs = await read_subject(
            nc, stream, subject, after=lo, up_to=hi, timeout=timeout, batch_size=size
        )
        for m in reversed(msgs):  # only as many as needed are decoded
            for item in reversed(keep(m)):
                if want is not None and len(items) == want:
                    items.reverse()
                    return items, True
                items.append(item)
        hi, width = lo, width * 4
    items.reverse()
    return items, False
