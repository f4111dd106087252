"""The built-in agents: ``hello-world`` and ``echo``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from workers.agents.base import Agent, TurnContext

_PIECES = re.compile(r"\S+\s*|\s+")


async def stream_words(text: str) -> AsyncIterator[str]:
    """Yield ``text`` a word at a time (with its trailing space), as a model streams tokens."""
    for piece in _PIECES.findall(text):
        yield piece


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class HelloWorld(Agent):
    """Greets when the session starts and answers with awareness of the conversation."""

    name = "hello-world"
    description = "Greets you, then answers knowing how many messages you sent and what they said."

    def greet(self, ctx: TurnContext) -> AsyncIterator[str]:
        return stream_words("Hello! How can I help you today?")

    def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        message = ctx.message or ""
        earlier = [m.content for m in ctx.history if m.role == "user"]
        if not earlier:
            text = f'You said: "{message}". That is your first message in this session.'
        else:
            text = (
                f'You said: "{message}". That is your {_ordinal(ctx.user_messages)} message '
                f'in this session; before it you said: "{earlier[-1]}".'
            )
        return stream_words(text)


class Echo(Agent):
    """Replies with the user's text, streamed token by token."""

    name = "echo"
    description = "Repeats your message back, streamed a word at a time."

    def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        return stream_words(ctx.message or "")
