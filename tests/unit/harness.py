"""A session run by the policy alone: no server, no worker, no clock.

:class:`Sim` plays the worker's shell in a few lines: it stores inputs and events on one
sequence (as the session's stream does), asks :func:`policy.decide` what each command
does, stores the events it decides (folding them with the readers' fold), and runs turns
with a scripted agent. A worker dying mid-command is a ``crash_after`` budget of events;
the next :meth:`Sim.work` finishes the command from where its events stop, as a new owner
does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from praxis.schemas import (
    Checkpoint,
    Command,
    CreateSession,
    Event,
    ToolCall,
    UserMessage,
    apply,
    dead_letter_id,
    first_id,
)
from praxis.schemas.events import created_by
from praxis.workers.session import policy
from praxis.workers.session.policy import (
    Again,
    CommandContext,
    Decision,
    Facts,
    RunTurn,
    TurnOutcome,
)

SID, TASK = "ses_unit", "task_unit"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Crash(Exception):
    """The worker died: nothing after this point was stored."""


Agent = Callable[[Checkpoint, str | None], TurnOutcome]


def echo(_: Checkpoint, content: str | None) -> TurnOutcome:
    return TurnOutcome(text=f"echo: {content}" if content else "hello")


def asks_approval(state: Checkpoint, content: str | None) -> TurnOutcome:
    """Asks to run one tool the first time; once the call is decided, replies."""
    turn = state.turn
    if turn is not None and turn.decisions:
        verdict = "ran" if all(d.approved for d in turn.decisions.values()) else "denied"
        return TurnOutcome(text=f"refund {verdict}")
    call = ToolCall(call_id="call-1", tool="refund", args={}, needs_approval=True)
    return TurnOutcome(text="let me check", waiting=[call])


@dataclass
class Sim:
    agent: Agent = echo
    offered: bool = True
    greets: bool = False
    turn_attempts: int = 2
    command_attempts: int = 3
    now: datetime = T0
    crash_after: int | None = None
    """Events the worker stores before it dies (``None``: it never does)."""
    ck: Checkpoint | None = None
    seq: int = 0
    events: list[tuple[int, Event]] = field(default_factory=list)
    inputs: dict[int, Command] = field(default_factory=dict)

    @property
    def state(self) -> Checkpoint:
        assert self.ck is not None
        return self.ck

    # -- the stream ---------------------------------------------------------------------------

    def send(self, cmd: Command) -> int:
        self.seq += 1
        self.inputs[self.seq] = cmd
        return self.seq

    def store(self, event: Event) -> int:
        if self.crash_after is not None:
            if self.crash_after <= 0:
                raise Crash
            self.crash_after -= 1
        self.seq += 1
        eid = first_id(self.seq)  # a record of one event
        self.events.append((eid, event))
        self.ck = apply(self.ck, eid, event)
        return eid

    def create(self, **kw: object) -> CreateSession:
        kw.setdefault("issued_at", T0)
        cmd = CreateSession(session_id=SID, task_id=TASK, agent="echo", **kw)
        self.send(cmd)
        self.store(created_by(cmd, 0, 0))
        return cmd

    def message(self, content: str, **kw: object) -> int:
        return self.send(UserMessage(session_id=SID, task_id=TASK, content=content, **kw))

    # -- the worker ---------------------------------------------------------------------------

    def work(self) -> None:
        """Handle every stored input not yet done, in order (a half-done one first)."""
        if self.state.progress > self.state.input_cursor:
            self.handle(self.state.progress)
        while True:
            pending = sorted(s for s in self.inputs if s > self.state.input_cursor)
            if not pending:
                return
            self.handle(pending[0])

    def handle(self, seq: int) -> None:
        cmd = self.inputs[seq]
        ctx = CommandContext.of(cmd, self.state, seq)
        facts = Facts(
            resuming=self.state.progress == seq,
            agent_offered=self.offered,
            greets=self.greets,
            now=self.now,
        )
        try:
            self.carry_out(policy.decide(self.state, cmd, ctx, facts), cmd, ctx, facts)
        except Crash:
            raise
        except Exception as e:  # a bug in the rules: recorded, tried again, parked
            self.fail(ctx, cmd, f"{type(e).__name__}: {e}")

    def carry_out(
        self, decision: Decision, cmd: Command, ctx: CommandContext, facts: Facts
    ) -> None:
        while True:
            for event in decision.events:
                self.store(event)
            if isinstance(decision.then, Again):
                facts = replace(facts, resuming=decision.then.resuming, suspend_follows=False)
                decision = policy.decide(self.state, cmd, ctx, facts)
                continue
            if isinstance(decision.then, RunTurn):
                self.turn(ctx, cmd, decision.then)
            return

    def turn(self, ctx: CommandContext, cmd: Command, step: RunTurn) -> None:
        begun = policy.begin_turn(self.state, ctx, step.origin, self.turn_attempts)
        if isinstance(begun, Decision):
            for event in begun.events:
                self.store(event)
            return
        if isinstance(begun, policy.GiveUp):
            self.park(ctx, cmd, policy.Park(begun.attempts, begun.reason))
            return
        turn_id = f"turn-{self.seq + 1}"
        origin = step.origin if step.origin != ctx.input_seq else None
        self.store(policy.turn_started(self.state, ctx, turn_id, begun.attempt, "w1", origin))
        outcome = self.interrupted(self.agent(self.state, step.content))
        for event in policy.end_turn(self.state, ctx, turn_id, step.content, outcome, 1.0):
            self.store(event)

    def interrupted(self, outcome: TurnOutcome) -> TurnOutcome:
        """A command stored after the turn's command that stops a turn in flight (as the
        worker sees it arrive) stops this one."""
        turn = self.state.turn
        assert turn is not None
        for seq in sorted(s for s in self.inputs if s > turn.input_seq):
            cmd = self.inputs[seq]
            why = policy.interrupts(self.state, cmd, turn.command_id)
            if why is not None and outcome.waiting is None:
                return TurnOutcome(
                    outcome.text[:3], f"{why} by {cmd.command_id}", stopped_by=cmd.command_id
                )
        return outcome

    def fail(self, ctx: CommandContext, cmd: Command, error: str) -> None:
        match policy.failure(self.state, ctx, cmd.kind, error, self.command_attempts):
            case policy.Park() as park:
                self.park(ctx, cmd, park)
            case policy.Retry(event=event):
                self.store(event)

    def park(self, ctx: CommandContext, cmd: Command, park: policy.Park) -> None:
        assert ctx.input_seq is not None
        letter = dead_letter_id(SID, ctx.input_seq)
        for event in policy.parked(self.state, ctx, cmd.kind, letter, park):
            self.store(event)

    # -- reading ------------------------------------------------------------------------------

    def of(self, seq: int) -> list[Event]:
        """The events input ``seq`` caused."""
        return [e for _, e in self.events if e.input_seq == seq]

    def types(self, seq: int) -> list[str]:
        return [e.type for e in self.of(seq)]

    def final(self, seq: int) -> Event:
        [last] = [e for e in self.of(seq) if e.final]
        return last
