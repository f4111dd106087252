"""SessionClient against a real nats-server with a real worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from praxis.bus import (
    Bus,
    CommandIdReusedError,
    IllegalTransitionError,
    MessageTooLargeError,
    Receipt,
    SessionClient,
    SessionExistsError,
    SessionNotFoundError,
    Settings,
    StreamEndedError,
    UnknownAgentError,
    connect,
    direct,
    follow,
    subjects,
)
from praxis.bus.embedded import NatsServer
from praxis.bus.follow import Follower
from praxis.bus.state import load_head, read_events
from praxis.schemas import (
    AgentMessage,
    CommandRejected,
    CommandSkipped,
    Delivery,
    Interface,
    SessionState,
    TokenDelta,
    TurnCompleted,
    TurnFailed,
    UserMessage,
)
from praxis.workers import Worker, load_agents
from tests.conftest import (
    InProcessWorker,
    eventually,
    make_settings,
    settled_session,
    slow_turn_streaming,
    stored_events,
    streaming,
)

pytestmark = pytest.mark.partitions(1, 3)


async def reply(client: SessionClient, session_id: str, text: str) -> tuple[str, list[Delivery]]:
    items = [d async for d in client.turn(session_id, text)]
    deltas = "".join(d.event.text for d in items if isinstance(d.event, TokenDelta))
    return deltas, items


async def test_create_message_events_history(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("hello-world", task_id="task-42", metadata={"k": 1})
    assert record.state is SessionState.CREATED
    assert record.task_id == "task-42"
    greeting = await client.wait(receipt)
    assert [e.type for e in greeting] == [
        "session.created",
        "session.state_changed",
        "turn.started",
        "agent.message",
        "turn.completed",
    ]

    streamed, items = await reply(client, record.session_id, "Tell me about Python")
    final = [d.event for d in items if isinstance(d.event, AgentMessage)]
    assert len(final) == 1 and streamed == final[0].content
    assert "first message" in streamed
    second, _ = await reply(client, record.session_id, "And errors?")
    assert "2nd message" in second and '"Tell me about Python"' in second

    history = await client.history(record.session_id)
    assert [(h.role, h.content.split(". ")[0]) for h in history] == [
        ("agent", "Hello! How can I help you today?"),
        ("user", "Tell me about Python"),
        ("agent", 'You said: "Tell me about Python"'),
        ("user", "And errors?"),
        ("agent", 'You said: "And errors?"'),
    ]
    assert [h.seq for h in history] == sorted(h.seq for h in history)
    got = await client.get(record.session_id)
    assert got.state is SessionState.ACTIVE
    assert got.counters.user_messages == 2 and got.counters.agent_messages == 3
    assert got.task_id == "task-42" and got.metadata == {"k": 1}

    page = await client.list_sessions(task_id="task-42")
    assert [r.session_id for r in page.items] == [record.session_id]


async def test_events_resume_from_any_cursor(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    for text in ("one", "two", "three"):
        await reply(client, record.session_id, text)

    everything: list[Delivery] = []
    async with asyncio.timeout(10):
        async for item in await client.events(record.session_id, after=0):
            everything.append(item)
            if (
                isinstance(item.event, TurnCompleted)
                and item.event.input_seq
                == max(d.event.input_seq or 0 for d in everything if d.cursor)
                and sum(isinstance(d.event, TurnCompleted) for d in everything) == 3
            ):
                break
    cursors = [d.cursor for d in everything if d.cursor is not None]
    assert cursors == sorted(set(cursors)), "each durable event once, in order"
    assert everything[0].event.type == "session.created"

    middle = cursors[len(cursors) // 2]
    rest: list[int] = []
    async with asyncio.timeout(10):
        async for item in await client.events(record.session_id, after=middle):
            assert item.cursor is not None
            rest.append(item.cursor)
            if item.cursor == cursors[-1]:
                break
    assert rest == [c for c in cursors if c > middle]


async def test_live_follower_sees_next_turn_and_deltas(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    seen: list[Delivery] = []

    async def follow() -> None:
        async for item in await client.events(record.session_id):
            seen.append(item)
            if isinstance(item.event, TurnCompleted):
                return

    follower = asyncio.create_task(follow())
    await eventually(lambda: _true_after_subscribed(client, record.session_id), what="follower")
    sent = await client.send(record.session_id, "alpha beta gamma")
    async with asyncio.timeout(10):
        await follower
    types = [d.event.type for d in seen]
    assert types[0] == "user.message" and types[-1] == "turn.completed"
    text = "".join(d.event.text for d in seen if isinstance(d.event, TokenDelta))
    assert text == "alpha beta gamma"
    assert all(d.event.command_id == sent.command_id for d in seen if d.cursor)


async def test_followers_ended_by_their_process_say_where_to_follow_again(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """What an edge does as it stops (``follow.end_all``): every follower of the process
    ends at once with StreamEndedError, carrying the last cursor it delivered."""
    sid = await settled_session(client, "echo")
    events = await client.events(sid, after=0)
    delivered = [await anext(events)]
    assert follow.end_all("the edge is stopping") >= 1

    async def the_rest() -> None:  # what was read back before the end comes first
        async for item in events:
            delivered.append(item)

    with pytest.raises(StreamEndedError) as ended:
        await asyncio.wait_for(the_rest(), 5)
    last = [d.cursor for d in delivered if d.cursor is not None][-1]
    assert ended.value.cursor == last and "the edge is stopping" in str(ended.value)
    assert ended.value.http_status == 503


async def _true_after_subscribed(client: SessionClient, session_id: str) -> bool:
    # events() subscribes before reading; a flush makes sure the server has the SUB.
    await client.bus.nc.flush()
    return True


async def test_joining_mid_turn_gets_text_so_far_then_the_rest(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, sent = await slow_turn_streaming(client, pieces=30, delay=0.03, at_least=5)
    collected: list[Delivery] = []
    async with asyncio.timeout(15):
        async for item in await client.events(record.session_id):
            collected.append(item)
            if isinstance(item.event, TurnCompleted):
                break
    text = "".join(d.event.text for d in collected if isinstance(d.event, TokenDelta))
    final = [d.event for d in collected if isinstance(d.event, AgentMessage)]
    assert final and final[0].command_id == sent.command_id
    assert text == final[0].content, "text so far, then the rest: no gap, nothing twice"
    first_delta = next(d.event for d in collected if isinstance(d.event, TokenDelta))
    assert first_delta.index > 1, "the join happened mid-turn"


async def test_a_snapshot_request_is_answered_only_to_an_inbox(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """The owner answers 'the text so far' with its own rights: a request whose reply
    subject is another session's events (stored by the stream, past its fence) or the
    JetStream API gets no answer."""
    victim, made = await client.create("echo")
    await client.wait(made)
    kept = await stored_events(client, victim.session_id)
    record, _ = await slow_turn_streaming(client, pieces=30, delay=0.03, at_least=2)
    stream = client.bus.stream_of(victim.session_id)
    for target in (client.bus.events(victim.session_id), f"$JS.API.STREAM.PURGE.{stream}"):
        await client.bus.nc.publish(subjects.snapshot(record.session_id), b"", reply=target)
    # The owner's subscription handles requests in order: this answer comes after them.
    assert await streaming(client, record.session_id)
    assert await stored_events(client, victim.session_id) == kept
    assert subjects.is_inbox("_INBOX.abc.def") and subjects.is_inbox("_INBOX_edge.x")
    assert not subjects.is_inbox(f"$JS.API.STREAM.PURGE.{stream}")
    assert not subjects.is_inbox(client.bus.events(record.session_id))
    assert not subjects.is_inbox("_INBOX.>") and not subjects.is_inbox(None)


async def test_same_command_id_twice_is_one_message(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    first = await client.send(record.session_id, "only once", command_id="cmd-dup-1")
    await client.send(record.session_id, "only once", command_id="cmd-dup-1")
    await client.wait(first)
    # Past the stream's duplicate window (a different Nats-Msg-Id), the worker still knows it.
    cmd = UserMessage(
        session_id=record.session_id,
        task_id=record.task_id,
        content="only once",
        command_id="cmd-dup-1",
    )
    await client.bus.js.publish(
        client.bus.inputs(record.session_id),
        cmd.model_dump_json().encode(),
        headers={"Nats-Msg-Id": "other"},
    )
    later = await reply(client, record.session_id, "after")
    assert later[0] == "after"
    history = await client.history(record.session_id)
    assert [h.content for h in history if h.role == "user"] == ["only once", "after"]
    events = [d.event async for d in _durable(client, record.session_id)]
    assert any(isinstance(e, CommandSkipped) and e.command_id == "cmd-dup-1" for e in events)


async def test_a_command_id_is_an_idempotency_key_within_one_session(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """The same command id on another session is another command: both are stored and
    answered (JetStream's duplicate window is stream-wide, so the bare id as Nats-Msg-Id
    dropped the second one while its sender was told it was stored)."""
    a, made_a = await client.create("echo")
    c, made_c = await client.create("echo")
    await client.wait(made_a)
    await client.wait(made_c)
    to_a = await client.send(a.session_id, "to A", command_id="order-1")
    to_c = await client.send(c.session_id, "to C", command_id="order-1")
    for sent in (to_a, to_c):
        events = await client.wait(sent)
        assert isinstance(events[-1], TurnCompleted)
    assert [h.content for h in await client.history(c.session_id)] == ["to C", "to C"]
    # Streamed (the edge's stream: true), the same: a third session, the same id again.
    d, made_d = await client.create("echo")
    await client.wait(made_d)
    items = [i async for i in client.turn(d.session_id, "to D", command_id="order-1")]
    assert isinstance(items[-1].event, TurnCompleted)
    # Within one session, a repeat of the same command is sent once; a different command
    # under an id already used is refused, not silently dropped.
    again = await client.send(c.session_id, "to C", command_id="order-1")
    assert isinstance((await client.wait(again))[-1], TurnCompleted)  # its first answer
    with pytest.raises(CommandIdReusedError, match="order-1"):
        await client.send(c.session_id, "something else", command_id="order-1")
    assert [h.content for h in await client.history(c.session_id)] == ["to C", "to C"]


async def _durable(client: SessionClient, session_id: str):  # type: ignore[no-untyped-def]
    """The session's durable events up to the latest one stored now, as followed."""
    found = await load_head(client.bus, session_id)
    assert found is not None
    tail = found[1]
    async for item in await client.events(session_id, after=0):
        if item.cursor is not None:
            yield item
            if item.cursor >= tail:
                return


async def test_lifecycle_and_illegal_transitions(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    sid = record.session_id
    with pytest.raises(IllegalTransitionError, match="ACTIVE"):
        await client.resume(sid)
    assert (await client.suspend(sid)).state is SessionState.SUSPENDED
    with pytest.raises(IllegalTransitionError, match="SUSPENDED and takes no messages"):
        await client.send(sid, "hello?")
    assert (await client.resume(sid)).state is SessionState.ACTIVE
    assert (await reply(client, sid, "back"))[0] == "back"
    assert (await client.complete(sid)).state is SessionState.COMPLETED
    with pytest.raises(IllegalTransitionError):
        await client.resume(sid)
    with pytest.raises(IllegalTransitionError):
        await client.send(sid, "anyone?")


async def test_worker_rejects_what_raced_past_the_client_check(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    await client.complete(record.session_id)
    cmd = UserMessage(session_id=record.session_id, task_id=record.task_id, content="late")
    await client.bus.js.publish(
        client.bus.inputs(record.session_id), cmd.model_dump_json().encode()
    )
    events = await client.wait(Receipt(record.session_id, cmd.command_id, 0))
    assert isinstance(events[-1], CommandRejected)
    assert "COMPLETED" in events[-1].reason


async def test_unknown_session_and_agent(client: SessionClient, worker: InProcessWorker) -> None:
    with pytest.raises(SessionNotFoundError, match="nope"):
        await client.get("nope")
    with pytest.raises(SessionNotFoundError):
        await client.send("nope", "hi")
    with pytest.raises(SessionNotFoundError):
        await client.history("nope")
    with pytest.raises(
        UnknownAgentError, match="known agents: boom, crash, echo, hang, hello-world, recall, slow"
    ):
        await client.create("nobody")


async def test_session_id_given_twice(client: SessionClient, worker: InProcessWorker) -> None:
    await client.create("echo", session_id="fixed-id-1")
    with pytest.raises(SessionExistsError):
        await client.create("echo", session_id="fixed-id-1")
    # The same create again (a retry whose first try landed) is the same session, once.
    first, _ = await client.create("echo", session_id="fixed-id-2", command_id="cmd-once")
    again, _ = await client.create("echo", session_id="fixed-id-2", command_id="cmd-once")
    assert again.session_id == first.session_id and again.created_at == first.created_at
    assert len(await _stored(client, client.bus.inputs("fixed-id-2"))) == 1


async def test_malformed_command_on_the_bus_is_rejected_and_session_goes_on(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    for junk in (b"{not json", b'{"kind": "user_message"}', json.dumps([1, 2]).encode()):
        await client.bus.js.publish(client.bus.inputs(record.session_id), junk)
    text, _ = await reply(client, record.session_id, "still here")
    assert text == "still here"
    rejected = [
        e async for e in _durable(client, record.session_id) if e.event.type == "command.rejected"
    ]
    assert len(rejected) == 3
    assert all("invalid command" in r.event.reason for r in rejected)  # type: ignore[union-attr]


async def test_oversized_message_is_refused_before_publishing(
    client: SessionClient, worker: InProcessWorker
) -> None:
    before = await _inputs(client)
    # Metadata is bounded (16 KiB) before any size limit of the bus comes into play.
    with pytest.raises(ValidationError, match="more than 16384"):
        await client.create("echo", metadata={"blob": "x" * 2_000_000})
    assert await _inputs(client) == before
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    with pytest.raises(ValueError, match="at most 64000 characters"):
        await client.send(record.session_id, "x" * 64_001)
    assert len(await _stored(client, client.bus.inputs(record.session_id))) == 1  # the create only


async def test_a_message_whose_event_would_be_too_large_is_rejected_not_retried(
    tmp_path: Path,
) -> None:
    """A command just under the size limit makes an event just over it (the event carries
    more fields): the worker rejects it at once rather than failing on it again and again.
    Its own server: the limit is a property of the stream."""
    server = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log").start()
    try:
        small = make_settings(server.url, tmp_path, max_message_bytes=2048)
        async with connect(small, server.url, "test-small") as bus:
            worker = Worker(bus, load_agents(small.agents))
            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(stop))
            client = SessionClient(bus, Interface.API)
            sid = await settled_session(client, "echo")
            record = await client.get(sid)
            probe = UserMessage(session_id=sid, task_id=record.task_id, content="x")
            # The command (as the client stores it: unset fields left out) and its
            # Nats-Msg-Id header (session and command id, about 96 bytes) fit; the event,
            # with its fence and append-id headers and the record around it, does not.
            text = "x" * (2048 - len(probe.model_dump_json(exclude_none=True)) - 100)
            events = await client.wait(await client.send(sid, text))
            assert isinstance(events[-1], CommandRejected), events
            assert "too large to store" in events[-1].reason
            after = await client.wait(await client.send(sid, "small one"))
            assert [e.content for e in after if isinstance(e, AgentMessage)] == ["small one"]
            # A command over the limit is refused by the client before it is published.
            stored = await _stored(client, client.bus.inputs(sid))
            with pytest.raises(MessageTooLargeError, match="exceeds the limit of 2048 bytes"):
                await client.send(sid, "x" * 3000)
            assert await _stored(client, client.bus.inputs(sid)) == stored
            stop.set()
            await running
    finally:
        server.stop()


async def _stored(client: SessionClient, subject: str) -> list[int]:
    """The sequences of what a session's subject holds (``sess.<id>.…``)."""
    stream = client.bus.stream_of(subjects.session_of(subject))
    msgs = await direct.read_subject(client.bus.nc, stream, subject, after=0, timeout=5)
    return [m.seq for m in msgs]


async def _inputs(client: SessionClient) -> list[int]:
    """How many commands each partition holds."""
    parts = client.bus.partitions
    found = []
    for k in parts.all():
        info = await client.bus.js.stream_info(
            parts.stream(k), subjects_filter=subjects.input_wildcard(k)
        )
        found.append(sum((info.state.subjects or {}).values()))
    return found


async def test_failing_agent_fails_the_turn_and_keeps_the_partial_reply(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("boom")
    await client.wait(receipt)
    _, items = await reply(client, record.session_id, "try")
    events = [d.event for d in items if d.cursor]
    assert isinstance(events[-1], TurnFailed) and "the model fell over" in events[-1].reason
    partial = [e for e in events if isinstance(e, AgentMessage)]
    assert partial and partial[0].interrupted and partial[0].content == "partial text "
    assert (await client.get(record.session_id)).state is SessionState.ACTIVE


async def test_cancel_stops_the_turn_in_flight(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, sent = await slow_turn_streaming(client, pieces=200, delay=0.05)
    await client.cancel(record.session_id)
    events = await client.wait(sent)
    assert isinstance(events[-1], TurnFailed) and events[-1].cancelled
    assert (await client.get(record.session_id)).state is SessionState.ACTIVE
    again = await client.send(record.session_id, "next")  # the session takes messages again
    await eventually(lambda: streaming(client, record.session_id), what="the next turn")
    await client.cancel(record.session_id)
    assert isinstance((await client.wait(again))[-1], TurnFailed)


async def test_worker_lists_itself(client: SessionClient, worker: InProcessWorker) -> None:
    found = await client.workers()
    assert worker.worker.worker_id in {w.worker_id for w in found}
    mine = next(w for w in found if w.worker_id == worker.worker.worker_id)
    assert {"echo", "hello-world", "slow"} <= {a.name for a in mine.agents}


async def test_provisioning_mismatch_is_reported_not_rewritten(
    bus: Bus, settings: Settings
) -> None:
    other = settings.model_copy(update={"duplicate_window": 30.0})
    assert other.nats_url
    with pytest.raises(Exception, match=r"duplicate_window: is 600\.0, needs 30\.0"):
        async with connect(other, other.nats_url, "mismatch"):
            pass
    info = await bus.js.stream_info(bus.settings.stream)
    assert info.config.duplicate_window == 600.0


async def test_turn_to_a_session_suspended_meanwhile_reports_the_rejection(
    client: SessionClient, worker: InProcessWorker, bus: Bus
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    await reply(client, record.session_id, "first")  # the client now knows the task id
    await SessionClient(bus).suspend(record.session_id)  # another client suspends it
    _, items = await reply(client, record.session_id, "too late")
    last = items[-1].event
    assert isinstance(last, CommandRejected) and last.final
    assert "SUSPENDED" in last.reason and last.state is SessionState.SUSPENDED
    history = await client.history(record.session_id)
    assert [h.content for h in history if h.role == "user"] == ["first"]


async def test_list_filters_and_pages(client: SessionClient) -> None:
    made = [
        (await client.create("echo", task_id="task-paging", metadata={"i": i}))[0].session_id
        for i in range(7)
    ]
    await client.create("hello-world", task_id="task-paging")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await client.list_sessions(
            task_id="task-paging", agent="echo", limit=3, cursor=cursor
        )
        seen += [r.session_id for r in page.items]
        assert len(page.items) <= 3
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(made)), "newest first, each once"
    created = await client.list_sessions(task_id="task-paging", state=SessionState.CREATED)
    assert len(created.items) == 8
    with pytest.raises(ValueError, match="invalid list cursor"):
        await client.list_sessions(cursor="not-a-cursor")


async def test_a_reader_that_does_not_read_is_resynchronised_not_buffered_without_bound(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("slow", metadata={"pieces": 60, "delay": 0.002})
    await client.wait(receipt)
    sid = record.session_id
    follower = Follower(client.bus, sid, max_pending=5)
    try:
        _, tail = await follower.open()
        await follower.start(None, tail)
        await client.wait(await client.send(sid, "go"))  # 60 deltas and the events, unread
        await client.bus.nc.flush()
        assert len(follower._queue) <= 5 and follower._overflowed
        got = []
        async with asyncio.timeout(10):
            async for item in follower.deliveries():
                got.append(item)
                if isinstance(item.event, TurnCompleted):
                    break
    finally:
        await follower.close()
    stored = await read_events(client.bus, sid, after=tail)
    assert [i.cursor for i in got if i.cursor is not None] == [i for i, _ in stored]
    reply = next(i.event for i in got if isinstance(i.event, AgentMessage))
    assert reply.content == "".join(f"w{i} " for i in range(60))


Append = Callable[[Any, int], Awaitable[int]]
WHOLE_TURN = [
    "user.message",
    "turn.started",
    "delta 'a '",
    "delta 'b'",
    "agent.message",
    "turn.completed",
]
"""What a follower delivers of a turn of two deltas, in order."""


async def _as_owner(
    client: SessionClient, settings: Settings
) -> tuple[str, dict[str, Any], Append, int]:
    """A new session whose events this test writes itself, as its owner would (no worker
    runs here): its id, the fields every event needs, a fenced append (an event, the
    id it follows), and the id of its ``session.created``."""
    from praxis.bus import commit
    from praxis.bus.state import pending_create
    from praxis.schemas import encode_record, first_id, record_seq

    record, _ = await client.create("echo")
    sid, bus = record.session_id, client.bus
    created = await pending_create(bus, sid)
    assert created is not None

    async def append(event: Any, after: int) -> int:  # a record of one event: its id
        seq = await commit.append(
            bus.nc,
            bus.stream_of(sid),
            sid,
            encode_record([event.model_dump_json().encode()]),
            partition=bus.partition(sid),
            expected_seq=record_seq(after),
            max_bytes=settings.max_message_bytes,
            timeout=5,
            deadline=10,
        )
        return first_id(seq)

    base = {"session_id": sid, "task_id": record.task_id, "command_id": "cmd_x"}
    return sid, base, append, await append(created, 0)


async def test_a_follower_that_missed_a_notice_keeps_the_deltas_queued_behind_the_next(
    client: SessionClient, settings: Settings
) -> None:
    """A follower that finds a gap reads the stream back up to the notice that showed it,
    no further: reading on to the end of a turn already stored would drop its deltas, still
    queued behind that notice. (Seen as subscribers missing a turn's text in fan-out.)"""
    from praxis.schemas import CommitNotice, TokenDelta, TurnStarted, UserMessageAccepted
    from praxis.schemas.records import StoredEvent

    sid, base, append, first = await _as_owner(client, settings)
    bus = client.bus
    follower = Follower(bus, sid)
    _, tail = await follower.open()
    await follower.start(None, tail, join_turn=False)
    turn = {"turn_id": "turn_1"}
    events = [
        UserMessageAccepted(**base, content="hi"),
        TurnStarted(**base, **turn, worker_id="w"),
        AgentMessage(**base, **turn, content="a b"),
        TurnCompleted(**base, **turn, duration_ms=1, final=True),
    ]
    seqs = [first]
    for event in events:  # the whole turn is stored before any notice is read
        seqs.append(await append(event, seqs[-1]))
    live = subjects.live(sid)

    def notice(i: int) -> bytes:  # events[i] was appended after seqs[i]
        stored = StoredEvent(seq=seqs[i + 1], event=events[i])
        return (
            CommitNotice(prev=seqs[i], seq=seqs[i + 1], events=[stored]).model_dump_json().encode()
        )

    # The notice of user.message is lost; turn.started's shows the gap.
    await bus.nc.publish(live, notice(1))
    for index, text in ((1, "a "), (2, "b")):
        delta = TokenDelta(session_id=sid, turn_id="turn_1", index=index, text=text)
        await bus.nc.publish(live, delta.model_dump_json().encode())
    await bus.nc.publish(live, notice(2))
    await bus.nc.publish(live, notice(3))
    got: list[str] = []
    try:
        async with asyncio.timeout(10):
            async for item in follower.deliveries():
                ev = item.event
                got.append(f"delta {ev.text!r}" if isinstance(ev, TokenDelta) else ev.type)
                if isinstance(ev, TurnCompleted):
                    break
    finally:
        await follower.close()
    assert got == WHOLE_TURN


async def test_a_poll_does_not_overtake_notices_on_their_way(
    client: SessionClient, settings: Settings
) -> None:
    """A quiet follower polls the stream for missed notices. A turn stored while its
    notices and deltas are still on their way must not be read from the stream at once:
    that would end the turn and drop the deltas (seen as GraphQL fan-out subscribers
    without a turn's text). Events still unannounced at the next poll were missed, and
    are read back then."""
    from praxis.schemas import CommitNotice, TokenDelta, TurnStarted, UserMessageAccepted
    from praxis.schemas.records import StoredEvent

    sid, base, append, first = await _as_owner(client, settings)
    bus = client.bus

    def turn_events(n: int) -> list[Any]:
        turn = {"turn_id": f"turn_{n}"}
        return [
            UserMessageAccepted(**base, content="hi"),
            TurnStarted(**base, **turn, worker_id="w"),
            AgentMessage(**base, **turn, content="a b"),
            TurnCompleted(**base, **turn, duration_ms=1, final=True),
        ]

    seqs = [first]
    follower = Follower(bus, sid)
    _, tail = await follower.open()
    await follower.start(None, tail, join_turn=False)
    live = subjects.live(sid)

    async def store_turn(n: int) -> list[bytes]:
        """Store a whole turn; return its live messages (notices and deltas), unsent."""
        out = []
        for event in turn_events(n):
            seqs.append(await append(event, seqs[-1]))
            stored = StoredEvent(seq=seqs[-1], event=event)
            out.append(CommitNotice(prev=seqs[-2], seq=seqs[-1], events=[stored]))
            if isinstance(event, TurnStarted):
                out += [
                    TokenDelta(session_id=sid, turn_id=f"turn_{n}", index=i, text=t)
                    for i, t in ((1, "a "), (2, "b"))
                ]
        return [m.model_dump_json().encode() for m in out]

    async def read_turn() -> list[str]:
        got: list[str] = []
        async with asyncio.timeout(10):
            async for item in follower.deliveries():
                ev = item.event
                got.append(f"delta {ev.text!r}" if isinstance(ev, TokenDelta) else ev.type)
                if isinstance(ev, TurnCompleted):
                    return got
        raise AssertionError("the follower ended")

    try:
        # A poll while the first turn's messages are on their way: nothing is read yet.
        on_their_way = await store_turn(1)
        assert await follower._poll(), "the poll sees events not announced yet"
        assert follower.cursor == seqs[0] and not follower._pending
        for message in on_their_way:
            await bus.nc.publish(live, message)
        assert await read_turn() == WHOLE_TURN
        # The second turn's messages are lost: the poll after next reads it back.
        await store_turn(2)
        assert await follower._poll()
        assert follower.cursor == seqs[4] and not follower._pending
        assert not await follower._poll(), "read back: nothing unannounced now"
        assert follower.cursor == seqs[-1]
        assert await read_turn() == ["user.message", "turn.started", "agent.message",
                                     "turn.completed"]  # fmt: skip
    finally:
        await follower.close()


async def test_a_follower_outlives_a_poll_the_server_had_no_time_for(
    client: SessionClient, worker: InProcessWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 GraphQL subscribers on one edge once polled in step and the polls timed out:
    every subscription ended with an internal error. A failed poll is now tried again later
    (quiet followers also poll less and less often, and not in step)."""
    from nats.errors import TimeoutError as NatsTimeoutError

    import praxis.bus.follow

    record, receipt = await client.create("echo")
    await client.wait(receipt)
    sid = record.session_id
    follower = Follower(client.bus, sid)
    try:
        _, tail = await follower.open()
        await follower.start(None, tail)

        async def too_busy(*_: Any, **__: Any) -> None:
            raise NatsTimeoutError

        monkeypatch.setattr(praxis.bus.follow, "load_head", too_busy)
        assert (await follower._poll_step(5.0))[0] == 10.0, "failed: as if it found nothing"
        assert (await follower._poll_step(40.0))[0] == follower.max_poll_interval
        monkeypatch.undo()
        await client.send(sid, "still here")
        async with asyncio.timeout(10):
            async for item in follower.deliveries():
                if isinstance(item.event, AgentMessage):
                    assert item.event.content == "still here"
                    break
    finally:
        await follower.close()
