"""What a worker knows of its work messages' order (:mod:`praxis.workers.session.order`),
without a server: a trigger is taken as its session's next input only when no other input
of the session can lie between, and any doubt (a gap, a redelivery, a forgotten session)
reads the stream instead."""

from __future__ import annotations

from typing import Any

from nats.aio.msg import Msg

from praxis.workers.session.order import KEEP_PER_SESSION, Deliveries


def delivery(stream: int, consumer: int, delivered: int = 1) -> Msg:
    ack = f"$JS.ACK.PRAXIS.praxis-workers.{delivered}.{stream}.{consumer}.1700000000000000000.0"
    nc: Any = None
    return Msg(nc, subject="sess.x.in", reply=ack)


def test_a_trigger_after_an_unbroken_run_of_deliveries_is_the_next_input() -> None:
    d = Deliveries()
    first = delivery(stream=10, consumer=1)
    d.add("a", first)
    assert d.is_next("a", 9, first)  # the first delivered: nothing of "a" can be before it
    d.add("b", delivery(stream=11, consumer=2))
    later = delivery(stream=14, consumer=3)
    d.add("a", later)
    assert d.is_next("a", 10, later)  # 11 is "b"'s; nothing else of "a" came between
    assert not d.is_next("a", 9, later)  # 10 is "a"'s and after the cursor 9
    assert not d.is_next("a", 14, later)  # handled already


def test_inputs_stored_before_the_run_of_deliveries_may_have_gone_elsewhere() -> None:
    d = Deliveries()
    msg = delivery(stream=50, consumer=7)
    d.add("a", msg)
    assert not d.is_next("a", 40, msg)  # 41-49 were delivered before: maybe to another worker
    assert d.is_next("a", 49, msg)


def test_a_gap_in_the_consumer_sequence_starts_over() -> None:
    d = Deliveries()
    d.add("a", delivery(stream=10, consumer=1))
    mine = delivery(stream=12, consumer=2)
    d.add("a", mine)
    gap = delivery(stream=20, consumer=5)  # 3 and 4 went to another worker
    d.add("a", gap)
    assert not d.is_next("a", 12, gap)  # 13-19 may be among 3 and 4
    assert not d.is_next("a", 10, mine)  # delivered before the gap: no longer known
    after = delivery(stream=21, consumer=6)
    d.add("a", after)
    assert d.is_next("a", 20, after)


def test_a_redelivered_or_forwarded_trigger_is_read_from_the_stream() -> None:
    d = Deliveries()
    d.add("a", delivery(stream=10, consumer=1))
    again = delivery(stream=10, consumer=2, delivered=2)
    d.add("a", again)
    assert not d.is_next("a", 9, again)
    other = delivery(stream=15, consumer=40)  # delivered to another worker, handed here
    assert not d.is_next("a", 10, other)
    nc: Any = None
    assert not d.is_next("a", 10, Msg(nc, subject="sess.x.in", reply="_INBOX.x"))


def test_what_is_forgotten_is_not_known() -> None:
    d = Deliveries(sessions=2)
    consumer = 0
    for stream in range(1, KEEP_PER_SESSION + 3):
        consumer += 1
        d.add("a", delivery(stream, consumer))
    consumer += 1
    last = delivery(100, consumer)
    d.add("a", last)
    assert not d.is_next("a", 1, last)  # the oldest of "a" were dropped: 2 may be among them
    assert d.is_next("a", KEEP_PER_SESSION + 2, last)
    for sid, stream in (("b", 101), ("c", 102), ("d", 103)):  # "a" is dropped for room
        consumer += 1
        d.add(sid, delivery(stream, consumer))
    consumer += 1
    nxt = delivery(104, consumer)
    d.add("a", nxt)
    assert not d.is_next("a", 99, nxt)  # 100 was "a"'s, forgotten
    assert d.is_next("a", 103, nxt)
