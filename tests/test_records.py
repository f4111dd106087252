"""One stored record per decision, on a real server: a fast turn is one record, a slow one
two (its start once the group-commit window passes, its end); followers resume from any
event id, even one in the middle of a record; a session stored by the earlier release (one
event per message, a snapshot naming stream sequences) reads and goes on."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from praxis.bus import SessionClient, commit, direct, metrics
from praxis.bus.state import read_events
from praxis.schemas import (
    AgentMessage,
    Checkpoint,
    ContextCompacted,
    SessionCreated,
    TokenDelta,
    TurnCompleted,
    TurnStarted,
    UserMessageAccepted,
    decode_record,
    fold,
    record_seq,
)
from praxis.schemas.events import created_by
from tests.conftest import InProcessWorker


async def _records(client: SessionClient, sid: str) -> list[list[str]]:
    """The session's stored records, each as its events' types."""
    msgs = await direct.read_subject(
        client.bus.nc, client.bus.stream_of(sid), client.bus.events(sid), after=0, timeout=5
    )
    return [[e.type for _, e in decode_record(m.seq, m.data)] for m in msgs]


async def test_a_fast_turn_is_one_record(client: SessionClient, worker: InProcessWorker) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    before = len(await _records(client, record.session_id))
    items = [d async for d in client.turn(record.session_id, "hi")]
    records = await _records(client, record.session_id)
    assert records[before:] == [["user.message", "turn.started", "agent.message", "turn.completed"]]
    # The follower saw the turn start, its deltas, then the reply, in order.
    kinds = [d.event.type for d in items]
    assert kinds[0:2] == ["user.message", "turn.started"]
    assert kinds[-2:] == ["agent.message", "turn.completed"]
    deltas = "".join(d.event.text for d in items if isinstance(d.event, TokenDelta))
    reply = next(d.event for d in items if isinstance(d.event, AgentMessage))
    assert deltas == reply.content


async def test_a_slow_turn_stores_its_start_when_the_window_passes(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("slow", metadata={"pieces": 5, "delay": 0.05})
    await client.wait(receipt)
    sid = record.session_id
    before = len(await _records(client, sid))
    items = [d async for d in client.turn(sid, "go")]
    assert (await _records(client, sid))[before:] == [
        ["user.message", "turn.started"],
        ["agent.message", "turn.completed"],
    ]
    kinds = [d.event.type for d in items]
    started = kinds.index("turn.started")
    assert all(k == "token.delta" for k in kinds[started + 1 : -2])
    deltas = "".join(d.event.text for d in items if isinstance(d.event, TokenDelta))
    assert deltas == next(d.event for d in items if isinstance(d.event, AgentMessage)).content


async def test_any_event_id_resumes_with_exactly_the_later_events(
    client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    sid = record.session_id
    for text in ("one", "two"):
        await client.wait(await client.send(sid, text))
    stored = await read_events(client.bus, sid, after=0)
    ids = [i for i, _ in stored]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert len({record_seq(i) for i in ids}) < len(ids)  # records hold several events
    for k, cursor in enumerate(ids[:-1]):
        got = []
        async for item in await client.events(sid, after=cursor):
            assert item.cursor is not None
            got.append(item.cursor)
            if item.cursor == ids[-1]:
                break
        assert got == ids[k + 1 :], f"after {cursor}"
    # History pages by the same ids, from the middle of a record.
    user_two = next(
        i for i, e in stored if isinstance(e, UserMessageAccepted) and e.content == "two"
    )
    page = await client.history(sid, before=user_two + 1)
    assert page[-1].seq == user_two and page[-1].content == "two"


async def test_a_session_of_the_earlier_format_reads_and_goes_on(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """Written as the earlier release wrote it: each event its own message (a JSON object),
    ids that are stream sequences, a v1 snapshot, a compaction naming sequences."""
    bus, sid, task = client.bus, "ses_legacy_one", "task_legacy"
    create = {"session_id": sid, "task_id": task, "agent": "echo"}
    from praxis.schemas import CreateSession

    cmd = CreateSession(**create)
    ack = await bus.js.publish(bus.inputs(sid), cmd.model_dump_json().encode())
    created = created_by(cmd, 0, 0).model_copy(
        update={"input_seq": ack.seq, "command_id": cmd.command_id, "final": True}
    )
    tail = 0

    async def append(event: object) -> int:
        nonlocal tail
        data = event.model_dump_json().encode()  # type: ignore[attr-defined]
        tail = await commit.append(
            bus.nc, bus.stream_of(sid), sid, data, partition=bus.partition(sid),
            expected_seq=tail, max_bytes=1 << 20,
            timeout=5, deadline=5,
        )  # fmt: skip
        return tail

    base = {"session_id": sid, "task_id": task}
    events: list[tuple[int, object]] = [(await append(created), created)]
    for text in ("old one", "old two"):
        user = UserMessageAccepted(**base, content=text)
        events.append((await append(user), user))
        agent = AgentMessage(**base, turn_id=f"t_{text}", content=f"echo {text}")
        events.append((await append(agent), agent))
    first_user = events[1][0]
    compacted = ContextCompacted(
        **base, from_seq=first_user, to_seq=first_user, messages=1, summary="said old one"
    )
    events.append((await append(compacted), compacted))
    old = fold(events)  # type: ignore[arg-type]
    assert isinstance(old, Checkpoint)
    snap = old.model_dump(mode="json") | {"v": 1}
    await commit.save_checkpoint(bus.nc, sid, bus.partition(sid), json.dumps(snap).encode(), 5)
    # The session record the listing reads.
    await bus.records_of(sid).put(sid, old.session.model_dump_json().encode())

    history = await client.history(sid)
    assert [h.content for h in history] == ["old one", "echo old one", "old two", "echo old two"]
    assert history[0].seq == first_user * 1000
    reply = [d async for d in client.turn(sid, "new")]
    assert any(isinstance(d.event, TurnCompleted) for d in reply)
    history = await client.history(sid)
    assert len(history) == 6
    assert (history[-2].content, history[-1].role) == ("new", "agent")
    assert history[-2].seq > history[-3].seq  # the new ids come after the old ones
    events_now = await read_events(bus, sid, after=0)
    assert isinstance(events_now[0][1], SessionCreated)
    assert any(isinstance(e, TurnStarted) for _, e in events_now)
    compaction = next(e for _, e in events_now if isinstance(e, ContextCompacted))
    assert compaction.from_seq == first_user * 1000


async def test_records_of_both_formats_in_one_session_read_and_follow(
    client: SessionClient, start_worker: Callable[..., Awaitable[InProcessWorker]]
) -> None:
    """A rolling upgrade: a worker that writes each event whole (``PRAXIS_RECORD_FORMAT=1``,
    as earlier releases do), then one that stores what a record's events share once. The
    follower of each turn, the history and the events read both."""
    old = await start_worker(record_format=1)
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    sid = record.session_id
    first = [d.event.type async for d in client.turn(sid, "before")]
    await old.stop()
    await start_worker()
    second = [d.event.type async for d in client.turn(sid, "after")]
    third = [d.event.type async for d in client.turn(sid, "again")]  # no claim in its record
    for kinds in (first, second, third):
        assert kinds[:2] == ["user.message", "turn.started"]
        assert kinds[-2:] == ["agent.message", "turn.completed"]
    msgs = await direct.read_subject(
        client.bus.nc, client.bus.stream_of(sid), client.bus.events(sid), after=0, timeout=5
    )
    formats = [m.data[:5] for m in msgs]
    assert formats[-3:] == [b'[{"v"', b'{"r":', b'{"r":']
    # What the events of the new record share is stored once.
    assert msgs[-1].data.count(sid.encode()) == 1
    assert len(msgs[-1].data) < len(msgs[-3].data) / 2
    history = await client.history(sid)
    assert [h.content for h in history] == ["before", "before", "after", "after", "again", "again"]
    events = await read_events(client.bus, sid, after=0)
    assert [e.type for _, e in events][-4:] == third[:2] + third[-2:]


async def test_a_worker_that_got_every_trigger_takes_each_input_as_delivered(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """With one worker every work message comes to it, numbered without a gap: it knows
    each trigger is its session's next input and reads none of them back from the stream
    (the direct get a turn needed). The answers are the same."""
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    sid = record.session_id
    before = metrics.INPUTS_KNOWN._value.get()
    for i in range(6):
        items = [d.event async for d in client.turn(sid, f"m{i}")]
        assert [e.content for e in items if isinstance(e, AgentMessage)] == [f"m{i}"]
    assert metrics.INPUTS_KNOWN._value.get() - before >= 5
    history = await client.history(sid)
    assert [h.content for h in history] == [f"m{i}" for i in range(6) for _ in "ua"]
