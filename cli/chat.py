"""Talking to an agent from the terminal: one message, or an interactive chat."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator

from praxis.bus import BusError, Receipt, SessionNotFoundError
from praxis.cli.remote import Sessions
from praxis.cli.render import TurnOutcome, call_text, history_lines, print_turn
from praxis.cli.term import ERROR, USER, WARN, paint
from praxis.schemas import TERMINAL, ToolCall

PROMPT = "You: "
QUIT = {"/exit", "/quit"}


WAITING = 3
"""Exit status of a one-message command whose turn waits for a human's approval."""


class TurnError(Exception):
    """The agent's turn failed or the command was refused (message for the user)."""


class WaitingForApproval(Exception):
    def __init__(self, session_id: str, calls: list[ToolCall]) -> None:
        listed = ", ".join(f"{call_text(c)} (call {c.call_id})" for c in calls)
        first = calls[0].call_id if calls else "CALL"
        super().__init__(
            f"the agent waits for approval of {listed}: "
            f"praxis agent approve {session_id} {first} (add --deny to refuse)"
        )


def check(outcome: TurnOutcome, session_id: str) -> TurnOutcome:
    if outcome.failure:
        raise TurnError(outcome.failure)
    if outcome.waiting:
        raise WaitingForApproval(session_id, outcome.waiting)
    return outcome


async def one_turn(
    client: Sessions, session_id: str, message: str, instructions: str | None = None
) -> None:
    """Send ``message`` and print the reply on stdout."""
    turn = client.turn(session_id, message, instructions=instructions)
    check(await print_turn(turn, sys.stdout, ""), session_id)


async def decide_calls(
    client: Sessions,
    session_id: str,
    call_ids: list[str],
    *,
    approve: bool,
    reason: str | None,
    prefix: str = "",
) -> TurnOutcome:
    """Decide the calls (all those waiting, if none are named); print the rest of the turn
    once the last one is decided."""
    if not call_ids:
        call_ids = [c.call_id for c in (await client.get(session_id)).waiting_for]
        if not call_ids:
            raise ValueError(f"session {session_id} has no tool call waiting for approval")
    receipt = None
    for call_id in call_ids:
        receipt = await client.decide(session_id, call_id, approve=approve, reason=reason)
    assert receipt is not None
    return await print_turn(client.follow(receipt), sys.stdout, prefix)


async def ask_approvals(client: Sessions, session_id: str, outcome: TurnOutcome) -> TurnOutcome:
    """In a chat: ask about each call the turn waits on, then show the rest of the turn
    (which may wait again)."""
    while outcome.waiting and not outcome.failure:
        receipt = None
        for call in outcome.waiting:
            question = paint(f"Allow {call_text(call)}? [y/N]", WARN, sys.stdout)
            answer = await read_line(question + " ")
            text = answer.strip()
            approve = text.lower() in ("y", "yes")
            reason = None if approve or text.lower() in ("", "n", "no") else text
            receipt = await client.decide(session_id, call.call_id, approve=approve, reason=reason)
        assert receipt is not None
        outcome = await print_turn(client.follow(receipt), sys.stdout, "Agent: ", sys.stderr)
    return outcome


async def show_greeting(client: Sessions, receipt: Receipt) -> None:
    outcome = await print_turn(client.follow(receipt), sys.stdout, "Agent: ")
    if outcome.failure:
        raise TurnError(outcome.failure)


async def read_line(prompt: str) -> str:
    """``input(prompt)`` without blocking the event loop, in a thread of its own that does
    not hold the process: Ctrl-C (this task cancelled) ends the wait at once, where a
    thread of the loop's executor would keep the process until Enter."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    def settle(line: str | None, error: BaseException | None) -> None:
        if done.done():  # cancelled meanwhile
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(line or "")

    def read() -> None:
        try:
            line = input(prompt)
        except BaseException as e:  # EOFError above all; given to the waiting task
            loop.call_soon_threadsafe(settle, None, e)
        else:
            loop.call_soon_threadsafe(settle, line, None)

    threading.Thread(target=read, name="praxis-input", daemon=True).start()
    return await done


@contextlib.asynccontextmanager
async def stays_open(client: Sessions, session_id: str) -> AsyncIterator[None]:
    """Talking to a session that exists: however it ends — Ctrl-C (which ends it at once,
    a turn in flight included), an error (the turn failed, no worker answered, the edge
    went away) — say how to continue it, unless the session has ended."""
    try:
        yield
    except asyncio.CancelledError:  # Ctrl-C
        print(file=sys.stderr)
        if hint := await _hint_soon(client, session_id):
            print(hint, file=sys.stderr)
        raise
    except (BusError, TurnError) as e:
        if hint := await _hint_soon(client, session_id):
            e.add_note(hint)  # printed after the error's own line (cli.common.report)
        raise


async def _hint_soon(client: Sessions, session_id: str) -> str | None:
    """:func:`resume_hint`, unless it cannot be had within two seconds."""
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(resume_hint(client, session_id), 2)
    return None


async def chat(client: Sessions, session_id: str) -> None:
    """Read lines from the terminal until end of input or /exit; then say how to continue."""
    await _chat(client, session_id)
    hint = await resume_hint(client, session_id)
    if hint:
        print(hint, file=sys.stderr)


async def _chat(client: Sessions, session_id: str) -> None:
    waiting = (await client.get(session_id)).waiting_for
    if waiting:  # a turn left waiting for approval: ask first
        outcome = await ask_approvals(client, session_id, TurnOutcome(waiting=waiting))
        if outcome.failure:
            print(paint(f"praxis: {outcome.failure}", ERROR, sys.stderr), file=sys.stderr)
    while True:
        try:
            line = await read_line(paint(PROMPT, USER, sys.stdout))
        except EOFError:
            print(file=sys.stderr)
            break
        text = line.strip()
        if not text:
            continue
        if text in QUIT:
            break
        turn = client.turn(session_id, text)
        outcome = await print_turn(turn, sys.stdout, "Agent: ", sys.stderr)
        outcome = await ask_approvals(client, session_id, outcome)
        if outcome.failure:
            print(paint(f"praxis: {outcome.failure}", ERROR, sys.stderr), file=sys.stderr)


async def resume_hint(client: Sessions, session_id: str) -> str | None:
    """How to continue the session, unless it has ended (or is not there: purged)."""
    try:
        record = await client.get(session_id)
    except SessionNotFoundError:
        return None
    except BusError:  # cannot be asked now: it was open a moment ago
        record = None
    if record is not None and record.state in TERMINAL:
        return None
    return f"Session {session_id} stays open; continue it with: praxis agent resume {session_id}"


async def show_recent(client: Sessions, session_id: str, limit: int, err: bool) -> None:
    """The last ``limit`` messages (read from the end: as fast for a long history)."""
    if limit <= 0:
        return
    shown, more = await client.history(session_id, limit=limit, more=True)
    out = sys.stderr if err else sys.stdout
    if not shown:
        return
    if more:
        print("... earlier messages: praxis agent show-session", session_id, file=out)
    for line in history_lines(shown, out):
        print(line, file=out)
