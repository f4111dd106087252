"""Properties of the session's rules over any sequence of commands (Hypothesis), with
workers dying at any event: the state the owner keeps is the state the readers' fold
gives; every event says the state after it; the lifecycle moves only along its table;
each command ends once; a stored reply is never produced twice."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from praxis.schemas import (
    CancelTurn,
    Command,
    Complete,
    DecideToolCall,
    Expire,
    Resume,
    SessionState,
    StateChanged,
    Suspend,
    UserMessage,
    can_transition,
    fold,
)
from tests.unit.harness import SID, T0, TASK, Crash, Sim, asks_approval, echo

WAYS = st.sampled_from([None, "enqueue", "reject", "interrupt", "rollback"])


def _agent(state, content):  # type: ignore[no-untyped-def]
    """Asks for approval when the message mentions a refund, echoes otherwise."""
    turn = state.turn
    if (content and "refund" in content) or (turn is not None and turn.decisions):
        return asks_approval(state, content)
    return echo(state, content)


def _command(draw: st.DrawFn) -> Command:
    kind = draw(
        st.sampled_from(
            ["msg", "msg", "msg", "suspend", "resume", "complete"] * 2
            + ["cancel", "expire", "decide"]
        )
    )
    common = {"session_id": SID, "task_id": TASK}
    if kind == "msg":
        content = draw(st.sampled_from(["hi", "refund please", "more"]))
        return UserMessage(**common, content=content, on_busy=draw(WAYS), queue=draw(st.booleans()))
    if kind == "decide":
        return DecideToolCall(**common, call_id="call-1", approve=draw(st.booleans()))
    kinds: dict[str, type[Command]] = {
        "suspend": Suspend,
        "resume": Resume,
        "complete": Complete,
        "cancel": CancelTurn,
        "expire": Expire,
    }
    return kinds[kind](**common)


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[list[Command], int | None]]:
    """Batches of commands stored together (a later one arrives while an earlier one is
    handled), each handled by a worker that may die after some events."""
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        commands = [_command(draw) for _ in range(draw(st.integers(1, 3)))]
        crash = draw(st.one_of(st.none(), st.integers(0, 6)))
        batches.append((commands, crash))
    return batches


@settings(max_examples=300, deadline=None)
@given(scripts(), st.sampled_from(["enqueue", "reject", "interrupt", "rollback"]))
def test_any_commands_leave_a_state_the_fold_agrees_with(
    script: list[tuple[list[Command], int | None]], way: str
) -> None:
    sim = Sim(agent=_agent, now=T0 + timedelta(hours=3))
    sim.create(double_texting=way, idle_timeout=3600)
    sim.work()
    for commands, crash in script:
        for cmd in commands:
            sim.send(cmd)
        sim.crash_after = crash
        with contextlib.suppress(Crash):
            sim.work()
        sim.crash_after = None
        sim.work()  # a new owner finishes what the dead one left

    # The owner's state is the readers' fold of the stored events.
    assert fold(sim.events) == sim.state

    # Every event says the state after it; the lifecycle moves only along its table.
    ck = None
    state = SessionState.CREATED
    for seq, event in sim.events:
        ck = fold([(seq, event)], ck)
        assert ck is not None and event.state is ck.session.state, event
        if isinstance(event, StateChanged):
            assert event.from_state is state and can_transition(state, event.to_state)
        state = ck.session.state

    # Every command is done, and ended by exactly one final event.
    assert sim.state.input_cursor == max(sim.inputs)
    for seq in sim.inputs:
        finals = [e for e in sim.of(seq) if e.final]
        assert len(finals) == (0 if seq == 1 and not sim.of(seq) else 1), (seq, finals)

    # A turn's reply is stored once: a new owner finishes a replied turn without another.
    replies: dict[str, int] = {}
    for _, event in sim.events:
        if event.type == "agent.message":
            turn_id = getattr(event, "turn_id", "")
            replies[turn_id] = replies.get(turn_id, 0) + 1
    assert all(n == 1 for n in replies.values()), replies
