"""What a tool gets of the session it serves: its context, and an idempotency key."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_ai import RunContext


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool gets as ``ctx.deps`` (declare ``ctx: RunContext[ToolContext]`` first)."""

    session_id: str
    task_id: str
    turn_id: str
    agent: str = ""
    actor: str | None = None
    """Who sent the message the turn answers, when known."""


def idempotency_key(ctx: RunContext[ToolContext]) -> str:
    """A key that is the same however often this call is made (pass it to the services a
    tool changes, so that a repeated call changes nothing twice)."""
    return f"{ctx.deps.session_id}.{ctx.deps.turn_id}.{ctx.tool_call_id}"


__all__ = ["ToolContext", "idempotency_key"]
