"""The agent interface: what a user implements to add an agent to Praxis.

An agent is a class with a ``name``; each turn it gets a :class:`TurnContext` and yields
its reply as text pieces (tokens), which Praxis streams to clients live and stores as
one ``agent.message`` when the turn ends. Agents keep no state between turns: what they
need is in the context, built from the session's checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from praxis.schemas import ChatMessage, ToolCall, ToolDecision, ToolOutcome


@dataclass(slots=True)
class TokenUsage:
    """What a turn cost in the model's terms; an agent adds to it, the turn's end records it.

    Token counts are what the provider reported. A request whose provider reported none
    (llama.cpp's server while streaming, a request that failed) is counted in
    ``unreported``; the turn's tokens are then unknown (``None`` in its event), never 0."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    unreported: int = 0
    """Requests whose token counts the provider did not report."""

    def add(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        requests: int = 0,
        tool_calls: int = 0,
        reported: bool = True,
    ) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.requests += requests
        self.tool_calls += tool_calls
        if not reported:
            self.unreported += max(requests, 1)

    def __bool__(self) -> bool:
        return bool(
            self.input_tokens
            or self.output_tokens
            or self.requests
            or self.tool_calls
            or self.unreported
        )

    def known(self) -> dict[str, int | None]:
        """The counts for the turn's event: tokens ``None`` when any request's are unknown."""
        whole = self.unreported == 0
        return {
            "input_tokens": self.input_tokens if whole else None,
            "output_tokens": self.output_tokens if whole else None,
            "requests": self.requests,
            "tool_calls": self.tool_calls,
        }


class AwaitingApproval(Exception):
    """Raise from ``respond`` to pause the turn until a human approves or denies each of
    ``calls``; the turn then runs again, replaying what its journal recorded."""

    def __init__(self, calls: Sequence[ToolCall]) -> None:
        super().__init__(", ".join(c.tool for c in calls))
        self.calls = list(calls)


RecordResponse = Callable[[int, list[ToolCall], str], Awaitable[None]]
RecordResult = Callable[[str, str, Any, bool], Awaitable[None]]


@dataclass(slots=True)
class TurnJournal:
    """The steps this turn has already taken, recorded on the bus, and how to record the
    next ones. A turn taken over by another worker, or going on after an approval, runs
    again from the start: what is recorded is replayed, not done again."""

    responses: list[str] = field(default_factory=list)
    """The model's responses that asked for tools (pydantic-ai JSON), in order."""
    results: dict[str, ToolOutcome] = field(default_factory=dict)
    decisions: dict[str, ToolDecision] = field(default_factory=dict)
    record_response: RecordResponse | None = None
    """Record response number ``step`` and its calls; returns once it is stored."""
    record_result: RecordResult | None = None
    """Record ``(call_id, tool, content, denied)``; returns once it is stored."""
    max_result_chars: int = 256 * 1024
    """A tool's result is cut to this many characters (of its JSON) before it is recorded
    and shown to the model: every recorded step must fit in one message on the bus."""

    async def responded(self, step: int, calls: list[ToolCall], response: str) -> None:
        if step == len(self.responses):
            if self.record_response is not None:
                await self.record_response(step, calls, response)
            self.responses.append(response)

    async def resulted(self, call_id: str, tool: str, content: Any, denied: bool) -> None:
        if call_id not in self.results:
            if self.record_result is not None:
                await self.record_result(call_id, tool, content, denied)
            self.results[call_id] = ToolOutcome(tool=tool, content=content, denied=denied)


class AgentFailure(Exception):
    """Raise from ``respond`` to end the turn with ``turn.failed`` and this message as its
    reason (the reply so far is kept, marked interrupted)."""


@dataclass(frozen=True, slots=True)
class TurnContext:
    session_id: str
    task_id: str
    agent: str
    metadata: Mapping[str, Any]
    history: Sequence[ChatMessage]
    """The recent conversation before this turn, oldest first."""
    user_messages: int
    """How many messages the user has sent, this turn's included."""
    message: str | None
    """The user's message of this turn; ``None`` for the greeting when a session starts."""
    attempt: int = 1
    """1, or more when a turn is re-run after its worker died."""
    summary: str | None = None
    """What the messages before ``history`` said, when older ones were compacted."""
    turn_id: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    """Add the model's token counts here; they are recorded with the turn's end."""
    journal: TurnJournal = field(default_factory=TurnJournal)
    origin_seq: int = 0
    """The cursor of the command the turn answers: stable across takeovers and pauses."""
    actor: str | None = None
    """Who sent the message this turn answers, as the sender said (see the events' actor)."""
    instructions: str | None = None
    """The sender's instructions for this turn only, if the message came with some (the
    OpenAI API's ``instructions``; Chat Completions' system messages). A model agent adds
    them after its own system prompt; follow them or not, as your agent sees fit."""


class Agent(ABC):
    """Subclass, set ``name`` (a subject token) and ``description``, implement ``respond``.

    Register it under the entry-point group ``praxis.agents`` or list it in the
    ``PRAXIS_AGENTS`` setting as ``module:Class``.
    """

    name: str
    description: str = ""
    listed: bool = True
    """Shown in lists of agents (``praxis agents``, ``GET /agents``, the chat page, the
    known agents an error names); ``False`` for agents used by name only (benchmarks)."""
    context_messages: int | None = None
    """Messages of the conversation this agent sees at most (default and upper bound:
    ``PRAXIS_CONTEXT_MESSAGES``); older ones are compacted into ``TurnContext.summary``."""
    context_chars: int | None = None
    """Characters of recent messages this agent sees at most (``PRAXIS_CONTEXT_CHARS``)."""

    async def close(self) -> None:
        """Free what the agent holds between turns (a model agent: its MCP servers); called
        once when the worker stops, after its last turn. Nothing, by default."""
        return

    def summarize(
        self, summary: str | None, dropped: Sequence[ChatMessage]
    ) -> str | Awaitable[str]:
        """The running summary once ``dropped`` (the oldest messages) leave the context.

        The default is a short extractive summary made without a model; an agent backed by
        a language model can override it (sync or async) to have the model summarise."""
        return builtin_summary(summary, dropped)

    def greet(self, ctx: TurnContext) -> AsyncIterator[str] | None:
        """The agent's first words when a session starts, or ``None`` to wait for the user."""
        return None

    @abstractmethod
    def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        """Yield the reply to ``ctx.message`` piece by piece."""


SUMMARY_CHARS = 4000
SNIPPET_CHARS = 160


def builtin_summary(summary: str | None, dropped: Sequence[ChatMessage]) -> str:
    """An extractive running summary: the start of each dropped message, newest kept when
    the summary outgrows ``SUMMARY_CHARS`` (no model needed)."""
    lines = summary.splitlines() if summary else []
    for m in dropped:
        text = " ".join(m.content.split())
        if len(text) > SNIPPET_CHARS:
            text = text[: SNIPPET_CHARS - 1] + "…"
        lines.append(f"{'User' if m.role == 'user' else 'Agent'}: {text}")
    while lines and sum(len(line) + 1 for line in lines) > SUMMARY_CHARS:
        lines.pop(0)
    return "\n".join(lines)
