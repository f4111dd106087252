"""Agents backed by a language model, built from an :class:`AgentDefinition`, run with
pydantic-ai (streaming, tool calls, MCP, provider clients with retries).

Why pydantic-ai rather than our own HTTP: it speaks every provider's streaming protocol,
tool calling and MCP, maps provider errors to typed exceptions, and has offline test
models; we keep only what is Praxis's own (sessions, history, durability).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai import (
    Agent as ModelRunner,
)
from pydantic_ai import (
    AgentRunResultEvent,
    ApprovalRequired,
    DeferredToolRequests,
    FunctionToolset,
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    RunContext,
    TextPart,
    TextPartDelta,
    Tool,
    UserPromptPart,
    WrapperToolset,
)
from pydantic_ai.exceptions import AgentRunError, ModelAPIError, ModelHTTPError
from pydantic_ai.models import (
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_core import to_jsonable_python

from praxis import install_hint
from praxis.schemas import ChatMessage, ToolCall
from praxis.workers.agents.base import (
    Agent,
    AgentFailure,
    AwaitingApproval,
    TokenUsage,
    TurnContext,
    TurnJournal,
)
from praxis.workers.agents.mcp import KeptServer, session_headers, with_session_meta
from praxis.workers.agents.spec import AgentDefinition, DefinitionError

# ToolContext and idempotency_key are imported from here by tools (and the docs).
from praxis.workers.agents.tools import ToolContext as ToolContext
from praxis.workers.agents.tools import idempotency_key as idempotency_key

EXTRAS = {"openai": "openai", "anthropic": "anthropic", "mcp": "mcp"}


def _needs(extra: str, e: ImportError) -> DefinitionError:
    return DefinitionError(
        "model",
        [f"needs the '{extra}' extra: {install_hint(extra)} ({e.name or e} missing)"],
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
        tools.append(Tool(fn, name=t.name))  # approval: see JournalToolset
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
        common: dict[str, Any] = {
            "init_timeout": s.timeout,
            "read_timeout": s.timeout,
            "process_tool_call": with_session_meta,
        }
        if s.command is not None:
            # The supervisor (KeptServer) keeps the process for as long as the worker runs;
            # fastmcp's own keep-alive would outlive the worker's drain.
            transport = StdioTransport(s.command, s.args, env=s.env, cwd=s.cwd, keep_alive=False)
            server: MCPToolset[ToolContext] = MCPToolset(transport, **common)
        elif s.url is not None and s.session_headers:
            static = dict(s.headers or {})

            def headers(
                ctx: RunContext[ToolContext], static: dict[str, str] = static
            ) -> dict[str, str]:
                return {**static, **session_headers(ctx.deps)}

            server = MCPToolset(s.url, headers=headers, **common)  # a connection per run
        else:
            assert s.url is not None
            server = MCPToolset(s.url, headers=s.headers, **common)
        toolset: AbstractToolset[ToolContext] = server
        if not s.session_headers:
            toolset = KeptServer(server, s.label, s.timeout, s.max_concurrent_calls)
        if s.tool_prefix:
            toolset = toolset.prefixed(s.tool_prefix)
        out.append(toolset)
    return out


def approval_rule(defn: AgentDefinition) -> Callable[[str], bool]:
    """Whether a call of the tool named so (as the model sees it) waits for a human."""
    named = {t.name or t.function.rpartition(":")[2] for t in defn.tools if t.requires_approval}
    patterns = [p for s in defn.mcp for p in s.requires_approval]

    def needs_approval(tool: str) -> bool:
        return tool in named or any(fnmatch.fnmatchcase(tool, p) for p in patterns)

    return needs_approval


def _calls(response: ModelResponse, needs_approval: Callable[[str], bool]) -> list[ToolCall]:
    out = []
    for part in response.tool_calls:
        args: dict[str, Any] | str
        try:
            args = part.args_as_dict()
        except ValueError:
            args = part.args if isinstance(part.args, str) else str(part.args)
        out.append(
            ToolCall(
                call_id=part.tool_call_id,
                tool=part.tool_name,
                args=args,
                needs_approval=needs_approval(part.tool_name),
            )
        )
    return out


class JournalModel(WrapperModel):
    """The model, for one turn: responses the journal holds are replayed; a new response
    that asks for tools is recorded before any of them runs."""

    def __init__(
        self,
        wrapped: Model,
        journal: TurnJournal,
        needs_approval: Callable[[str], bool],
        usage: TokenUsage,
    ) -> None:
        super().__init__(wrapped)
        self.journal = journal
        self.needs_approval = needs_approval
        self.usage = usage
        self.step = 0

    def _count(self, response: ModelResponse | None) -> None:
        """A request made in this run (a replayed one cost nothing now): its tokens as the
        provider reported them; none reported (0 in and 0 out: no model answers a request
        for nothing) or no response at all leaves the turn's tokens unknown."""
        u = response.usage if response is not None else None
        reported = u is not None and bool(u.input_tokens or u.output_tokens)
        self.usage.add(
            input_tokens=u.input_tokens if u is not None else 0,
            output_tokens=u.output_tokens if u is not None else 0,
            requests=1,
            reported=reported,
        )

    def _recorded(self) -> ModelResponse | None:
        if self.step < len(self.journal.responses):
            return ModelMessagesTypeAdapter.validate_json(self.journal.responses[self.step])[0]  # type: ignore[return-value]
        return None

    async def _record(self, step: int, response: ModelResponse) -> None:
        if response.tool_calls:
            data = ModelMessagesTypeAdapter.dump_json([response]).decode()
            await self.journal.responded(step, _calls(response, self.needs_approval), data)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        step, recorded = self.step, self._recorded()
        self.step += 1
        if recorded is not None:
            return recorded
        try:
            response = await super().request(messages, model_settings, model_request_parameters)
        except Exception:
            self._count(None)
            raise
        self._count(response)
        await self._record(step, response)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        step, recorded = self.step, self._recorded()
        self.step += 1
        if recorded is not None:
            # Its text is streamed again: it is part of the reply this turn ends with.
            yield CompletedStreamedResponse(
                recorded, model_request_parameters=model_request_parameters, replay_events=True
            )
            return
        try:
            async with super().request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as stream:
                yield stream
        except Exception:
            self._count(None)
            raise
        self._count(stream.get())
        await self._record(step, stream.get())


class JournalToolset(WrapperToolset[ToolContext]):
    """Tools, for one turn: a call whose result the journal holds returns it without
    running; a call that needs approval pauses the turn until a human decides; every new
    result is recorded before the model sees it."""

    def __init__(
        self,
        wrapped: AbstractToolset[ToolContext],
        journal: TurnJournal,
        needs_approval: Callable[[str], bool],
        usage: TokenUsage,
    ) -> None:
        super().__init__(wrapped)
        self.journal = journal
        self.needs_approval = needs_approval
        self.usage = usage

    def _around(self, inner: AbstractToolset[ToolContext]) -> JournalToolset:
        if inner is self.wrapped:
            return self
        return JournalToolset(inner, self.journal, self.needs_approval, self.usage)

    async def for_run(self, ctx: RunContext[ToolContext]) -> AbstractToolset[ToolContext]:
        """A toolset that opens a connection per run (an MCP server given the session in
        its headers) has its run's copy journalled the same way."""
        return self._around(await self.wrapped.for_run(ctx))

    async def for_run_step(self, ctx: RunContext[ToolContext]) -> AbstractToolset[ToolContext]:
        return self._around(await self.wrapped.for_run_step(ctx))

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[ToolContext],
        tool: ToolsetTool[ToolContext],
    ) -> Any:
        call_id = ctx.tool_call_id or ""
        done = self.journal.results.get(call_id)
        if done is not None:
            return done.content
        if self.needs_approval(name):
            decision = self.journal.decisions.get(call_id)
            if decision is None:
                raise ApprovalRequired()
            if not decision.approved:
                why = f": {decision.reason}" if decision.reason else "."
                text = f"The user denied this call of {name}{why}"
                await self.journal.resulted(call_id, name, text, True)
                return text
        self.usage.add(tool_calls=1)
        value = await super().call_tool(name, tool_args, ctx, tool)
        content = to_jsonable_python(value)
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        limit = self.journal.max_result_chars
        if len(text) > limit:  # the model sees what is recorded: the same after a replay
            value = content = f"{text[:limit]} [cut: the result had {len(text)} characters]"
        await self.journal.resulted(call_id, name, content, False)
        return value


def to_messages(history: Sequence[ChatMessage]) -> list[ModelMessage]:
    """The conversation in the model's terms (user prompts and the agent's replies)."""
    out: list[ModelMessage] = []
    for m in history:
        if m.role == "user":
            out.append(ModelRequest(parts=[UserPromptPart(m.content)]))
        else:
            out.append(ModelResponse(parts=[TextPart(m.content)]))
    return out


_TOO_LONG = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "exceeds the context",
)


def _retry_after(e: BaseException) -> float | None:
    """Seconds the provider asked to wait (``retry-after-ms`` or ``retry-after``), from
    the SDK's error under pydantic-ai's."""
    seen: BaseException | None = e
    while seen is not None:
        headers = getattr(getattr(seen, "response", None), "headers", None)
        if headers is not None:
            try:
                if headers.get("retry-after-ms"):
                    return float(headers["retry-after-ms"]) / 1000
                if headers.get("retry-after"):
                    return float(headers["retry-after"])
            except (TypeError, ValueError):
                return None
        seen = seen.__cause__ or seen.__context__
    return None


def _message(e: ModelHTTPError) -> str:
    """The provider's own words: ``error.message`` of its JSON body, else the body."""
    body: Any = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(body) if body else (getattr(e, "message", None) or str(e))


def describe(e: BaseException, defn: AgentDefinition | None = None) -> str:
    """A model error as one line for ``turn.failed``: what happened and what to do.

    The provider SDKs have already retried, ``max_retries`` times with backoff (honouring
    the provider's ``retry-after``), what retrying can help: rate limits (429), overloaded
    or failing servers (5xx, Anthropic's 529) and lost connections. A refused key (401,
    403) and a conversation too long for the model (400) are not retried: the same request
    would fail the same way."""
    provider = defn.provider_name if defn is not None else "the provider"
    retries = defn.provider.max_retries if defn is not None else None
    tried = f"; retried {retries} times" if retries else ""
    if isinstance(e, ModelHTTPError):
        status, model, said = e.status_code, e.model_name, _message(e)
        where = f"HTTP {status} from {model}: {said}"
        if status in (401, 403):
            env = (
                defn.provider.api_key_env or f"{defn.provider_name.upper()}_API_KEY"
                if defn is not None
                else "the API key"
            )
            text = f"{provider} refused the API key ({where}): check {env}"
        elif status == 429:
            wait = _retry_after(e)
            after = f"; it asks to wait {wait:g}s" if wait is not None else ""
            text = (
                f"rate limited by {provider} ({where}{tried}{after}): send the message again "
                "later, or raise max_retries in the agent's [provider]"
            )
        elif status in (503, 529) or "overloaded" in said.lower():
            text = f"{provider} is overloaded ({where}{tried}): send the message again later"
        elif status in (400, 413) and any(k in said.lower() for k in _TOO_LONG):
            text = (
                f"the conversation is too long for {model} ({where}): lower messages or chars "
                "in the agent's [context] (older messages are then summarised), or start a "
                "new session"
            )
        elif status >= 500:
            text = f"{provider} failed ({where}{tried}): send the message again later"
        else:
            text = where
        return f"model error: {text}"[:500]
    if isinstance(e, ModelAPIError):
        url = defn.provider.base_url if defn is not None else None
        if "connection" in type(e).__name__.lower() or "connection" in e.message.lower():
            at = f" at {url}" if url else ""
            return (
                f"model error: cannot reach {provider}{at} for {e.model_name} ({e.message}"
                f"{tried}): is the model server running?"
            )[:500]
        return f"model error: {type(e).__name__} from {e.model_name}: {e.message}"[:500]
    return f"model error: {type(e).__name__}: {e}"[:500]


class ModelAgent(Agent):
    """An agent whose replies come from a language model (see :mod:`praxis.workers.agents.spec`)."""

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
        self.model = build_model(definition)
        tools = build_tools(definition)
        self.toolsets: list[AbstractToolset[ToolContext]] = [
            *([FunctionToolset(tools)] if tools else []),
            *build_toolsets(definition),
        ]
        self.needs_approval = approval_rule(definition)
        self.runner: ModelRunner[ToolContext, str | DeferredToolRequests] = ModelRunner(
            self.model,
            instructions=definition.system_prompt or None,
            deps_type=ToolContext,
            model_settings=self.model_settings,
            output_type=[str, DeferredToolRequests],
            name=self.name,
        )

    async def close(self) -> None:
        """Stop the MCP servers this worker started for the agent."""
        for server in self.servers():
            await server.close()

    def servers(self) -> list[KeptServer]:
        """The MCP servers kept for this agent (for the tests and ``close``)."""
        kept: list[KeptServer] = []
        for toolset in self.toolsets:
            while isinstance(toolset, WrapperToolset):  # prefixed, kept, ...
                if isinstance(toolset, KeptServer):
                    kept.append(toolset)
                toolset = toolset.wrapped
        return kept

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
            self.model, model_settings=self.model_settings
        )
        result = await summarizer.run(prompt)
        return result.output

    async def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        deps = ToolContext(
            ctx.session_id,
            ctx.task_id,
            str(ctx.origin_seq or ctx.turn_id),
            agent=self.name,
            actor=ctx.actor,
        )
        summary = f"Summary of the earlier conversation:\n{ctx.summary}" if ctx.summary else ""
        # The sender's instructions for this turn come after the agent's own system prompt.
        extra = "\n\n".join(filter(None, [ctx.instructions, summary])) or None
        journal = ctx.journal
        model = JournalModel(self.model, journal, self.needs_approval, ctx.usage)
        toolsets = [
            JournalToolset(t, journal, self.needs_approval, ctx.usage) for t in self.toolsets
        ]
        said = False
        try:
            async with self.runner.run_stream_events(
                ctx.message,
                message_history=to_messages(ctx.history),
                deps=deps,
                instructions=extra,
                model=model,
                toolsets=toolsets,
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
                        output = ev.result.output
                        if isinstance(output, DeferredToolRequests):
                            pending = ModelResponse(parts=list(output.approvals))
                            raise AwaitingApproval(_calls(pending, self.needs_approval))
                    if piece:
                        said = True
                        yield piece
        except AgentRunError as e:
            raise AgentFailure(describe(e, self.definition)) from e


def from_definition(defn: AgentDefinition, *, name: str | None = None) -> ModelAgent:
    return ModelAgent(defn, name=name)
