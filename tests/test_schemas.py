"""Pure unit tests: wire models, ids, the lifecycle table and the fold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from praxis.bus import subjects
from praxis.cli.common import parse_duration
from praxis.schemas import (
    COMMAND_ADAPTER,
    EVENT_ADAPTER,
    TRANSITIONS,
    AgentMessage,
    CreateSession,
    FoldError,
    InvalidIdError,
    SessionClaimed,
    SessionCreated,
    SessionImported,
    SessionState,
    StateChanged,
    TurnCompleted,
    TurnStarted,
    UserMessage,
    UserMessageAccepted,
    apply,
    check_token,
    decode_command,
    fold,
    is_token,
    new_id,
)
from praxis.workers.agents import load_agents

tokens = st.text(alphabet=st.sampled_from("abcXYZ019_-"), min_size=1, max_size=40)
texts = st.text(min_size=1, max_size=200)


@given(sid=tokens, tid=tokens, content=texts)
def test_user_message_round_trips(sid: str, tid: str, content: str) -> None:
    cmd = UserMessage(session_id=sid, task_id=tid, content=content)
    again = decode_command(cmd.model_dump_json())
    assert again == cmd


@given(
    sid=tokens,
    tid=tokens,
    agent=tokens,
    meta=st.dictionaries(tokens, st.integers() | texts, max_size=4),
)
def test_create_round_trips(sid: str, tid: str, agent: str, meta: dict[str, object]) -> None:
    cmd = CreateSession(session_id=sid, task_id=tid, agent=agent, metadata=meta)
    assert COMMAND_ADAPTER.validate_json(cmd.model_dump_json()) == cmd


@given(sid=tokens, tid=tokens, content=texts, seq=st.integers(1, 2**40))
def test_events_round_trip(sid: str, tid: str, content: str, seq: int) -> None:
    for event in (
        UserMessageAccepted(session_id=sid, task_id=tid, content=content, input_seq=seq),
        AgentMessage(session_id=sid, task_id=tid, turn_id="t", content=content, final=False),
        StateChanged(session_id=sid, task_id=tid, from_state="ACTIVE", to_state="SUSPENDED"),
    ):
        assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event


@given(st.text(max_size=300))
def test_ids_accept_exactly_subject_tokens(value: str) -> None:
    ok = 0 < len(value) <= 128 and all(c.isascii() and (c.isalnum() or c in "_-") for c in value)
    assert is_token(value) is ok
    if ok:
        assert subjects.inputs(value, 0) == f"sess.{value}.in"
        assert subjects.inputs(value, 2) == f"sess.{value}.p2.in"
    else:
        with pytest.raises(InvalidIdError):
            subjects.inputs(value, 0)


@pytest.mark.parametrize("bad", ["a.b", "*", ">", "a b", "", "x" * 1024, "a\nb"])
def test_bad_ids_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(InvalidIdError, match="invalid session id"):
        check_token(bad, "session id")
    with pytest.raises(ValidationError):
        UserMessage(session_id=bad, task_id="t", content="x")
    with pytest.raises(ValidationError):
        UserMessage(session_id="s", task_id=bad, content="x")


def test_malformed_commands_are_validation_errors() -> None:
    for raw in (b"{", b"[]", b'{"kind": "user_message"}', b'{"kind": "nope", "session_id": "s"}'):
        with pytest.raises(ValidationError):
            decode_command(raw)
    extra = json.loads(UserMessage(session_id="s", task_id="t", content="x").model_dump_json())
    extra["surprise"] = 1
    with pytest.raises(ValidationError, match="Extra inputs"):
        decode_command(json.dumps(extra))


def test_new_ids_are_tokens_and_sort_by_time() -> None:
    ids = [new_id("ses") for _ in range(50)]
    assert all(is_token(i) for i in ids)
    assert len(set(ids)) == 50
    assert ids == sorted(ids) or sorted(i[:16] for i in ids) == [i[:16] for i in ids]


def test_lifecycle_table() -> None:
    assert SessionState.ACTIVE in TRANSITIONS[SessionState.CREATED]
    assert SessionState.SUSPENDED not in TRANSITIONS[SessionState.CREATED]
    assert TRANSITIONS[SessionState.SUSPENDED] >= {SessionState.ACTIVE, SessionState.COMPLETED}
    assert not TRANSITIONS[SessionState.COMPLETED] and not TRANSITIONS[SessionState.FAILED]


def _turn_events(seq: int) -> list[tuple[int, object]]:
    base = {"session_id": "s", "task_id": "t", "command_id": "c1", "input_seq": seq}
    return [
        (11, UserMessageAccepted(**base, content="hi")),
        (12, TurnStarted(**base, turn_id="t1", worker_id="w")),
        (13, AgentMessage(**base, turn_id="t1", content="hello")),
        (14, TurnCompleted(**base, final=True, turn_id="t1", duration_ms=1)),
    ]


def test_fold_of_a_turn_and_its_prefixes() -> None:
    created = SessionCreated(session_id="s", task_id="t", agent="echo")
    claimed = SessionClaimed(session_id="s", task_id="t", worker_id="w")
    turn = _turn_events(seq=7)
    ck = fold([(1, created), (2, claimed), *turn])  # type: ignore[list-item]
    assert ck is not None
    assert ck.input_cursor == 7 and ck.progress == 7 and ck.turn is None
    assert ck.owner == "w" and ck.as_of == 14
    assert [m.content for m in ck.context] == ["hi", "hello"]
    assert ck.recent_commands == ["c1"]
    assert ck.session.counters.turns == 1 and ck.session.counters.events == 6

    # What a worker that died after each event leaves for the next owner:
    ck = fold([(1, created), *turn[:1]])  # type: ignore[list-item]
    assert ck is not None and ck.progress == 7 and ck.input_cursor == 0 and ck.turn is None
    ck = fold([(1, created), *turn[:2]])  # type: ignore[list-item]
    assert ck is not None and ck.turn is not None and not ck.turn.replied
    ck = fold([(1, created), *turn[:3]])  # type: ignore[list-item]
    assert ck is not None and ck.turn is not None and ck.turn.replied


def test_fold_is_idempotent_and_needs_a_created_event() -> None:
    created = SessionCreated(session_id="s", task_id="t", agent="echo")
    events = [(1, created), *_turn_events(3)]
    once = fold(events)  # type: ignore[arg-type]
    assert once is not None
    twice = fold(events, once.model_copy(deep=True))  # type: ignore[arg-type]
    assert twice == once
    with pytest.raises(FoldError):
        apply(None, 5, SessionClaimed(session_id="s", task_id="t", worker_id="w"))


def test_an_imported_session_takes_its_exported_state_counters_and_times() -> None:
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    created = SessionCreated(session_id="s", task_id="t", agent="echo", ts=t0, idle_timeout=60)
    said = UserMessageAccepted(session_id="s", task_id="t", content="hi", ts=t0)
    active, updated = t0 + timedelta(minutes=5), t0 + timedelta(minutes=9)
    imported = SessionImported(
        session_id="s",
        task_id="t",
        ts=updated,
        state=SessionState.SUSPENDED,
        turns=4,
        failed_turns=1,
        active_at=active,
    )
    ck = fold([(1, created), (2, said), (3, imported)])
    assert ck is not None
    record = ck.session
    assert record.state is SessionState.SUSPENDED
    assert (record.counters.turns, record.counters.failed_turns) == (4, 1)
    assert record.counters.user_messages == 1
    assert (record.created_at, record.updated_at, record.active_at) == (t0, updated, active)
    assert record.expires_at == active + timedelta(seconds=60)
    # Ended: it never expires; without times, it was active when imported.
    done = imported.model_copy(update={"state": SessionState.COMPLETED, "active_at": None})
    ck = fold([(1, created), (2, done)])
    assert ck is not None and ck.session.expires_at is None
    assert ck.session.active_at == updated


def test_context_is_bounded() -> None:
    ck = fold([(1, SessionCreated(session_id="s", task_id="t", agent="echo"))])
    for i in range(2, 40):
        ck = apply(ck, i, UserMessageAccepted(session_id="s", task_id="t", content=str(i)), 10)
    assert ck is not None and len(ck.context) == 10 and ck.context[-1].content == "39"


def test_registry_reports_broken_agents_and_keeps_the_rest() -> None:
    registry = load_agents(["tests.agents_for_tests:Slow", "no.such.module:X", "json:dumps"])
    assert {"hello-world", "echo", "slow"} <= set(registry.names())
    assert len(registry.errors) == 2
    assert any("no.such.module" in e for e in registry.errors)
    assert any("is not a praxis Agent" in e for e in registry.errors)


def test_durations() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("30m") == timedelta(minutes=30)
    for bad in ("7", "d", "-1d", "1y", ""):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)
    assert datetime.now(UTC) - parse_duration("0s") <= datetime.now(UTC)


def test_command_effects_are_its_events_and_its_turns_text() -> None:
    """What a client following one command passes on: its events, and the deltas of the
    turns it started; not another command's events or turns."""
    from praxis.schemas import CommandEffects, Delivery, TokenDelta

    base = {"session_id": "s", "task_id": "t"}
    mine = TurnStarted(**base, command_id="c1", turn_id="u1", worker_id="w")
    other = TurnStarted(**base, command_id="c2", turn_id="u2", worker_id="w")
    effects = CommandEffects("c1")
    stream = [
        (
            Delivery(
                cursor=None, event=TokenDelta(session_id="s", turn_id="u1", index=1, text="early")
            ),
            False,
        ),
        (Delivery(cursor=5, event=other), False),
        (
            Delivery(
                cursor=None, event=TokenDelta(session_id="s", turn_id="u2", index=1, text="x")
            ),
            False,
        ),
        (Delivery(cursor=6, event=mine), True),
        (
            Delivery(
                cursor=None, event=TokenDelta(session_id="s", turn_id="u1", index=1, text="y")
            ),
            True,
        ),
        (
            Delivery(
                cursor=7, event=TurnCompleted(**base, command_id="c1", turn_id="u1", duration_ms=1)
            ),
            True,
        ),
    ]
    assert [effects.takes(item) for item, _ in stream] == [want for _, want in stream]


def test_a_session_as_the_api_shows_it_comes_back_whole() -> None:
    from praxis.schemas.api import SessionView
    from praxis.schemas.fold import start

    created = SessionCreated(
        session_id="s", task_id="t", agent="echo", metadata={"k": [1]}, interface="api"
    )
    record = start(created, 1).session
    hidden = {"counters": {"events"}}  # not shown by the API
    back = SessionView.of(record).record()
    assert back.model_dump(exclude=hidden) == record.model_dump(exclude=hidden)


def test_install_hints_name_the_distribution_and_the_checkout() -> None:
    from praxis import DISTRIBUTION, install_hint

    assert DISTRIBUTION == "praxis-sessions"  # "praxis" on PyPI is another project
    hint = install_hint("openai")
    assert "pip install 'praxis-sessions[openai]'" in hint
    assert "pip install -e '.[openai]'" in hint


def test_imported_text_parts_are_joined_as_paragraphs() -> None:
    from praxis.bus.transfer import ChatLine

    line = ChatLine.model_validate(
        {
            "role": "user",
            "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}],
        }
    )
    assert line.text == "part one\n\npart two"
