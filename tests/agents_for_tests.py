"""Agents used by the tests (loaded through PRAXIS_AGENTS, as a user's would be)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from pydantic_ai import RunContext

from praxis.workers.agents import Agent, AgentDefinition, TurnContext
from praxis.workers.agents.model import ToolContext, idempotency_key


class Slow(Agent):
    """Streams ``pieces`` words, ``delay`` seconds apart (from the session's metadata)."""

    name = "slow"
    description = "test agent: a slow stream"

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        pieces = int(ctx.metadata.get("pieces", 20))
        delay = float(ctx.metadata.get("delay", 0.05))
        for i in range(pieces):
            await asyncio.sleep(delay)
            yield f"w{i} "


class Drawl(Agent):
    """The slow stream with no metadata to give (for the CLI): 40 words, 0.1 s apart."""

    name = "drawl"
    description = "test agent: a slow stream, 4 s"

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        for i in range(40):
            await asyncio.sleep(0.1)
            yield f"w{i} "


class Boom(Agent):
    """Fails after two pieces; with ``fail_greeting`` in its metadata, asking it for a
    greeting raises at once (before any stream exists)."""

    name = "boom"
    description = "test agent: raises"

    def greet(self, ctx: TurnContext) -> AsyncIterator[str] | None:
        if ctx.metadata.get("fail_greeting"):
            raise RuntimeError("the greeting broke")
        return None

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        yield "partial "
        yield "text "
        raise RuntimeError("the model fell over")


class Hang(Agent):
    """Never answers a message that says "hang" (a model that went silent); echoes others."""

    name = "hang"
    description = "test agent: hangs"

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        if ctx.message and "hang" in ctx.message:
            await asyncio.Event().wait()
        yield ctx.message or ""


class Crash(Agent):
    """Kills its worker process in the middle of a reply to a message that says "crash"
    (a native library crashing, the kernel's OOM killer); echoes others."""

    name = "crash"
    description = "test agent: kills its worker"

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        yield "about to "
        if ctx.message and "crash" in ctx.message:
            os._exit(17)
        yield ctx.message or ""


class Recall(Agent):
    """Says what it sees of the conversation: the earlier messages and the summary of
    older ones (it keeps at most 4 messages), and its turn's instructions if any."""

    name = "recall"
    description = "test agent: reports its context"
    context_messages = 4

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        seen: dict[str, Any] = {"seen": [m.content for m in ctx.history], "summary": ctx.summary}
        if ctx.instructions is not None:
            seen["instructions"] = ctx.instructions
        yield json.dumps(seen)


# -- tools for model agents (listed in their definitions as tests.agents_for_tests:NAME) ---

TOOL_CALLS: list[dict[str, str]] = []
"""Every call of the tools below made in this process (a worker process writes them to the
file named by PRAXIS_TEST_TOOL_LOG instead)."""


def _note(call: dict[str, str]) -> None:
    path = os.environ.get("PRAXIS_TEST_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(call) + "\n")
    else:
        TOOL_CALLS.append(call)


def lookup_order(ctx: RunContext[ToolContext], order: str) -> str:
    """Look an order up by its number."""
    _note(
        {
            "tool": "lookup_order",
            "order": order,
            "session_id": ctx.deps.session_id,
            "task_id": ctx.deps.task_id,
            "key": idempotency_key(ctx),
        }
    )
    return f"order {order}: shipped on Monday"


def refund(ctx: RunContext[ToolContext], order: str) -> str:
    """Refund an order (needs a human's approval in the tests' definitions)."""
    _note({"tool": "refund", "order": order, "key": idempotency_key(ctx)})
    return f"order {order} refunded"


def big_report(size: int) -> str:
    """A report of ``size`` characters."""
    return "x" * size


def tool_calls_logged(path: str) -> list[dict[str, str]]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


OFFLINE = AgentDefinition(
    name="offline", description="a definition in Python", model="test:any", system_prompt="Hi."
)
"""An agent defined as data from Python (as an entry point would give it)."""


TEST_AGENTS = ",".join(
    f"tests.agents_for_tests:{name}" for name in ("Slow", "Boom", "Hang", "Crash", "Recall")
)
