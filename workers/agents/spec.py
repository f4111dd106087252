"""Agent definitions as data: a TOML file in ``PRAXIS_AGENTS_DIR`` or an
:class:`AgentDefinition` returned by a Python entry point.

A definition names a model (``provider:model``), a system prompt, parameters, tools and a
context policy; :mod:`praxis.workers.agents.model` turns it into an agent that runs on that
model. A file looks like::

    description = "Answers questions about orders"
    model = "openai:gpt-4o-mini"
    system_prompt = "You are a helpful support agent. Be brief."

    [parameters]
    temperature = 0.2
    max_tokens = 800

    [provider]                 # optional: any OpenAI-compatible server
    base_url = "http://127.0.0.1:11434/v1"
    api_key_env = "OLLAMA_API_KEY"

    [context]
    messages = 40

    [[tools]]
    function = "shop.tools:lookup_order"

    [[tools]]
    function = "shop.tools:refund"
    requires_approval = true

    [[mcp]]
    command = "python"
    args = ["-m", "shop.mcp_server"]

The agent's name is the file's name without ``.toml`` unless ``name`` says otherwise.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from praxis.schemas import AgentName

PROVIDERS = ("openai", "anthropic", "test")
"""``openai``: OpenAI and any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, LM
Studio, ... through ``provider.base_url``); ``anthropic``; ``test``: pydantic-ai's offline
test model (no network; replies with canned text and calls every tool once)."""


def _model_ref(value: str) -> str:
    provider, sep, model = value.partition(":")
    if not sep or provider not in PROVIDERS or not model or model != model.strip():
        raise ValueError(
            f"use provider:model with provider one of {', '.join(PROVIDERS)} "
            f"(e.g. openai:gpt-4o-mini), not {value!r}"
        )
    return value


ModelRef = Annotated[
    str,
    AfterValidator(_model_ref),
    Field(
        description="provider:model, e.g. openai:gpt-4o-mini, anthropic:claude-sonnet-4-5, "
        "openai:llama3.2 (with provider.base_url), test:any",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameters(_Strict):
    """Sampling parameters passed to the model (those the provider supports)."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop_sequences: list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    parallel_tool_calls: bool | None = None

    def settings(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ProviderOptions(_Strict):
    base_url: str | None = Field(
        default=None, description="Another endpoint than the provider's own (OpenAI-compatible)."
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the API key (default: the provider's "
        "own, OPENAI_API_KEY or ANTHROPIC_API_KEY). Keys never go in the file.",
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds for one model request.")
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Times a rate-limited (429) or failed (5xx, connection) request is retried, "
        "with backoff (honouring Retry-After).",
    )


class ContextPolicy(_Strict):
    messages: int | None = Field(default=None, ge=2, description="Recent messages the model sees.")
    chars: int | None = Field(default=None, ge=100, description="Their characters at most.")
    summarize: Literal["builtin", "model"] = Field(
        default="builtin",
        description="Who writes the running summary of compacted messages: the built-in "
        "extractive summariser, or the agent's model.",
    )


class ToolSpec(_Strict):
    function: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="A Python function as module:name; its signature and docstring describe it "
        "to the model.",
    )
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    requires_approval: bool = Field(
        default=False, description="Pause the turn until a human approves or denies each call."
    )


class MCPServerSpec(_Strict):
    command: str | None = Field(default=None, description="A stdio server: the program to run.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = Field(default=None, description="A streamable HTTP server: its URL.")
    headers: dict[str, str] | None = None
    tool_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    requires_approval: list[str] = Field(
        default_factory=list,
        description="Names of this server's tools (fnmatch patterns, '*' for all) whose calls "
        "wait for a human's approval.",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds to start and per call.")
    max_concurrent_calls: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Calls in flight on this server at once, across the worker's turns "
        "(1: one at a time, for tools that are not safe to run concurrently).",
    )
    session_headers: bool = Field(
        default=False,
        description="A streamable-HTTP server also gets the session context as request "
        "headers (X-Praxis-Session-Id, ...); it then gets a connection per turn.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> MCPServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (streamable HTTP)")
        if self.session_headers and self.url is None:
            raise ValueError("session_headers is for streamable HTTP servers (url)")
        return self

    @property
    def label(self) -> str:
        """How errors name the server: its prefix, else its command or URL."""
        if self.tool_prefix:
            return repr(self.tool_prefix)
        return repr(self.url or " ".join([self.command or "", *self.args]).strip())


class AgentDefinition(_Strict):
    """An agent as data."""

    name: AgentName | None = None
    description: str = ""
    model: ModelRef
    system_prompt: str = ""
    parameters: Parameters = Field(default_factory=Parameters)
    provider: ProviderOptions = Field(default_factory=ProviderOptions)
    tools: list[ToolSpec] = Field(default_factory=list)
    mcp: list[MCPServerSpec] = Field(default_factory=list)
    context: ContextPolicy = Field(default_factory=ContextPolicy)

    @property
    def provider_name(self) -> str:
        return self.model.split(":", 1)[0]

    @property
    def model_name(self) -> str:
        return self.model.split(":", 1)[1]


class DefinitionError(Exception):
    """A definition that cannot be used: where (file, field) and why."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where}: " + "; ".join(problems))
        self.where = where
        self.problems = problems


def problems_of(e: ValidationError) -> list[str]:
    out = []
    for err in e.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "(file)"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{field}: {msg}")
    return out


def read_definition(path: Path) -> AgentDefinition:
    """The definition in a TOML file, named after the file unless it names itself."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise DefinitionError(str(path), [f"not valid TOML: {e}"]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise DefinitionError(str(path), [f"cannot read: {e}"]) from e
    data.setdefault("name", path.stem)
    try:
        return AgentDefinition.model_validate(data)
    except ValidationError as e:
        raise DefinitionError(str(path), problems_of(e)) from e
