"""The rules for each command: create, message (double texting), transitions, cancel,
expiry, tool-call decisions; and the events several rules share."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from praxis.schemas import (
    ACCEPTS_MESSAGES,
    TERMINAL,
    AddMessages,
    AgentMessage,
    CancelTurn,
    Checkpoint,
    Command,
    CommandRejected,
    CommandSkipped,
    Complete,
    CreateSession,
    DecideToolCall,
    DeleteResponse,
    Event,
    Expire,
    Interface,
    MessageQueued,
    MetadataChanged,
    QueuedMessage,
    ResponseDeleted,
    Resume,
    SessionState,
    StateChanged,
    Suspend,
    ToolDecided,
    TurnFailed,
    TurnRolledBack,
    UserMessage,
    UserMessageAccepted,
    can_transition,
    first_id,
)
from praxis.workers.session.policy.decision import (
    EXPIRY_SLACK,
    Again,
    CommandContext,
    Decision,
    Facts,
    RunTurn,
)

# -- the commands --------------------------------------------------------------------------


def decide(state: Checkpoint, cmd: Command, ctx: CommandContext, facts: Facts) -> Decision:
    """What handling ``cmd`` (at ``ctx.input_seq``) does in ``state``."""
    if not facts.resuming and cmd.command_id in state.recent_commands:
        return skip(state, ctx, cmd.kind, "repeat of a command already handled")
    match cmd:
        case CreateSession():
            return _create(state, cmd, ctx, facts)
        case UserMessage():
            return _message(state, cmd, ctx, facts)
        case Suspend() | Resume() | Complete():
            return _transition_by(state, cmd, ctx)
        case CancelTurn():
            return _cancel(state, cmd, ctx)
        case Expire():
            return _expire(state, cmd, ctx, facts)
        case DecideToolCall():
            return _decide_tool(state, cmd, ctx, facts)
        case AddMessages():
            return _add(state, cmd, ctx)
        case DeleteResponse():
            return _delete_response(state, cmd, ctx)
    raise TypeError(f"no rule for {type(cmd).__name__}")  # pragma: no cover


def _create(state: Checkpoint, cmd: CreateSession, ctx: CommandContext, facts: Facts) -> Decision:
    """Start the session: the agent's greeting, if it has one, or the answer to the
    create's own first message (a whole turn in one command, for pipelines)."""
    seq = _seq(ctx)
    events: list[Event] = []
    if not facts.resuming:
        if state.session.state is not SessionState.CREATED:
            return reject(state, ctx, cmd.kind, "session already exists")
        if not facts.agent_offered:
            reason = f"agent {state.session.agent!r} is not available here"
            return Decision(transition(state, ctx, SessionState.FAILED, True, reason))
        turn = cmd.message is not None or facts.greets
        events += transition(state, ctx, SessionState.ACTIVE, not turn, "started")
        if not turn:
            return Decision(tuple(events))
    if cmd.message is None:
        return Decision(tuple(events), RunTurn(seq, None))
    if state.last_user is None or state.last_user[0] != seq:
        after = SessionState.ACTIVE if events else state.session.state
        events.append(
            UserMessageAccepted(
                **ctx.meta(after), content=cmd.message, instructions=cmd.instructions
            )
        )
    return Decision(tuple(events), RunTurn(seq, cmd.message), refuse_if_too_large=True)


def _message(state: Checkpoint, cmd: UserMessage, ctx: CommandContext, facts: Facts) -> Decision:
    seq = _seq(ctx)
    if facts.resuming:
        return Decision((), RunTurn(seq, cmd.content))
    current = state.session.state
    if facts.suspend_follows:
        # A suspend was sent after this message: it takes effect first, and this message
        # waits for the resume (in order, under its own command id).
        return Decision((_queued(ctx, current, cmd),))
    way = cmd.on_busy or state.session.double_texting
    if is_waiting(state):
        return _while_waiting(state, cmd, ctx, way)
    events: list[Event] = []
    busy = came_while_busy(state, seq)
    if busy and way == "reject":
        reason = "the session was busy with an earlier message (double texting: reject)"
        return reject(state, ctx, cmd.kind, reason)
    last = state.last_turn
    if busy and way == "rollback" and last is not None:
        events.append(
            TurnRolledBack(
                **ctx.meta(current),
                turn_id=last.turn_id,
                from_seq=last.start_seq,
                to_seq=last.end_seq,
            )
        )
    if current is SessionState.SUSPENDED and cmd.queue:
        return Decision((*events, _queued(ctx, current, cmd)))
    if current not in ACCEPTS_MESSAGES:
        refused = reject(state, ctx, cmd.kind, f"session is {current.value} and takes no messages")
        return Decision((*events, *refused.events))
    if current is SessionState.CREATED:
        events += transition(state, ctx, SessionState.ACTIVE, False, None)
        current = SessionState.ACTIVE
    events.append(
        UserMessageAccepted(**ctx.meta(current), content=cmd.content, instructions=cmd.instructions)
    )
    return Decision(tuple(events), RunTurn(seq, cmd.content), refuse_if_too_large=True)


def _while_waiting(state: Checkpoint, cmd: UserMessage, ctx: CommandContext, way: str) -> Decision:
    """A message while a turn waits for approval: kept until the turn ends (enqueue),
    refused (reject), or it ends the waiting turn (interrupt, rollback) and is then taken
    like any message that came while busy."""
    turn = state.turn
    assert turn is not None
    tools = ", ".join(c.tool for c in turn.pending) or "tool calls"
    if way == "reject":
        reason = f"the session is waiting for approval of {tools} (double texting: reject)"
        return reject(state, ctx, cmd.kind, reason)
    if way == "enqueue":
        return Decision((_queued(ctx, state.session.state, cmd),))
    why = f"a newer message came while waiting for {tools}"
    return Decision(end_waiting(state, ctx, why), Again(resuming=False))


def _decide_tool(
    state: Checkpoint, cmd: DecideToolCall, ctx: CommandContext, facts: Facts
) -> Decision:
    turn = state.turn
    if facts.resuming:
        if turn is None:
            return skip(state, ctx, cmd.kind, "the turn it was for has ended")
        return Decision((), RunTurn(turn.input_seq, turn.message))
    current = state.session.state
    if current is not SessionState.ACTIVE:
        return reject(state, ctx, cmd.kind, f"session is {current.value}: resume it first")
    if turn is None or not turn.waiting:
        return reject(state, ctx, cmd.kind, "no tool call is waiting for approval")
    call = next((c for c in turn.waiting if c.call_id == cmd.call_id), None)
    if call is None:
        waiting = ", ".join(c.call_id for c in turn.pending)
        reason = f"no tool call {cmd.call_id!r} waits for approval (waiting: {waiting})"
        return reject(state, ctx, cmd.kind, reason)
    if cmd.call_id in turn.decisions:
        verb = "approved" if turn.decisions[cmd.call_id].approved else "denied"
        return reject(state, ctx, cmd.kind, f"tool call {cmd.call_id!r} was already {verb}")
    last = len(turn.pending) == 1
    decided = ToolDecided(
        **ctx.meta(current),
        final=not last,
        call_id=cmd.call_id,
        tool=call.tool,
        approved=cmd.approve,
        reason=cmd.reason,
    )
    # The turn goes on once every call it waits on is decided.
    return Decision((decided,), Again(resuming=True) if last else None)


_TARGETS = {
    Suspend: SessionState.SUSPENDED,
    Resume: SessionState.ACTIVE,
    Complete: SessionState.COMPLETED,
}


def _transition_by(
    state: Checkpoint, cmd: Suspend | Resume | Complete, ctx: CommandContext
) -> Decision:
    target = _TARGETS[type(cmd)]
    current = state.session.state
    if not can_transition(current, target):
        return reject(state, ctx, cmd.kind, f"cannot {cmd.kind} a session that is {current.value}")
    reason = cmd.reason if isinstance(cmd, Suspend | Complete) else None
    return Decision(transition(state, ctx, target, True, reason))


def _add(state: Checkpoint, cmd: AddMessages, ctx: CommandContext) -> Decision:
    """Messages into the history as they are, without a turn, and/or new metadata: in a
    session that takes messages and has no turn waiting for approval (one in flight
    finished before this command was taken: commands are taken in order)."""
    current = state.session.state
    if current not in ACCEPTS_MESSAGES:
        return reject(state, ctx, cmd.kind, f"session is {current.value} and takes no messages")
    if is_waiting(state):
        reason = "a turn waits for a tool call's approval: decide it, or cancel the turn"
        return reject(state, ctx, cmd.kind, reason)
    if not cmd.messages and cmd.metadata is None:
        return skip(state, ctx, cmd.kind, "nothing to add")
    events: list[Event] = []
    if current is SessionState.CREATED:
        events += transition(state, ctx, SessionState.ACTIVE, False, None)
        current = SessionState.ACTIVE
    meta = ctx.meta(current)
    seq = _seq(ctx)
    for i, m in enumerate(cmd.messages):
        if m.role == "user":
            events.append(UserMessageAccepted(**meta, content=m.content))
        else:
            events.append(AgentMessage(**meta, turn_id=f"added_{seq}_{i}", content=m.content))
    if cmd.metadata is not None:
        events.append(MetadataChanged(**meta, metadata=cmd.metadata))
    last = events[-1].model_copy(update={"final": True})
    return Decision((*events[:-1], last))


def _delete_response(state: Checkpoint, cmd: DeleteResponse, ctx: CommandContext) -> Decision:
    """Recorded in any state (an ended session's responses can be deleted too); it changes
    nothing else: the turn stays in the history and the agent's context."""
    deleted = ResponseDeleted(
        **ctx.meta(state.session.state), final=True, response_id=cmd.response_id
    )
    return Decision((deleted,))


def _cancel(state: Checkpoint, cmd: CancelTurn, ctx: CommandContext) -> Decision:
    if is_waiting(state):
        return Decision(end_waiting(state, ctx, f"cancelled by {cmd.command_id}", final=True))
    # A cancel acts on the turn in flight as it arrives (interrupts); taken in order, after
    # that turn, there is nothing left to cancel.
    return skip(state, ctx, cmd.kind, "no turn in flight when the cancel was taken in order")


def _expire(state: Checkpoint, cmd: Expire, ctx: CommandContext, facts: Facts) -> Decision:
    record = state.session
    if record.state in TERMINAL:
        return skip(state, ctx, cmd.kind, f"the session already ended ({record.state.value})")
    due = record.expires_at
    assert facts.now is not None, "an expiry is decided at a time"
    if due is None or facts.now < due - timedelta(seconds=EXPIRY_SLACK):
        return skip(state, ctx, cmd.kind, "not due: there was activity after the timer was set")
    lifetime = record.created_at + timedelta(seconds=record.max_lifetime)
    if record.max_lifetime > 0 and lifetime <= due:
        detail = f"its lifetime of {span(record.max_lifetime)} ended"
    else:
        detail = f"idle for {span(record.idle_timeout)}"
    return Decision(transition(state, ctx, SessionState.EXPIRED, True, "expired", detail))


# -- events many rules share ----------------------------------------------------------------


def transition(
    state: Checkpoint,
    ctx: CommandContext,
    target: SessionState,
    final: bool,
    reason: str | None,
    detail: str | None = None,
) -> tuple[Event, ...]:
    """The events of a change of state (a turn waiting for approval ends first if the
    session ends)."""
    events: list[Event] = []
    if target in TERMINAL and is_waiting(state):
        why = f"the session ended ({target.value}) while waiting for approval"
        events += end_waiting(state, ctx, why)
    changed = StateChanged(
        **ctx.meta(target),
        final=final,
        from_state=state.session.state,
        to_state=target,
        reason=reason,
        detail=detail,
    )
    return (*events, changed)


def end_waiting(
    state: Checkpoint, ctx: CommandContext, why: str, *, final: bool = False
) -> tuple[Event, ...]:
    """End the turn that waits for approval (its text so far is kept, interrupted)."""
    turn = state.turn
    assert turn is not None
    meta = ctx.meta(state.session.state)
    events: list[Event] = []
    if turn.text and not turn.replied:  # stored already if a worker died after it
        events.append(
            AgentMessage(**meta, turn_id=turn.turn_id, content=turn.text, interrupted=True)
        )
    events.append(
        TurnFailed(
            **meta,
            turn_id=turn.turn_id,
            reason=f"interrupted: {why}",
            cancelled=True,
            cancelled_by=ctx.command_id,
            final=final,
        )
    )
    return tuple(events)


def reject(state: Checkpoint, ctx: CommandContext, kind: str, reason: str) -> Decision:
    """Refuse the command: one event, no other effect."""
    meta = ctx.meta(state.session.state)
    return Decision((CommandRejected(**meta, final=True, command_kind=kind, reason=reason),))


def skip(state: Checkpoint, ctx: CommandContext, kind: str, reason: str) -> Decision:
    """Pass over the command (it has nothing left to do): one event, no other effect."""
    meta = ctx.meta(state.session.state)
    return Decision((CommandSkipped(**meta, final=True, command_kind=kind, reason=reason),))


def invalid(state: Checkpoint, ctx: CommandContext, reason: str) -> Decision:
    """A command that cannot be read (or is not for this session): refused as ``invalid``."""
    ctx = replace(ctx, interface=Interface.BUS, actor=None)
    return reject(state, ctx, "invalid", f"invalid command: {reason}")


def too_large(state: Checkpoint, ctx: CommandContext, kind: str, error: Exception) -> Decision:
    return reject(state, ctx, kind, f"the message is too large to store ({error})")


def _queued(ctx: CommandContext, state: SessionState, cmd: UserMessage) -> MessageQueued:
    return MessageQueued(
        **ctx.meta(state), final=True, content=cmd.content, instructions=cmd.instructions
    )


def _seq(ctx: CommandContext) -> int:
    assert ctx.input_seq is not None, "a command is decided at its input sequence"
    return ctx.input_seq


# -- questions about the state ------------------------------------------------------------


def is_waiting(state: Checkpoint) -> bool:
    """A turn is paused, waiting for approval of its tool calls."""
    turn = state.turn
    return turn is not None and bool(turn.waiting)


def came_while_busy(state: Checkpoint, seq: int) -> bool:
    """Whether the message at ``seq`` was stored before the session's latest turn ended
    (it came while an earlier message was being answered, or was waiting to be)."""
    last = state.last_turn
    return last is not None and first_id(seq) < last.end_seq


def next_queued(state: Checkpoint, suspending: bool) -> QueuedMessage | None:
    """The message kept while suspended to answer now, oldest first: only while the
    session is active, no turn waits for approval and no suspend is on its way."""
    if (
        state.queued
        and state.session.state is SessionState.ACTIVE
        and not is_waiting(state)
        and not suspending
    ):
        return state.queued[0]
    return None


def answer_queued(state: Checkpoint, item: QueuedMessage) -> tuple[CommandContext, Decision]:
    """Answer a kept message under its own command id (accepted first, unless it was)."""
    ctx = CommandContext(
        state.session.session_id,
        state.session.task_id,
        item.command_id,
        item.interface,
        item.actor,
        item.seq,
    )
    events: tuple[Event, ...] = ()
    if not item.accepted:
        accepted = UserMessageAccepted(
            **ctx.meta(state.session.state), content=item.content, instructions=item.instructions
        )
        events = (accepted,)
    return ctx, Decision(events, RunTurn(item.seq, item.content))


def interrupts(state: Checkpoint, cmd: Command, turn_command: str | None) -> str | None:
    """A command seen as it arrives, while a turn is in flight: the reason it stops that
    turn now (at its next token), or ``None``. A cancel stops it; a suspend does (the
    partial reply is kept, the suspend then taken in order); a newer message does when
    the session's double texting says so (not the turn's own command, sent again)."""
    if isinstance(cmd, CancelTurn):
        return "cancelled"
    if isinstance(cmd, Suspend) and can_transition(state.session.state, SessionState.SUSPENDED):
        return "interrupted: the session was suspended"
    if isinstance(cmd, UserMessage) and cmd.command_id != turn_command:
        way = cmd.on_busy or state.session.double_texting
        if way == "interrupt":
            return "interrupted: superseded"
        if way == "rollback":
            return "rolled back: superseded"
    return None


def span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
