"""Records and event ids (:mod:`praxis.schemas.stored`) without a server: packing ids,
reading records of both formats, moving folded ids to where a record landed, and reading
a snapshot of the earlier format."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from praxis.bus import Settings
from praxis.schemas import (
    RECORD_FORMAT,
    Checkpoint,
    CommitNotice,
    ContextCompacted,
    Delivery,
    Event,
    SessionState,
    StoredEvent,
    TokenDelta,
    TurnStarted,
    UserMessageAccepted,
    apply,
    decode_live,
    decode_record,
    encode_delta,
    encode_record,
    event_id,
    first_id,
    fold,
    rebase,
    record_of,
    record_seq,
    upgrade,
)
from praxis.schemas.events import live_delivery, token_delta
from praxis.schemas.stored import ID_SCALE
from praxis.workers.session import policy
from praxis.workers.session.log import SessionLog
from praxis.workers.session.policy import CommandContext
from tests.unit.harness import SID, TASK, Sim, echo


def _user(text: str) -> UserMessageAccepted:
    return UserMessageAccepted(session_id=SID, task_id=TASK, content=text)


def test_ids_pack_the_record_and_the_index_and_keep_their_order() -> None:
    assert event_id(7, 2) == 7002 and record_seq(7002) == 7 and first_id(8) == 8000
    ids = [event_id(s, i) for s in (1, 2, 10) for i in (0, 1, ID_SCALE - 1)]
    assert ids == sorted(ids)
    # A command stored at stream sequence 5 is after every event of record 4, before 6's.
    assert event_id(4, ID_SCALE - 1) < first_id(5) < event_id(6, 0)


def test_a_record_is_an_array_and_an_object_is_a_record_of_one() -> None:
    a, b = _user("a"), _user("b")
    data = encode_record([a.model_dump_json().encode(), b.model_dump_json().encode()])
    assert json.loads(data)[1]["content"] == "b"
    assert decode_record(12, data) == [(12000, a), (12001, b)]
    assert decode_record(12, a.model_dump_json().encode()) == [(12000, a)]


def test_an_event_of_the_earlier_format_names_other_events_on_the_new_scale() -> None:
    old = ContextCompacted(
        session_id=SID, task_id=TASK, from_seq=3, to_seq=9, messages=4, summary="s"
    )
    [(eid, event)] = decode_record(20, old.model_dump_json().encode())
    assert eid == 20000
    assert isinstance(event, ContextCompacted)
    assert (event.from_seq, event.to_seq) == (3000, 9000)
    # In a record of the new format, the ids are already ids.
    [(_, same)] = decode_record(20, encode_record([old.model_dump_json().encode()]))
    assert isinstance(same, ContextCompacted) and same.from_seq == 3


def _conversation() -> list[tuple[int, object]]:
    sim = Sim(agent=echo)
    sim.create()
    for text in ("one", "two", "three"):
        sim.message(text)
    sim.work()
    return list(sim.events)


def test_a_snapshot_of_the_earlier_format_is_read_on_the_new_scale() -> None:
    events = _conversation()
    as_seqs = [(record_seq(i), e) for i, e in events]  # as the earlier release stored them
    old = fold(as_seqs)  # type: ignore[arg-type]
    new = fold(events)  # type: ignore[arg-type]
    assert old is not None and new is not None
    data = old.model_dump(mode="json") | {"v": 1}
    read = upgrade(Checkpoint.model_validate(data))
    assert read.v == 2
    assert read.model_dump(exclude={"v"}) == new.model_dump(exclude={"v"})


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=50))
def test_folding_before_storing_then_moving_the_ids_is_folding_what_was_stored(
    split: int, gap: int
) -> None:
    """The owner folds staged events under the ids their record would get right after the
    latest one; stored ``gap`` sequences later, the ids move. The state is the same as
    folding the stored record."""
    events = [e for _, e in _conversation()]
    split = min(split, len(events) - 1)
    head, staged = events[:split], events[split:]
    stored = [(first_id(i + 1), e) for i, e in enumerate(head)]
    tail_seq = len(head)
    ck = fold(stored)  # type: ignore[arg-type]
    assumed = first_id(tail_seq + 1)
    for i, e in enumerate(staged):
        ck = apply(ck, assumed + i, e)  # type: ignore[arg-type]
    landed = first_id(tail_seq + 1 + gap)
    assert ck is not None
    rebase(ck, assumed, landed - assumed)
    truth = fold([*stored, *((landed + i, e) for i, e in enumerate(staged))])  # type: ignore[arg-type]
    assert truth is not None
    assert ck.model_dump() == truth.model_dump()


def test_a_redelivered_command_counts_an_attempt_that_died_before_its_start_was_stored() -> None:
    sim = Sim()
    sim.create()
    sim.work()
    seq = sim.message("hi")
    ctx = CommandContext(SID, TASK, "cmd", None, None, seq)
    first = policy.begin_turn(sim.state, ctx, seq, 3)
    assert first == policy.Start(1, fresh=True, eager=False)
    again = policy.begin_turn(sim.state, ctx, seq, 3, redelivered=True)
    assert again == policy.Start(2, fresh=True, eager=True)
    assert policy.begin_turn(sim.state, ctx, seq, 1, redelivered=True) == policy.GiveUp(1)


# -- records of format 2: what the events share stored once -------------------------------


def _by_command() -> list[list[Event]]:
    """A conversation's events grouped as a worker stores them: one record a command."""
    groups: dict[object, list[Event]] = {}
    for _, e in _conversation():
        groups.setdefault((e.command_id, e.input_seq), []).append(e)  # type: ignore[attr-defined]
    return list(groups.values())


def test_a_compact_record_reads_back_as_its_events_in_half_the_bytes() -> None:
    records = _by_command()
    assert any(len(r) >= 4 for r in records)  # a whole turn: message, start, reply, end
    for events in records:
        data = record_of(events)
        assert json.loads(data)["r"] == RECORD_FORMAT
        assert [e for _, e in decode_record(7, data)] == events
        assert [i for i, _ in decode_record(7, data)] == [7000 + i for i in range(len(events))]
        whole = record_of(events, fmt=1)
        assert decode_record(7, whole) == decode_record(7, data)
        if len(events) >= 4:
            assert len(data) < 0.5 * len(whole), (len(data), len(whole))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["cmd_a", "cmd_b", None]),
            st.sampled_from(list(SessionState)),
            st.none() | st.integers(min_value=0, max_value=10**12),
            st.none() | st.text(max_size=20),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_events_that_do_not_share_a_field_each_keep_their_own(
    fields: list[tuple[str | None, SessionState, int | None, str | None, bool]],
) -> None:
    """The shared fields on which a record's events differ (a state change in the middle,
    a claim made by no command, an actor) are stored in each event: nothing is lost."""
    events: list[Event] = [
        UserMessageAccepted(
            session_id=SID,
            task_id=TASK,
            command_id=cmd,
            state=state,
            input_seq=seq,
            actor=actor,
            final=final,
            content=f"m{i}",
        )
        for i, (cmd, state, seq, actor, final) in enumerate(fields)
    ]
    assert [e for _, e in decode_record(3, record_of(events))] == events


def test_a_record_of_a_format_this_release_does_not_know_is_refused_by_name() -> None:
    data = record_of([_user("a")]).replace(b'"r":2', b'"r":3')
    with pytest.raises(ValueError, match="format 3"):
        decode_record(1, data)


def test_a_notice_carries_its_record_as_stored_and_reads_as_its_events() -> None:
    events = max(_by_command(), key=len)
    record = record_of(events)
    delta = TokenDelta(session_id=SID, turn_id="turn_1", index=1, text="he")
    data = CommitNotice.encode_record(4002, 9003, record, [delta.model_dump_json().encode()])
    assert record in data  # not serialised again
    notice = decode_live(data)
    assert isinstance(notice, CommitNotice)
    assert (notice.prev, notice.seq) == (4002, 9003)
    assert [(s.seq, s.event) for s in notice.events] == decode_record(9, record)
    assert notice.deltas == [delta]
    # Deltas written without their ids are the record's turn's.
    started = next(e for e in events if isinstance(e, TurnStarted))
    own = b'{"type":"token.delta","index":3,"text":"hey"}'
    [held] = decode_live(CommitNotice.encode_record(4002, 9003, record, [own])).deltas  # type: ignore[union-attr]
    assert held == TokenDelta(session_id=SID, turn_id=started.turn_id, index=3, text="hey")
    slow = json.dumps(
        {"type": "commit", "prev": 1, "seq": 9003, "record": json.loads(record),
         "deltas": [json.loads(own)]}
    )  # fmt: skip
    assert decode_live(slow.encode()).deltas == [held]  # type: ignore[union-attr]
    # Written another way (spaces, the keys in another order), it reads the same.
    other = json.dumps(
        {"deltas": [], "type": "commit", "record": json.loads(record), "seq": 9003, "prev": 4002}
    )
    again = decode_live(other.encode())
    assert isinstance(again, CommitNotice) and again.events == notice.events
    # And a notice of format 1 still reads.
    ids = [(9000 + i, e.model_dump_json().encode()) for i, e in enumerate(events)]
    old = decode_live(CommitNotice.encode(4002, ids))
    assert isinstance(old, CommitNotice) and old.events == notice.events
    with pytest.raises(ValueError, match="not a live message"):
        decode_live(data[:-5])


@settings(max_examples=200, deadline=None)
@given(turn_id=st.text(max_size=40), index=st.integers(-(2**40), 2**40), text=st.text())
def test_a_delta_is_written_and_read_as_pydantic_does(turn_id: str, index: int, text: str) -> None:
    delta = TokenDelta(session_id="ses_01", turn_id=turn_id, index=index, text=text)
    data = delta.model_dump_json().encode()
    assert encode_delta("ses_01", turn_id, index, text) == data  # as workers write it
    fast = decode_live(data)
    assert type(fast) is TokenDelta and fast == delta
    assert fast.model_dump_json() == delta.model_dump_json()


def test_a_delta_built_without_validation_is_the_validated_one() -> None:
    for cls in (TokenDelta, Delivery, StoredEvent):  # what built() leaves out is not here
        assert not cls.__private_attributes__ and not cls.__pydantic_post_init__
        assert cls.model_config.get("extra") in (None, "ignore")
        assert all(f.alias is f.validation_alias is None for f in cls.model_fields.values())
    fast = live_delivery(token_delta("ses_01", "t", 3, "x"))
    delta = TokenDelta(session_id="ses_01", turn_id="t", index=3, text="x")
    slow = Delivery(cursor=None, event=delta)
    assert fast == slow and fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.event.model_fields_set == delta.model_fields_set
    assert fast.event.model_dump(exclude_unset=True) == delta.model_dump(exclude_unset=True)
    with pytest.raises(ValidationError, match="frozen"):
        fast.event.text = "y"  # type: ignore[misc]
    assert fast.event.model_copy(update={"text": "y"}).text == "y"


def test_a_delta_not_as_workers_write_it_is_read_or_refused_as_pydantic_does() -> None:
    head = '{"type":"token.delta","session_id":'
    lax = decode_live(f'{head}"ses_01","turn_id":"t","index":"7","text":"x"}}'.encode())
    assert lax == TokenDelta(session_id="ses_01", turn_id="t", index=7, text="x")
    for bad in ['"no.token"', '""', "7"]:  # a session id that is not one subject token
        with pytest.raises(ValueError, match="session_id"):
            decode_live(f'{head}{bad},"turn_id":"t","index":1,"text":"x"}}'.encode())
    with pytest.raises(ValueError, match="not a live message"):
        decode_live(f'{head}"ses_01","turn_id":"t","index":1,"text":'.encode())


def test_a_snapshot_without_its_defaults_reads_as_the_state() -> None:
    state = fold(_conversation())  # type: ignore[arg-type]
    assert state is not None
    data = state.model_dump_json(exclude_defaults=True)
    assert len(data) < len(state.model_dump_json())
    assert Checkpoint.model_validate_json(data) == state


def test_a_long_contexts_snapshot_is_not_written_more_often_than_its_records() -> None:
    bus: Any = SimpleNamespace(settings=Settings(record_format=2))
    log = SessionLog(bus, SID, "wrk_unit")
    log.saved(10_000)  # a snapshot of a long context
    due = []
    for _ in range(40):
        log.unsaved += 1
        log.unsaved_bytes += 800  # a record
        due.append(log.snapshot_due(16))
    assert due.index(True) + 1 == 25  # 20,000 bytes of records: twice the snapshot's
    log.saved(1_000)  # a short one: every 16 records, as before
    log.unsaved, log.unsaved_bytes = 15, 15 * 800
    assert not log.snapshot_due(16)
    log.unsaved += 1
    assert log.snapshot_due(16)


def test_the_context_is_counted_again_only_for_what_was_appended() -> None:
    from praxis.schemas import ChatMessage
    from praxis.workers.session.policy import ContextChars

    chars = ContextChars()
    context = [ChatMessage(role="user", content="abc")]
    assert chars.of(context) == 3
    context.append(ChatMessage(role="agent", content="de"))
    assert chars.of(context) == 5
    assert chars.of(context[1:]) == 2  # a new list (the fold filters or slices)
    assert chars.of(context) == 5
