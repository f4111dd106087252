"""Sending commands: each is stored on the session's input subject (``sess.<id>.in``),
deduplicated by ``Nats-Msg-Id`` = ``<session>.<command id>``, and a repeat that differs
from what was stored under its id is refused. "Stored" is the promise: a stored command
will be answered."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from nats.js.api import PubAck
from nats.js.errors import APIError, KeyWrongLastSequenceError
from opentelemetry.trace import SpanKind

from praxis.bus import commit, direct, logs, subjects, tracing
from praxis.bus.client import fleet, reading, scope
from praxis.bus.client.base import ClientState, Receipt
from praxis.bus.connection import with_retry
from praxis.bus.errors import (
    MESSAGE_TOO_LARGE,
    CommandIdReusedError,
    IllegalTransitionError,
    MessageTooLargeError,
    PublishError,
    SessionExistsError,
    ToolCallNotWaitingError,
    UnknownAgentError,
    check_size,
)
from praxis.bus.state import first_command
from praxis.schemas import (
    ACCEPTS_MESSAGES,
    AddedMessage,
    AddMessages,
    CancelTurn,
    Command,
    CreateSession,
    DecideToolCall,
    DeleteResponse,
    DoubleTexting,
    Event,
    SessionCreated,
    SessionRecord,
    SessionState,
    UserMessage,
    check_token,
    decode_command,
    first_id,
    new_id,
)
from praxis.schemas.events import created_by
from praxis.schemas.fold import start as fold_start


async def create(
    c: ClientState,
    agent: str,
    *,
    task_id: str | None,
    metadata: dict[str, Any] | None,
    initial_message: str | None,
    session_id: str | None,
    command_id: str | None,
    idle_timeout: float | None,
    max_lifetime: float | None,
    double_texting: DoubleTexting,
    instructions: str | None = None,
) -> tuple[SessionRecord, Receipt]:
    check_token(agent, "agent name")
    if session_id is None:
        sid = c.bus.partitions.new_session_id()
    else:
        sid = check_token(session_id, "session id")
        c.bus.partition(sid)  # an id that names a partition this bus lacks: refused here
    tid = check_token(task_id, "task id") if task_id is not None else new_id("task")
    logs.about(sid, tid)
    known = await fleet.known_agents(c)
    if known and agent not in known:
        raise UnknownAgentError(agent, [name for name, a in known.items() if a.listed])
    await scope.check_quota(c)
    cmd = CreateSession(
        session_id=sid,
        task_id=tid,
        interface=c.interface,
        actor=c.actor,
        agent=agent,
        metadata=metadata or {},
        idle_timeout=idle_timeout,
        max_lifetime=max_lifetime,
        double_texting=double_texting,
        message=initial_message,
        instructions=instructions,
        owner=c.scope.owner if c.scope else None,
        **command_id_of(command_id),
    )
    # The command is the session: stored only if nothing was ever sent to this id
    # (fenced on the input subject), it is what a worker makes the session from. The
    # worker writes every event; until it has, readers see the session from this
    # command (bus.state), so the create is over once the command is stored.
    try:
        await store(c, cmd, new_session=True)
    except SessionExistsError:
        # Ours, if its first command has our id: a retry whose first try had landed
        # (the server checks the fence before it spots the repeated command id).
        stored = await first_command(c.bus, sid)
        if not isinstance(stored, CreateSession) or stored.command_id != cmd.command_id:
            raise
        cmd, tid = stored, stored.task_id
    c.caches.task_ids.put(sid, tid)
    created = _created(c, cmd)
    record = fold_start(created, 0).session
    # The index that listings read; the worker's own write wins a race.
    with contextlib.suppress(KeyWrongLastSequenceError):
        await c.bus.records_of(sid).create(sid, record.model_dump_json().encode())
    # With an initial message, the session's first turn answers it (no greeting): the
    # same as a create published on the bus with its ``message``.
    return record, Receipt(sid, cmd.command_id, 0)


def _created(c: ClientState, cmd: CreateSession) -> SessionCreated:
    settings = c.bus.settings
    return created_by(cmd, settings.session_idle_timeout, settings.session_max_lifetime)


async def send(
    c: ClientState,
    session_id: str,
    message: str,
    command_id: str | None,
    queue: bool,
    on_busy: DoubleTexting | None,
    instructions: str | None = None,
) -> Receipt:
    await scope.guard(c, session_id)
    head, tail = await reading.head(c, session_id)
    return await send_after(
        c, head, tail, message, command_id, queue, on_busy, instructions=instructions
    )


async def send_after(
    c: ClientState,
    head: Event,
    tail: int,
    message: str,
    command_id: str | None,
    queue: bool = False,
    on_busy: DoubleTexting | None = None,
    *,
    instructions: str | None = None,
) -> Receipt:
    """Store a user message, given the session's latest event (its state and tail)."""
    if head.state not in ACCEPTS_MESSAGES and not (queue and head.state is SessionState.SUSPENDED):
        raise IllegalTransitionError(
            head.session_id,
            "send a message to",
            head.state,
            f"session {head.session_id!r} is {head.state.value} and takes no messages"
            + (" (resume it first)" if head.state is SessionState.SUSPENDED else ""),
        )
    cmd = message_command(
        c,
        head.session_id,
        head.task_id,
        message,
        command_id,
        queue,
        on_busy,
        instructions=instructions,
    )
    ack = await store(c, cmd)
    # A repeat: what the first one caused may be stored already, after its own sequence.
    cursor = min(tail, first_id(int(ack.seq))) if ack.duplicate else tail
    return Receipt(head.session_id, cmd.command_id, cursor)


def message_command(
    c: ClientState,
    session_id: str,
    task_id: str,
    message: str,
    command_id: str | None,
    queue: bool = False,
    on_busy: DoubleTexting | None = None,
    *,
    instructions: str | None = None,
) -> UserMessage:
    return UserMessage(
        session_id=session_id,
        task_id=task_id,
        interface=c.interface,
        actor=c.actor,
        content=message,
        queue=queue,
        on_busy=on_busy,
        instructions=instructions,
        **command_id_of(command_id),
    )


async def cancel(c: ClientState, session_id: str) -> Receipt:
    await scope.guard(c, session_id)
    head, tail = await reading.head(c, session_id)
    cmd = CancelTurn(
        session_id=session_id, task_id=head.task_id, interface=c.interface, actor=c.actor
    )
    await store(c, cmd)
    return Receipt(session_id, cmd.command_id, tail)


async def add_messages(
    c: ClientState,
    session_id: str,
    messages: Sequence[tuple[str, str]],
    metadata: dict[str, Any] | None,
) -> Receipt:
    await scope.guard(c, session_id)
    head, tail = await reading.head(c, session_id)
    if head.state not in ACCEPTS_MESSAGES:
        raise IllegalTransitionError(session_id, "add messages to", head.state)
    cmd = AddMessages(
        session_id=session_id,
        task_id=head.task_id,
        interface=c.interface,
        actor=c.actor,
        messages=[AddedMessage.model_validate({"role": r, "content": t}) for r, t in messages],
        metadata=metadata,
    )
    await store(c, cmd)
    return Receipt(session_id, cmd.command_id, tail)


async def delete_response(c: ClientState, session_id: str, response_id: str) -> Receipt:
    await scope.guard(c, session_id)
    head, tail = await reading.head(c, session_id)
    cmd = DeleteResponse(
        session_id=session_id,
        task_id=head.task_id,
        interface=c.interface,
        actor=c.actor,
        response_id=response_id,
    )
    await store(c, cmd)
    return Receipt(session_id, cmd.command_id, tail)


async def decide(
    c: ClientState, session_id: str, call_id: str, approve: bool, reason: str | None
) -> Receipt:
    await scope.guard(c, session_id)
    ck, tail = await reading.checkpoint(c, session_id)
    state = ck.session.state
    if state is not SessionState.ACTIVE:
        verb = "approve" if approve else "deny"
        raise IllegalTransitionError(session_id, f"{verb} a tool call of", state)
    waiting = [w.call_id for w in ck.session.waiting_for]
    if call_id not in waiting:
        raise ToolCallNotWaitingError(session_id, call_id, waiting)
    cmd = DecideToolCall(
        session_id=session_id,
        task_id=ck.session.task_id,
        interface=c.interface,
        actor=c.actor,
        call_id=call_id,
        approve=approve,
        reason=reason,
    )
    await store(c, cmd)
    return Receipt(session_id, cmd.command_id, tail)


async def store(c: ClientState, cmd: Command, *, new_session: bool = False) -> PubAck:
    """Store a command (retried through leader changes); the server's acknowledgement
    holds its stream sequence and whether it repeats a command id already stored.

    ``new_session``: only if no command was ever stored for the session (else
    :class:`SessionExistsError`)."""
    payload = cmd.model_dump_json(exclude_none=True).encode()  # an unset field reads as None
    subject = subjects.inputs(cmd.session_id, c.bus.partition(cmd.session_id))
    headers = {"Nats-Msg-Id": subjects.command_msg_id(cmd.session_id, cmd.command_id)}
    if new_session:
        headers[commit.EXPECTED_LAST_SUBJECT_SEQ] = "0"
    check_size(payload, headers, c.bus.settings.max_message_bytes)
    attributes = {
        **tracing.session_attributes(cmd.session_id, cmd.task_id),
        "praxis.command_id": cmd.command_id,
    }
    try:
        with tracing.span(f"send {cmd.kind}", kind=SpanKind.PRODUCER, attributes=attributes):
            tracing.inject(headers)  # the worker continues this trace
            ack = await with_retry(
                lambda: c.bus.js.publish(subject, payload, headers=headers),
                what=f"publish {cmd.kind} to {cmd.session_id}",
                deadline=c.bus.settings.retry_window,
            )
    except PublishError as e:
        cause = e.__cause__
        if isinstance(cause, APIError) and cause.err_code == MESSAGE_TOO_LARGE:
            raise MessageTooLargeError(len(payload), None) from e  # the stream's own limit
        if isinstance(cause, APIError) and cause.err_code == commit.WRONG_LAST_SEQUENCE:
            raise SessionExistsError(cmd.session_id) from e
        raise
    if ack.duplicate:
        await _check_repeat(c, cmd, int(ack.seq))
    return ack


async def _check_repeat(c: ClientState, cmd: Command, seq: int) -> None:
    """A command id the session stored already (``seq``): a retry of the same command
    is fine (it is stored once), a different command under that id is refused."""
    stored = await direct.by_seq(c.bus.nc, c.bus.stream_of(cmd.session_id), seq, c.bus.timeout)
    if stored is None:
        return  # removed since (a purge): nothing left to differ from
    try:
        before = decode_command(stored.data)
    except ValueError:
        before = None
    if before is None or _what(before) != _what(cmd):
        raise CommandIdReusedError(cmd.session_id, cmd.command_id)


_CIRCUMSTANCES = {"issued_at", "interface", "actor", "reply_to"}
"""Fields that say when, where from and by whom a command was sent, not what it is: a
retry of a command may differ in them."""


def _what(cmd: Command) -> dict[str, Any]:
    return cmd.model_dump(mode="json", exclude=_CIRCUMSTANCES)


def command_id_of(command_id: str | None) -> dict[str, str]:
    """A caller's own command id (validated), or nothing: the model then makes one."""
    return {} if command_id is None else {"command_id": check_token(command_id, "command id")}
