"""Talking to an agent from the terminal: one message, or an interactive chat."""

from __future__ import annotations

import asyncio
import sys

from bus import Receipt, SessionClient
from cli.render import history_lines, print_turn
from schemas import SessionState

PROMPT = "You: "
QUIT = {"/exit", "/quit"}


class TurnError(Exception):
    """The agent's turn failed or the command was refused (message for the user)."""


async def one_turn(client: SessionClient, session_id: str, message: str) -> None:
    """Send ``message`` and print the reply on stdout."""
    outcome = await print_turn(client.turn(session_id, message), sys.stdout, "")
    if outcome.failure:
        raise TurnError(outcome.failure)


async def show_greeting(client: SessionClient, receipt: Receipt) -> None:
    outcome = await print_turn(client.follow(receipt), sys.stdout, "Agent: ")
    if outcome.failure:
        raise TurnError(outcome.failure)


async def chat(client: SessionClient, session_id: str) -> None:
    """Read lines from the terminal until end of input, /exit or Ctrl-C."""
    while True:
        try:
            line = await asyncio.to_thread(input, PROMPT)
        except EOFError:
            print(file=sys.stderr)
            break
        text = line.strip()
        if not text:
            continue
        if text in QUIT:
            break
        outcome = await print_turn(client.turn(session_id, text), sys.stdout, "Agent: ")
        if outcome.failure:
            print(f"praxis: {outcome.failure}", file=sys.stderr)
    record = await client.get(session_id)
    if record.state is SessionState.ACTIVE:
        print(
            f"Session {session_id} stays open; continue it with: praxis agent resume {session_id}",
            file=sys.stderr,
        )


async def show_recent(client: SessionClient, session_id: str, limit: int, err: bool) -> None:
    """The last ``limit`` messages (read from the end: as fast for a long history)."""
    shown, more = await client.history_page(session_id, limit=max(limit, 1))
    out = sys.stderr if err else sys.stdout
    if not shown:
        return
    if more:
        print("... earlier messages: praxis agent show-session", session_id, file=out)
    for line in history_lines(shown):
        print(line, file=out)
