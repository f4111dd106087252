"""Agents backed by a language model, built from an :class:`AgentDefinition`, run with
pydantic-ai (streaming, tool calls, MCP, provider clients with retries).

Why pydantic-ai rather than our own HTTP: it speaks every provider's streaming protocol,
tool calling and MCP, maps provider errors to typed exceptions, and has offline test
models; we keep only what is Praxis's own (sessions, history, durability).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_ai import (
    Agent as ModelRunner,
)
from pydantic_ai import (
    AgentRunResultEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    RunContext,
    TextPart,
    TextPartDelta,
    Tool,
    ToolDefinition,
    UserPromptPart,
)
from pydantic_ai.exceptions import AgentRunError, ModelAPIError, ModelHTTPError
from pydantic_ai.models import Model
from pydantic_ai.settings import ModelSettings
from pydantic_ai.toolsets import AbstractToolset

from schemas import ChatMessage
from workers.agents.base import Agent, AgentFailure, TurnContext
from workers.agents.spec import AgentDefinition, DefinitionError

EXTRAS = {"openai": "openai", "anthropic": "anthropic", "mcp": "mcp"}


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool gets as ``ctx.deps`` (declare ``ctx: RunContext[ToolContext]`` first)."""

    session_id: str
    task_id: str
    turn_id: str


def idempotency_key(ctx: RunContext[ToolContext]) -> str:
    """A key that is the same however often this call is made (pass it to the services a
    tool changes, so that a repeated call changes nothing twice)."""
    return f"{ctx.deps.session_id}.{ctx.deps.turn_id}.{ctx.tool_call_id}"


def _needs(extra: str, e: ImportError) -> DefinitionError:
    return DefinitionError(
        "model",
        [f"needs the '{extra}' extra: pip install 'praxis[{extra}]' ({e.name or e} missing)"],
    )


def build_model(defn: AgentDefinition) -> Model:
    """The pydantic-ai model for the definition (no network is touched)."""
    opts, name = defn.provider, defn.model_name
    if defn.provider_name == "test":
        from pydantic_ai.models.test import TestModel

        return TestModel()
    env = opts.api_key_env or f"{defn.provider_name.upper()}_API_KEY"
    key = os.environ.get(env)
    if not key and opts.base_url is None:
        raise DefinitionError("provider.api_key_env", [f"{env} is not set"])
    if defn.provider_name == "openai":
        try:
            from pydantic_ai.models.openai import OpenAIChatModel
            from pydantic_ai.providers.openai import OpenAIProvider
        except ImportError as e:
            raise _needs("openai", e) from e
        # Local OpenAI-compatible servers take any key; the SDK insists on one.
        provider = OpenAIProvider(base_url=opts.base_url, api_key=key or "unused")
        return OpenAIChatModel(name, provider=provider)
    try:
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider
    except ImportError as e:
        raise _needs("anthropic", e) from e
    return AnthropicModel(
        name, provider=AnthropicProvider(api_key=key or "unused", base_url=opts.base_url)
    )


def _function(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    target = getattr(importlib.import_module(module), attr)
    if not callable(target):
        raise TypeError(f"{spec} is not a function")
    return target  # type: ignore[no-any-return]


def build_tools(defn: AgentDefinition) -> list[Tool[ToolContext]]:
    tools: list[Tool[ToolContext]] = []
    for i, t in enumerate(defn.tools):
        try:
            fn = _function(t.function)
        except Exception as e:
            raise DefinitionError(f"tools.{i}.function", [f"cannot load {t.function}: {e}"]) from e
        tools.append(Tool(fn, name=t.name, requires_approval=t.requires_approval))
    return tools


def build_toolsets(defn: AgentDefinition) -> list[AbstractToolset[ToolContext]]:
    """One toolset per MCP server (stdio: a child process; or streamable HTTP), connected
    when a turn runs; tools matching ``requires_approval`` wait for a human's approval."""
    if not defn.mcp:
        return []
    try:
        from fastmcp.client.transports import StdioTransport
        from pydantic_ai.mcp import MCPToolset
    except ImportError as e:
        raise _needs("mcp", e) from e
    out: list[AbstractToolset[ToolContext]] = []
    for s in defn.mcp:
        if s.command is not None:
            transport = StdioTransport(s.command, s.args, env=s.env, cwd=s.cwd)
            toolset: AbstractToolset[ToolContext] = MCPToolset(
                transport, init_timeout=s.timeout, read_timeout=s.timeout
            )
        else:
            assert s.url is not None
            toolset = MCPToolset(
                s.url, headers=s.headers, init_timeout=s.timeout, read_timeout=s.timeout
            )
        if s.tool_prefix:
            toolset = toolset.prefixed(s.tool_prefix)
        if s.requires_approval:
            toolset = toolset.approval_required(_matching(list(s.requires_approval)))
        out.append(toolset)
    return out


def _matching(patterns: list[str]) -> Callable[[Any, ToolDefinition, dict[str, Any]], bool]:
    def needs_approval(_ctx: Any, tool: ToolDefinition, _args: dict[str, Any]) -> bool:
        return any(fnmatch.fnmatchcase(tool.name, p) for p in patterns)

    return needs_approval


def to_messages(history: Sequence[ChatMessage]) -> list[ModelMessage]:
    """The conversation in the model's terms (user prompts and the agent's replies)."""
    out: list[ModelMessage] = []
    for m in history:
        if m.role == "user":
            out.append(ModelRequest(parts=[UserPromptPart(m.content)]))
        else:
            out.append(ModelResponse(parts=[TextPart(m.content)]))
    return out


def describe(e: BaseException) -> str:
    """A model error as one line for ``turn.failed``."""
    if isinstance(e, ModelHTTPError):
        body = e.body if isinstance(e.body, str) else None
        detail = e.message if hasattr(e, "message") else str(e)
        return f"model error: HTTP {e.status_code} from {e.model_name}: {body or detail}"[:500]
    if isinstance(e, ModelAPIError):
        return f"model error: {type(e).__name__} from {e.model_name}: {e.message}"[:500]
    return f"model error: {type(e).__name__}: {e}"[:500]


class ModelAgent(Agent):
    """An agent whose replies come from a language model (see :mod:`workers.agents.spec`)."""

    def __init__(self, definition: AgentDefinition, *, name: str | None = None) -> None:
        self.definition = definition
        agent_name = name or definition.name
        if agent_name is None:
            raise DefinitionError("name", ["an agent needs a name"])
        self.name = agent_name
        self.description = definition.description or f"{definition.model} model agent"
        self.context_messages = definition.context.messages
        self.context_chars = definition.context.chars
        settings: dict[str, Any] = definition.parameters.settings()
        settings["timeout"] = definition.provider.timeout
        settings["max_retries"] = definition.provider.max_retries
        self.model_settings = ModelSettings(**settings)  # type: ignore[typeddict-item]
        self.runner: ModelRunner[ToolContext, str] = ModelRunner(
            build_model(definition),
            instructions=definition.system_prompt or None,
            deps_type=ToolContext,
            model_settings=self.model_settings,
            tools=build_tools(definition),
            toolsets=build_toolsets(definition),
            name=self.name,
        )

    async def summarize(self, summary: str | None, dropped: Sequence[ChatMessage]) -> str:
        if self.definition.context.summarize == "builtin":
            return str(super().summarize(summary, dropped))
        lines = [f"{'User' if m.role == 'user' else 'Agent'}: {m.content}" for m in dropped]
        prompt = (
            "Write a short summary of this conversation for your own later use: the facts, "
            "names, decisions and open questions. Reply with the summary only.\n\n"
            + (f"Summary so far:\n{summary}\n\n" if summary else "")
            + "Messages:\n"
            + "\n".join(lines)
        )
        summarizer: ModelRunner[None, str] = ModelRunner(
            self.runner.model, model_settings=self.model_settings
        )
        result = await summarizer.run(prompt)
        return result.output

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        deps = ToolContext(ctx.session_id, ctx.task_id, ctx.turn_id)
        extra = f"Summary of the earlier conversation:\n{ctx.summary}" if ctx.summary else None
        said = False
        try:
            async with self.runner.run_stream_events(
                ctx.message,
                message_history=to_messages(ctx.history),
                deps=deps,
                instructions=extra,
            ) as events:
                async for ev in events:
                    piece = ""
                    if isinstance(ev, PartStartEvent) and isinstance(ev.part, TextPart):
                        if said and ev.index == 0:
                            yield "\n\n"  # text after tool calls: a new paragraph
                        piece = ev.part.content
                    elif isinstance(ev, PartDeltaEvent) and isinstance(ev.delta, TextPartDelta):
                        piece = ev.delta.content_delta
                    elif isinstance(ev, AgentRunResultEvent):
                        u = ev.result.usage
                        ctx.usage.add(
                            input_tokens=u.input_tokens,
                            output_tokens=u.output_tokens,
                            requests=u.requests,
                            tool_calls=u.tool_calls,
                        )
                    if piece:
                        said = True
                        yield piece
        except AgentRunError as e:
            raise AgentFailure(describe(e)) from e


def from_definition(defn: AgentDefinition, *, name: str | None = None) -> ModelAgent:
    return ModelAgent(defn, name=name)
