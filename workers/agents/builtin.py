"""The built-in agents: ``hello-world``, ``echo`` and ``synthetic`` (for benchmarks)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from praxis.workers.agents.base import Agent, TurnContext

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


def _bounded(metadata: Mapping[str, Any], key: str, default: float, top: float) -> float:
    value = metadata.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= top:
        raise ValueError(f"metadata {key!r} must be a number from 0 to {top:g}, not {value!r}")
    return float(value)


class Synthetic(Agent):
    """A stand-in for a language model, for benchmarks: it waits ``latency_ms`` before its
    first token, then streams ``tokens`` tokens at ``tokens_per_s`` (0: all at once), as
    the session's metadata says; with ``stamp``, each token carries the wall-clock time it
    left the agent (``t7@<ns>``: what a streaming benchmark measures delays from)."""

    name = "synthetic"
    listed = False  # for praxis bench: used by name, not offered to users
    description = (
        "A model stand-in for benchmarks: metadata latency_ms, tokens, tokens_per_s "
        "(default 0, 20, 0), stamp."
    )

    def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        latency = _bounded(ctx.metadata, "latency_ms", 0, 60_000) / 1000
        tokens = int(_bounded(ctx.metadata, "tokens", 20, 10_000))
        rate = _bounded(ctx.metadata, "tokens_per_s", 0, 1_000_000)
        return _synthetic(latency, tokens, rate, ctx.metadata.get("stamp") is True)


async def _synthetic(
    latency: float, tokens: int, rate: float, stamp: bool = False
) -> AsyncIterator[str]:
    if latency:
        await asyncio.sleep(latency)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(tokens):
        if rate and i:
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        yield f"t{i}@{time.time_ns()} " if stamp else f"t{i} "
