"""The session's rules (:mod:`praxis.workers.session.policy`) without a server: each
command kind in each state, double texting, approvals, expiry, cancelling, retries and
parking, and finishing a command a dead worker left half done."""

from __future__ import annotations

from datetime import timedelta

import pytest

from praxis.schemas import (
    AddedMessage,
    AddMessages,
    AgentMessage,
    CancelTurn,
    Checkpoint,
    Complete,
    DecideToolCall,
    Expire,
    SessionState,
    StateChanged,
    Suspend,
    TurnFailed,
    TurnRolledBack,
)
from praxis.workers.session import policy
from praxis.workers.session.policy import CommandContext, Facts, TurnOutcome
from tests.unit.harness import SID, T0, TASK, Crash, Sim, asks_approval

S = SessionState


def active(**kw: object) -> Sim:
    sim = Sim(**kw)  # type: ignore[arg-type]
    sim.create()
    sim.work()
    assert sim.state.session.state is S.ACTIVE
    return sim


# -- creating ------------------------------------------------------------------------------


def test_a_create_starts_the_session_and_a_greeting_agent_speaks_first() -> None:
    quiet = Sim()
    quiet.create()
    quiet.work()
    assert quiet.types(1) == ["session.state_changed"] and quiet.final(1).final
    greeter = Sim(greets=True)
    greeter.create()
    greeter.work()
    assert greeter.types(1) == [
        "session.state_changed",
        "turn.started",
        "agent.message",
        "turn.completed",
    ]
    assert greeter.state.session.counters.turns == 1


def test_a_create_with_a_message_is_a_whole_turn() -> None:
    sim = Sim()
    sim.create(message="hi")
    sim.work()
    assert sim.types(1) == [
        "session.state_changed",
        "user.message",
        "turn.started",
        "agent.message",
        "turn.completed",
    ]
    assert [m.content for m in sim.state.context] == ["hi", "echo: hi"]


def test_a_create_for_an_agent_not_offered_fails_the_session() -> None:
    sim = Sim(offered=False)
    sim.create()
    sim.work()
    changed = sim.final(1)
    assert isinstance(changed, StateChanged) and changed.to_state is S.FAILED
    assert changed.state is S.FAILED and "not available" in (changed.reason or "")


def test_a_second_create_is_refused() -> None:
    sim = active()
    again = sim.send(sim.inputs[1].model_copy(update={"command_id": "cmd-2"}))
    sim.work()
    assert sim.types(again) == ["command.rejected"]


# -- messages and the lifecycle -----------------------------------------------------------


def test_a_message_is_accepted_and_answered() -> None:
    sim = active()
    seq = sim.message("hello")
    sim.work()
    assert sim.types(seq) == ["user.message", "turn.started", "agent.message", "turn.completed"]
    assert all(e.state is S.ACTIVE for e in sim.of(seq))


@pytest.mark.parametrize(("end", "state"), [(Complete, S.COMPLETED), (Suspend, S.SUSPENDED)])
def test_messages_are_refused_once_ended_or_suspended(end: type, state: SessionState) -> None:
    sim = active()
    sim.send(end(session_id=SID, task_id=TASK))
    seq = sim.message("anyone?")
    sim.work()
    assert sim.state.session.state is state
    rejected = sim.final(seq)
    assert rejected.type == "command.rejected" and state.value in getattr(rejected, "reason", "")


def test_a_queued_message_waits_for_the_resume_then_is_answered_under_its_own_id() -> None:
    sim = active()
    sim.send(Suspend(session_id=SID, task_id=TASK))
    seq = sim.message("later", queue=True)
    sim.work()
    assert sim.types(seq) == ["message.queued"] and len(sim.state.queued) == 1
    item = sim.state.queued[0]
    ctx, decision = policy.answer_queued(sim.state, item)
    assert policy.next_queued(sim.state, suspending=False) is None  # suspended: not yet
    from praxis.schemas import Resume

    sim.send(Resume(session_id=SID, task_id=TASK))
    sim.work()
    found = policy.next_queued(sim.state, suspending=False)
    assert found == item and policy.next_queued(sim.state, suspending=True) is None
    ctx, decision = policy.answer_queued(sim.state, item)
    assert ctx.command_id == item.command_id and ctx.input_seq == seq
    sim.carry_out(decision, sim.inputs[seq], ctx, Facts(resuming=True))
    assert sim.types(seq)[1:] == ["user.message", "turn.started", "agent.message", "turn.completed"]
    assert sim.state.queued == []


@pytest.mark.parametrize(
    ("current", "command", "allowed"),
    [
        (S.ACTIVE, Suspend, True),
        (S.ACTIVE, Complete, True),
        (S.SUSPENDED, Suspend, False),
        (S.COMPLETED, Suspend, False),
        (S.COMPLETED, Complete, False),
    ],
)
def test_transitions_follow_the_lifecycle(
    current: SessionState, command: type, allowed: bool
) -> None:
    sim = active()
    if current is S.SUSPENDED:
        sim.send(Suspend(session_id=SID, task_id=TASK))
    elif current is S.COMPLETED:
        sim.send(Complete(session_id=SID, task_id=TASK))
    sim.work()
    seq = sim.send(command(session_id=SID, task_id=TASK))
    sim.work()
    assert (sim.final(seq).type == "session.state_changed") is allowed


def test_a_repeated_command_id_is_skipped() -> None:
    sim = active()
    first = sim.message("once")
    sim.work()
    again = sim.send(sim.inputs[first])
    sim.work()
    assert sim.types(again) == ["command.skipped"]
    assert sim.state.session.counters.user_messages == 1


# -- double texting -------------------------------------------------------------------------


def two_messages(way: str) -> tuple[Sim, int, int]:
    sim = active()
    first = sim.message("first")
    second = sim.message("second", on_busy=way)
    sim.work()
    return sim, first, second


def test_enqueue_answers_both_in_order() -> None:
    sim, first, second = two_messages("enqueue")
    assert sim.final(first).type == sim.final(second).type == "turn.completed"
    assert [m.content for m in sim.state.context][-2:] == ["second", "echo: second"]


def test_reject_refuses_the_message_that_came_while_busy() -> None:
    sim, first, second = two_messages("reject")
    assert sim.final(first).type == "turn.completed"
    assert sim.types(second) == ["command.rejected"]


def test_interrupt_stops_the_turn_and_answers_the_newer_message() -> None:
    sim, first, second = two_messages("interrupt")
    failed = sim.final(first)
    assert isinstance(failed, TurnFailed) and failed.cancelled_by == sim.inputs[second].command_id
    assert sim.final(second).type == "turn.completed"


def test_rollback_discards_the_interrupted_turn_from_the_context() -> None:
    sim, _first, second = two_messages("rollback")
    rolled = sim.of(second)[0]
    assert isinstance(rolled, TurnRolledBack)
    assert [m.content for m in sim.state.context] == ["second", "echo: second"]
    assert sim.state.rolled_back == [(rolled.from_seq, rolled.to_seq)]


# -- approvals ---------------------------------------------------------------------------


def waiting() -> tuple[Sim, int]:
    sim = active(agent=asks_approval)
    seq = sim.message("refund order 7")
    sim.work()
    assert sim.final(seq).type == "turn.waiting" and policy.is_waiting(sim.state)
    return sim, seq


def decide(sim: Sim, approve: bool, call_id: str = "call-1") -> int:
    return sim.send(DecideToolCall(session_id=SID, task_id=TASK, call_id=call_id, approve=approve))


def test_an_approval_lets_the_turn_go_on_under_the_decision() -> None:
    sim, seq = waiting()
    decision = decide(sim, True)
    sim.work()
    assert sim.types(decision) == [
        "tool.decided",
        "turn.started",
        "agent.message",
        "turn.completed",
    ]
    started = sim.of(decision)[1]
    assert getattr(started, "origin_seq", None) == seq
    assert sim.state.context[-1].content == "refund ran"


@pytest.mark.parametrize(
    ("call_id", "twice", "why"),
    [("nope", False, "no tool call 'nope'"), ("call-1", True, "no tool call is waiting")],
)
def test_a_wrong_or_second_decision_is_refused(call_id: str, twice: bool, why: str) -> None:
    sim, _ = waiting()
    if twice:
        decide(sim, True)
        sim.work()
    seq = decide(sim, True, call_id)
    sim.work()
    refused = sim.final(seq)
    assert refused.type == "command.rejected" and why in getattr(refused, "reason", "")


@pytest.mark.parametrize(
    ("way", "types"),
    [
        ("enqueue", ["message.queued"]),
        ("reject", ["command.rejected"]),
        # The waiting turn ends (its text kept, interrupted), then the message is answered.
        (
            "interrupt",
            [
                "agent.message",
                "turn.failed",
                "user.message",
                "turn.started",
                "agent.message",
                "turn.completed",
            ],
        ),
    ],
)
def test_a_message_while_waiting_follows_double_texting(way: str, types: list[str]) -> None:
    sim, _ = waiting()
    sim.agent = lambda state, content: policy.TurnOutcome(text=f"echo: {content}")
    seq = sim.message("never mind", on_busy=way)
    sim.work()
    assert sim.types(seq) == types
    assert policy.is_waiting(sim.state) is (way != "interrupt")


def test_ending_a_waiting_session_ends_its_turn_first() -> None:
    sim, _first = waiting()
    seq = sim.send(Complete(session_id=SID, task_id=TASK))
    sim.work()
    assert sim.types(seq) == ["agent.message", "turn.failed", "session.state_changed"]
    assert [e.state for e in sim.of(seq)] == [S.ACTIVE, S.ACTIVE, S.COMPLETED]
    assert sim.state.turn is None and sim.state.session.waiting_for == []


def test_a_cancel_ends_a_waiting_turn_and_is_skipped_otherwise() -> None:
    sim, _ = waiting()
    cancel = sim.send(CancelTurn(session_id=SID, task_id=TASK))
    sim.work()
    assert sim.types(cancel) == ["agent.message", "turn.failed"] and sim.final(cancel).final
    again = sim.send(CancelTurn(session_id=SID, task_id=TASK))
    sim.work()
    assert sim.types(again) == ["command.skipped"]


# -- expiry -------------------------------------------------------------------------------


def test_an_expiry_is_taken_only_when_due() -> None:
    sim = Sim()
    sim.create(idle_timeout=60)
    sim.work()
    due = sim.state.session.expires_at
    assert due is not None
    sim.now = due - timedelta(seconds=1)
    early = sim.send(Expire(session_id=SID, task_id=TASK))
    sim.work()
    assert sim.types(early) == ["command.skipped"]
    sim.now = due - timedelta(seconds=policy.EXPIRY_SLACK / 2)
    late = sim.send(Expire(session_id=SID, task_id=TASK))
    sim.work()
    expired = sim.final(late)
    assert isinstance(expired, StateChanged) and expired.to_state is S.EXPIRED
    assert expired.detail == "idle for 1m"
    ended = sim.send(Expire(session_id=SID, task_id=TASK))
    sim.work()
    assert sim.types(ended) == ["command.skipped"]


def test_an_expiry_by_lifetime_says_so() -> None:
    sim = Sim(now=T0 + timedelta(days=2))
    sim.create(max_lifetime=3600, idle_timeout=7200)
    sim.work()
    seq = sim.send(Expire(session_id=SID, task_id=TASK))
    sim.work()
    assert getattr(sim.final(seq), "detail", "") == "its lifetime of 1h ended"


# -- failures, retries, parking, crashes ---------------------------------------------------


def test_a_failing_command_is_retried_with_backoff_then_parked() -> None:
    sim = active()
    seq = sim.message("poison")
    ctx = CommandContext.of(sim.inputs[seq], sim.state, seq)
    delays = []
    for _ in range(2):
        retry = policy.failure(sim.state, ctx, "user_message", "KeyError: boom", 3)
        assert isinstance(retry, policy.Retry) and retry.event.input_seq is None
        delays.append(retry.delay)
        sim.store(retry.event)
    assert delays == [0.5, 1.0]
    park = policy.failure(sim.state, ctx, "user_message", "KeyError: boom", 3)
    assert isinstance(park, policy.Park) and park.attempts == 3 and "boom" in park.reason
    sim.park(ctx, sim.inputs[seq], park)
    assert sim.final(seq).type == "command.dead_lettered"
    assert sim.state.input_cursor == seq


def test_a_dead_worker_s_turn_is_tried_again_then_given_up() -> None:
    sim = active(turn_attempts=2)
    seq = sim.message("hi")
    sim.crash_after = 2  # user.message, turn.started: then the worker dies
    with pytest.raises(Crash):
        sim.work()
    sim.crash_after = 1  # the second attempt starts and dies too
    with pytest.raises(Crash):
        sim.work()
    sim.crash_after = None
    sim.work()
    attempts = [getattr(e, "attempt", None) for e in sim.of(seq) if e.type == "turn.started"]
    assert attempts == [1, 2]
    assert sim.types(seq)[-2:] == ["turn.failed", "command.dead_lettered"]


def test_a_stored_reply_is_never_produced_twice() -> None:
    sim = active()
    seq = sim.message("hi")
    sim.crash_after = 3  # user.message, turn.started, agent.message
    with pytest.raises(Crash):
        sim.work()
    sim.crash_after = None
    sim.work()
    assert sim.types(seq) == ["user.message", "turn.started", "agent.message", "turn.completed"]
    assert sum(isinstance(e, AgentMessage) for e in sim.of(seq)) == 1


def test_a_message_after_a_suspend_on_its_way_is_queued() -> None:
    sim = active()
    seq = sim.message("hi")
    ctx = CommandContext.of(sim.inputs[seq], sim.state, seq)
    decision = policy.decide(sim.state, sim.inputs[seq], ctx, Facts(suspend_follows=True))
    assert [e.type for e in decision.events] == ["message.queued"] and decision.then is None


def test_an_unreadable_command_is_refused_as_invalid_from_the_bus() -> None:
    sim = active()
    ctx = CommandContext(SID, TASK, "cmd-x", None, "mallory", 9, "trace")
    [event] = policy.invalid(sim.state, ctx, "content: missing").events
    assert event.type == "command.rejected" and event.final and event.actor is None
    assert getattr(event, "command_kind", "") == "invalid" and event.trace_id == "trace"


def test_the_interruptions_a_turn_in_flight_takes() -> None:
    sim = active()
    state = sim.state
    msg = sim.inputs[sim.message("x", on_busy="interrupt")]
    assert policy.interrupts(state, msg, turn_command=msg.command_id) is None  # its own
    assert policy.interrupts(state, msg, turn_command="other") == "interrupted: superseded"
    enqueue = sim.inputs[sim.message("y", on_busy="enqueue")]
    assert policy.interrupts(state, enqueue, turn_command="other") is None
    cancel = CancelTurn(session_id=SID, task_id=TASK)
    assert policy.interrupts(state, cancel, None) == "cancelled"


def test_a_waiting_turn_s_kept_text_is_stored_once_when_its_ender_dies() -> None:
    """Found by the property test: a complete that ends a waiting turn stores the turn's
    text, then its failure; a worker dying between the two left the next owner storing
    the text again."""
    sim, _ = waiting()
    seq = sim.send(Complete(session_id=SID, task_id=TASK))
    sim.crash_after = 1  # agent.message stored, then the worker dies
    with pytest.raises(Crash):
        sim.work()
    sim.crash_after = None
    sim.work()
    assert sim.types(seq) == ["agent.message", "turn.failed", "session.state_changed"]


# -- adding messages without a turn ----------------------------------------------------------


def test_added_messages_join_the_history_without_a_turn_and_metadata_is_replaced() -> None:
    sim = active()
    seq = sim.send(
        AddMessages(
            session_id=SID,
            task_id=TASK,
            messages=[
                AddedMessage(role="user", content="earlier question"),
                AddedMessage(role="assistant", content="earlier answer"),
            ],
            metadata={"topic": "billing"},
        )
    )
    sim.work()
    assert sim.types(seq) == ["user.message", "agent.message", "session.metadata_changed"]
    assert sim.final(seq).final
    assert [(m.role, m.content) for m in sim.state.context] == [
        ("user", "earlier question"),
        ("agent", "earlier answer"),
    ]
    assert sim.state.session.metadata == {"topic": "billing"}
    assert sim.state.session.counters.turns == 0  # nothing was answered
    nxt = sim.message("and now?")
    sim.work()
    assert sim.types(nxt)[-1] == "turn.completed"  # the next message is answered as usual


def test_messages_are_not_added_to_an_ended_session_or_under_a_waiting_turn() -> None:
    ended = active()
    ended.send(Complete(session_id=SID, task_id=TASK))
    ended.work()
    added = AddMessages(
        session_id=SID, task_id=TASK, messages=[AddedMessage(role="user", content="x")]
    )
    seq = ended.send(added)
    ended.work()
    assert ended.types(seq) == ["command.rejected"]
    assert not [m for m in ended.state.context if m.content == "x"]

    waiting = active(agent=asks_approval)
    waiting.message("refund it")
    waiting.work()
    seq = waiting.send(added.model_copy(update={"command_id": "cmd-add-2"}))
    waiting.work()
    assert waiting.types(seq) == ["command.rejected"]
    assert "approval" in waiting.final(seq).reason  # type: ignore[attr-defined]


# -- instructions ----------------------------------------------------------------------------


def test_instructions_go_with_their_message_to_its_turn_only_queued_or_not() -> None:
    from praxis.schemas import Resume, UserMessageAccepted
    from praxis.workers.session.turn import turn_context

    seen: list[str | None] = []

    def agent(state: Checkpoint, content: str | None) -> TurnOutcome:
        seen.append(turn_context(state, content).instructions)
        return TurnOutcome(text=f"echo: {content}")

    sim = Sim(agent=agent)
    sim.create(message="hi", instructions="answer in French")
    sim.work()
    first = sim.message("and now?")
    sim.work()
    sim.send(Suspend(session_id=SID, task_id=TASK))
    kept = sim.message("later", queue=True, instructions="be brief")
    sim.work()
    assert sim.state.queued[0].instructions == "be brief"
    sim.send(Resume(session_id=SID, task_id=TASK))
    sim.work()
    item = policy.next_queued(sim.state, suspending=False)
    assert item is not None
    ctx, decision = policy.answer_queued(sim.state, item)
    sim.carry_out(decision, sim.inputs[kept], ctx, Facts(resuming=True))
    # Each turn saw its own message's instructions, and no other's.
    assert seen == ["answer in French", None, "be brief"]
    [accepted] = [e for e in sim.of(kept) if isinstance(e, UserMessageAccepted)]
    assert accepted.instructions == "be brief"
    assert [e.instructions for e in sim.of(first) if isinstance(e, UserMessageAccepted)] == [None]
    # The state holds the latest message's only (its turn may be taken over or resumed).
    assert [m.instructions for m in sim.state.context if m.role == "user"] == [
        None,
        None,
        "be brief",
    ]
