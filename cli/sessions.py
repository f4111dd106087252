"""``praxis agent``: start, resume, approve, list, show, suspend and complete sessions."""

from __future__ import annotations

import json
import sys
from typing import Annotated

from cyclopts import Parameter

from praxis.bus import IllegalTransitionError
from praxis.cli.chat import (
    chat,
    check,
    decide_calls,
    one_turn,
    show_greeting,
    show_recent,
    stays_open,
)
from praxis.cli.common import JsonFlag, parse_duration, parse_state
from praxis.cli.render import call_text, history_lines, print_turn, session_rows
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import runs, sessions
from praxis.cli.term import WARN, paint, table
from praxis.schemas import TERMINAL, DoubleTexting, SessionState

Instructions = Annotated[
    str | None,
    Parameter(
        help="With --message: instructions for that turn only (a model agent adds them to "
        "its system prompt)."
    ),
]


@runs("WARNING")
async def agent_run(
    agent: Annotated[str, Parameter(help="Agent name (see 'praxis agents').")],
    /,
    *,
    task_id: Annotated[
        str | None, Parameter(help="Task the session serves (default: new).")
    ] = None,
    message: Annotated[
        str | None, Parameter(help="Send one message, print the reply, exit.")
    ] = None,
    instructions: Instructions = None,
    idle_timeout: Annotated[
        str | None,
        Parameter(help="Expire after this long without activity (30m, 12h, 7d; 'never')."),
    ] = None,
    max_lifetime: Annotated[
        str | None, Parameter(help="Expire this long after creation, active or not.")
    ] = None,
    double_texting: Annotated[
        DoubleTexting,
        Parameter(
            help="A message sent while the agent is still answering: waits (enqueue), is "
            "refused (reject), stops the reply (interrupt) or also discards it (rollback)."
        ),
    ] = "enqueue",
) -> None:
    """The ``praxis agent run`` command (its help text: :mod:`praxis.cli.app`)."""
    _instructions_need_a_message(instructions, message)
    idle = parse_duration(idle_timeout).total_seconds() if idle_timeout else None
    life = parse_duration(max_lifetime).total_seconds() if max_lifetime else None
    async with sessions(_settings()) as client:
        # A message goes with the create, in one command: the session's first turn answers
        # it (no greeting), and it is stored whether or not a worker is running now.
        record, receipt = await client.create(
            agent,
            task_id=task_id,
            idle_timeout=idle,
            max_lifetime=life,
            double_texting=double_texting,
            initial_message=message,
            instructions=instructions,
        )
        print(f"Session created: {record.session_id}", file=sys.stderr)
        print(f"Task: {record.task_id}", file=sys.stderr)
        async with stays_open(client, record.session_id):
            if message is not None:
                check(await print_turn(client.follow(receipt), sys.stdout, ""), record.session_id)
                return
            await show_greeting(client, receipt)
            await chat(client, record.session_id)


@runs("WARNING")
async def agent_resume(
    session_id: Annotated[str, Parameter(name="ID", help="Session id.")],
    /,
    *,
    message: Annotated[
        str | None, Parameter(help="Send one message, print the reply, exit.")
    ] = None,
    instructions: Instructions = None,
    last: Annotated[int, Parameter(help="How many earlier messages to show (0: none).")] = 10,
) -> None:
    """The ``praxis agent resume`` command (its help text: :mod:`praxis.cli.app`)."""
    _instructions_need_a_message(instructions, message)
    if last < 0:
        raise ValueError(f"--last takes 0 or more messages, not {last}")
    async with sessions(_settings()) as client:
        record = await client.get(session_id)
        if record.state in TERMINAL:
            raise ValueError(f"session {session_id} is {record.state.value} and cannot be resumed")
        if record.state is SessionState.SUSPENDED:
            try:
                await client.resume(session_id)
            except IllegalTransitionError as e:
                if e.state is not SessionState.ACTIVE:  # resumed meanwhile: fine
                    raise
        print(f"Resuming session {session_id} ({record.agent})", file=sys.stderr)
        await show_recent(client, session_id, last, err=message is not None)
        async with stays_open(client, session_id):
            if message is not None:
                await one_turn(client, session_id, message, instructions)
            else:
                await chat(client, session_id)


def _instructions_need_a_message(instructions: str | None, message: str | None) -> None:
    if instructions is not None and message is None:
        raise ValueError("--instructions goes with --message (they are for that turn)")
    if instructions == "":
        raise ValueError("--instructions is empty")


@runs("WARNING")
async def agent_approve(
    session_id: Annotated[str, Parameter(name="ID", help="Session id.")],
    call_ids: Annotated[
        list[str] | None,
        Parameter(name="CALL", help="Tool call id(s) (default: every call waiting)."),
    ] = None,
    /,
    *,
    deny: Annotated[bool, Parameter(help="Refuse instead: the tool does not run.")] = False,
    reason: Annotated[
        str | None, Parameter(help="Why (a denial's reason is told to the model).")
    ] = None,
) -> None:
    """The ``praxis agent approve`` command (its help text: :mod:`praxis.cli.app`)."""
    async with sessions(_settings()) as client:
        outcome = await decide_calls(
            client, session_id, list(call_ids or []), approve=not deny, reason=reason
        )
        check(outcome, session_id)


@runs("WARNING")
async def agent_list_sessions(
    *,
    state: Annotated[
        str | None, Parameter(help="CREATED, ACTIVE, SUSPENDED, COMPLETED, FAILED or EXPIRED.")
    ] = None,
    agent: Annotated[str | None, Parameter(help="Only sessions of this agent.")] = None,
    task_id: Annotated[str | None, Parameter(help="Only sessions of this task.")] = None,
    limit: Annotated[int, Parameter(help="At most this many (newest first).")] = 100,
    json_: JsonFlag = False,
) -> None:
    """The ``praxis agent list-sessions`` command (its help text: :mod:`praxis.cli.app`)."""
    async with sessions(_settings(), with_worker=False) as client:
        page = await client.list_sessions(
            state=parse_state(state), agent=agent, task_id=task_id, limit=limit
        )
        if json_:
            print(json.dumps([r.model_dump(mode="json") for r in page.items], indent=2))
        elif page.items:
            table(session_rows(page.items))
        else:
            print("No sessions.", file=sys.stderr)


@runs("WARNING")
async def agent_show_session(
    session_id: Annotated[str, Parameter(name="ID", help="Session id.")],
    /,
    *,
    json_: JsonFlag = False,
) -> None:
    """The ``praxis agent show-session`` command (its help text: :mod:`praxis.cli.app`)."""
    async with sessions(_settings(), with_worker=False) as client:
        record = await client.get(session_id)
        history = await client.history(session_id)
        if json_:
            data = record.model_dump(mode="json")
            data["history"] = [h.model_dump(mode="json") for h in history]
            print(json.dumps(data, indent=2))
            return
        c = record.counters
        print(f"Session:  {record.session_id}")
        print(f"Task:     {record.task_id}")
        print(f"Agent:    {record.agent}")
        print(f"State:    {record.state.value}")
        print(f"Created:  {record.created_at.isoformat()} (from {record.created_by.value})")
        print(f"Updated:  {record.updated_at.isoformat()}")
        print(f"Turns:    {c.turns} completed, {c.failed_turns} failed")
        if record.expires_at is not None:
            print(f"Expires:  {record.expires_at.isoformat()} unless there is activity")
        if record.metadata:
            print(f"Metadata: {json.dumps(record.metadata)}")
        for call in record.waiting_for:
            waiting = f"{call_text(call)} (call {call.call_id}) for approval"
            print(f"Waiting:  {paint(waiting, WARN, sys.stdout)}")
        print()
        for line in history_lines(history, sys.stdout):
            print(line)


@runs("WARNING")
async def _lifecycle(session_id: str, action: str) -> None:
    async with sessions(_settings()) as client:
        method = getattr(client, action)
        record = await method(session_id)
        print(f"Session {session_id} is {record.state.value}")


def agent_suspend(session_id: Annotated[str, Parameter(name="ID")], /) -> int:
    """The ``praxis agent suspend`` command (its help text: :mod:`praxis.cli.app`)."""
    return _lifecycle(session_id, "suspend")


def agent_complete(session_id: Annotated[str, Parameter(name="ID")], /) -> int:
    """The ``praxis agent complete`` command (its help text: :mod:`praxis.cli.app`)."""
    return _lifecycle(session_id, "complete")
