"""Issue 8: agents defined as files, backed by models through their real provider clients,
against servers on loopback ports that speak the OpenAI and Anthropic streaming protocols."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings
from praxis.schemas import (
    AgentMessage,
    ContextCompacted,
    TokenDelta,
    ToolResult,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from praxis.workers.agents import TurnContext, load_agents
from praxis.workers.agents.model import ModelAgent
from tests import agents_for_tests
from tests.conftest import InProcessWorker, env_for, praxis, settled_session, stored_events
from tests.fake_models import Call, Fail, FakeModelServer, Text


def define(settings: Settings, name: str, text: str) -> Path:
    settings.agents_dir.mkdir(parents=True, exist_ok=True)
    path = settings.agents_dir / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def openai_agent(models: FakeModelServer, extra: str = "") -> str:
    return (
        'model = "openai:fake-gpt"\n'
        'system_prompt = "You are Praxis test bot. Be brief."\n'
        + extra
        + f'\n[provider]\nbase_url = "{models.openai_url}"\nmax_retries = 2\n'
    )


def anthropic_agent(models: FakeModelServer, extra: str = "") -> str:
    return (
        'model = "anthropic:fake-claude"\n'
        'system_prompt = "You are Praxis test bot. Be brief."\n'
        + extra
        + f'\n[provider]\nbase_url = "{models.anthropic_url}"\nmax_retries = 2\n'
    )


TOOL = '\n[[tools]]\nfunction = "tests.agents_for_tests:lookup_order"\n'


def test_definitions_load_and_each_broken_one_is_reported(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text(
        'description = "offline"\nmodel = "test:any"\n[context]\nmessages = 10\n'
    )
    (tmp_path / "renamed.toml").write_text('name = "other-name"\nmodel = "test:x"\n')
    (tmp_path / "typo.toml").write_text('model = "test:x"\n[parameters]\ntemprature = 1\n')
    (tmp_path / "badvalue.toml").write_text('model = "test:x"\n[parameters]\ntemperature = 9\n')
    (tmp_path / "noprovider.toml").write_text('model = "gpt-4o"\n')
    (tmp_path / "syntax.toml").write_text('model = "test:x\n')
    (tmp_path / "badtool.toml").write_text(
        'model = "test:x"\n[[tools]]\nfunction = "no.such.module:f"\n'
    )
    (tmp_path / "badmcp.toml").write_text('model = "test:x"\n[[mcp]]\nargs = ["x"]\n')
    (tmp_path / "bad name.toml").write_text('model = "test:x"\n')
    registry = load_agents([], tmp_path)
    assert {"good", "other-name", "echo", "hello-world"} <= set(registry.names())
    good = registry.get("good")
    assert isinstance(good, ModelAgent) and good.context_messages == 10
    sources = {i.name: i.source for i in registry.infos()}
    assert sources["good"] == f"file {tmp_path / 'good.toml'}"
    errors = "\n".join(registry.errors)
    assert len(registry.errors) == 7, errors
    expected = {
        "typo.toml: parameters.temprature: unknown field",
        "badvalue.toml: parameters.temperature: Input should be less than or equal to 2",
        "noprovider.toml: model: use provider:model with provider one of openai, anthropic",
        "syntax.toml: not valid TOML",
        "badtool.toml: tools.0.function: cannot load no.such.module:f",
        "badmcp.toml: mcp.0: give either command",
        "bad name.toml: name: invalid agent name",
    }
    for fragment in expected:
        assert fragment in errors, (fragment, errors)


async def test_a_definition_from_python_is_an_agent() -> None:
    registry = load_agents(["tests.agents_for_tests:OFFLINE"])
    agent = registry.get("offline")
    assert isinstance(agent, ModelAgent) and agent.description == "a definition in Python"
    sources = {i.name: i.source for i in registry.infos()}
    assert sources["offline"] == "PRAXIS_AGENTS tests.agents_for_tests:OFFLINE"
    ctx = TurnContext("s", "t", "offline", {}, (), 1, "hello")
    assert "".join([p async for p in agent.respond(ctx)]) == "success (no tool calls)"
    assert ctx.usage.requests == 1


def test_praxis_agents_lists_definitions_and_fails_on_a_broken_one(
    settings: Settings, models: FakeModelServer
) -> None:
    define(settings, "gpt", openai_agent(models))
    env = env_for(settings)
    listed = praxis(env, "agents")
    assert listed.returncode == 0, listed.stderr
    assert "gpt" in listed.stdout and "gpt.toml" in listed.stdout
    define(settings, "broken", 'model = "openai:x"\n[parameters]\ntop_p = 0\n')
    broken = praxis(env, "agents")
    assert broken.returncode == 1
    assert "broken.toml: parameters.top_p: Input should be greater than 0" in broken.stderr
    assert "gpt" in broken.stdout  # the others still load


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_model_agent_streams_remembers_and_records_usage(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    provider: str,
) -> None:
    make = openai_agent if provider == "openai" else anthropic_agent
    define(settings, "bot", make(models, "[parameters]\ntemperature = 0.3\nmax_tokens = 99\n"))
    await start_worker()
    script = models.reset(Text("Hello there, Ada!", input_tokens=21, output_tokens=4))
    sid = await settled_session(client, "bot")
    deliveries = [d async for d in client.turn(sid, "Hi, I am Ada")]
    events = [d.event for d in deliveries]
    deltas = "".join(e.text for e in events if isinstance(e, TokenDelta))
    assert deltas == "Hello there, Ada!"
    [reply] = [e for e in events if isinstance(e, AgentMessage)]
    assert reply.content == "Hello there, Ada!"
    [done] = [e for e in events if isinstance(e, TurnCompleted)]
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.requests) == (21, 4, 1)

    # The second turn sends the conversation so far, the system prompt and the parameters.
    [d async for d in client.turn(sid, "What is my name?")]
    first, second = script.requests
    if provider == "openai":
        assert first["temperature"] == 0.3
    else:  # Anthropic's API of 2026-10-21 takes no sampling parameters: pydantic-ai >= 2.78
        assert first.get("temperature") in (None, 0.3)  # leaves them out, with a warning
    assert first.get("max_tokens", first.get("max_completion_tokens")) == 99
    assert first["stream"] is True
    if provider == "openai":
        roles = [(m["role"], m["content"]) for m in second["messages"]]
        assert roles[0] == ("system", "You are Praxis test bot. Be brief.")
        assert roles[1:] == [
            ("user", "Hi, I am Ada"),
            ("assistant", "Hello there, Ada!"),
            ("user", "What is my name?"),
        ]
    else:
        assert "You are Praxis test bot" in str(second["system"])
        texts = [
            (m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
            for m in second["messages"]
        ]
        assert texts == [
            ("user", "Hi, I am Ada"),
            ("assistant", "Hello there, Ada!"),
            ("user", "What is my name?"),
        ]
    history = await client.history(sid)
    assert [h.content for h in history][-1] == "model heard: What is my name?"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_model_calls_a_python_tool_with_the_session_as_context(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    provider: str,
) -> None:
    make = openai_agent if provider == "openai" else anthropic_agent
    define(settings, "shop", make(models, TOOL))
    await start_worker()
    agents_for_tests.TOOL_CALLS.clear()
    script = models.reset(
        Call("lookup_order", {"order": "42"}, call_id="call_42", text="Let me look."),
        Text("Your order 42 shipped on Monday."),
    )
    sid = await settled_session(client, "shop")
    events = await client.wait(await client.send(sid, "Where is order 42?"))
    [done] = [e for e in events if isinstance(e, TurnCompleted)]
    assert done.usage is not None
    assert (done.usage.requests, done.usage.tool_calls) == (2, 1)
    assert done.usage.input_tokens == 13 + 11
    record = await client.get(sid)
    [call] = agents_for_tests.TOOL_CALLS
    assert call == {
        "tool": "lookup_order",
        "order": "42",
        "session_id": sid,
        "task_id": record.task_id,
        "key": f"{sid}.{call['key'].split('.')[1]}.call_42",
    }
    history = await client.history(sid)
    assert history[-1].content == "Let me look.\n\nYour order 42 shipped on Monday."
    # The model got the tool's result.
    followup = str(script.requests[1]["messages"])
    assert "order 42: shipped on Monday" in followup


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_provider_errors_are_retried_then_fail_the_turn_with_a_reason(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    provider: str,
) -> None:
    make = openai_agent if provider == "openai" else anthropic_agent
    define(settings, "flaky", make(models))
    await start_worker()
    sid = await settled_session(client, "flaky")

    # Rate limited twice, then fine: the client retries (max_retries = 2) and the turn works.
    script = models.reset(Fail(429, "slow down", retry_after_ms=10), Fail(503, "busy"))
    events = await client.wait(await client.send(sid, "hello"))
    assert any(isinstance(e, TurnCompleted) for e in events), events
    assert len(script.requests) == 3

    # Down for good: after the retries, turn.failed says why; the session goes on.
    script = models.reset(always=Fail(500, "the model is unwell"))
    events = await client.wait(await client.send(sid, "hello again"))
    [failed] = [e for e in events if isinstance(e, TurnFailed)]
    assert failed.reason.startswith("model error:") and "500" in failed.reason, failed.reason
    assert "unwell" in failed.reason
    assert len(script.requests) == 3
    models.reset()
    events = await client.wait(await client.send(sid, "and now?"))
    assert any(isinstance(e, TurnCompleted) for e in events)


async def test_usage_not_reported_is_unknown_and_a_failed_turn_has_its_usage(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
) -> None:
    """A server that reports no usage while streaming (llama.cpp's) gives a turn unknown
    token counts (null), not zeros; a failed turn records what it did use."""
    define(settings, "shop", openai_agent(models, TOOL))
    await start_worker()
    sid = await settled_session(client, "shop")
    models.reset(Text("no counts from me", usage=False))
    events = await client.wait(await client.send(sid, "hello"))
    [done] = [e for e in events if isinstance(e, TurnCompleted)]
    assert done.usage == Usage(input_tokens=None, output_tokens=None, requests=1, tool_calls=0)

    models.reset(Call("lookup_order", {"order": "7"}, call_id="c7"), Text("ok"))
    events = await client.wait(await client.send(sid, "order 7?"))
    [done] = [e for e in events if isinstance(e, TurnCompleted)]
    assert done.usage == Usage(input_tokens=13 + 11, output_tokens=5 + 7, requests=2, tool_calls=1)

    # A tool call, then the model fails: the turn's usage says what it used (two requests,
    # one tool call), and its tokens are unknown (the failed request reported none).
    models.reset(Call("lookup_order", {"order": "8"}, call_id="c8"), always=Fail(500))
    events = await client.wait(await client.send(sid, "order 8?"))
    [failed] = [e for e in events if isinstance(e, TurnFailed)]
    assert failed.usage == Usage(input_tokens=None, output_tokens=None, requests=2, tool_calls=1)
    models.reset()


PROVIDER_ERRORS = [
    # (what the server answers, every time; requests made; what the reason says)
    (Fail(401, "Incorrect API key provided"), 1, ["refused the API key", "_API_KEY"]),
    (Fail(429, "slow down", retry_after_ms=20), 3, ["rate limited", "retried 2 times", "0.02s"]),
    (Fail(503, "busy"), 3, ["overloaded", "send the message again later"]),
    (Fail(529, "Overloaded"), 3, ["overloaded", "retried 2 times"]),
    (
        Fail(
            400, "prompt is too long: 250000 tokens > 200000 maximum", kind="invalid_request_error"
        ),
        1,
        ["too long", "[context]", "new session"],
    ),
    (
        Fail(
            400,
            "This model's maximum context length is 8192 tokens.",
            kind="invalid_request_error",
            code="context_length_exceeded",
        ),
        1,
        ["too long", "[context]"],
    ),
]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_provider_errors_say_what_to_do_and_are_retried_only_where_it_helps(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    provider: str,
) -> None:
    make = openai_agent if provider == "openai" else anthropic_agent
    define(settings, "moody", make(models))
    await start_worker()
    sid = await settled_session(client, "moody")
    for fail, requests, said in PROVIDER_ERRORS:
        script = models.reset(always=fail)
        events = await client.wait(await client.send(sid, f"status {fail.status}"))
        [failed] = [e for e in events if isinstance(e, TurnFailed)]
        assert failed.reason.startswith("model error: "), failed.reason
        for words in said:
            assert words in failed.reason, (fail, failed.reason)
        assert fail.message in failed.reason  # the provider's own words
        assert len(script.requests) == requests, (fail, failed.reason)
    models.reset()
    events = await client.wait(await client.send(sid, "and now?"))  # the session goes on
    assert isinstance(events[-1], TurnCompleted)


async def test_a_model_server_that_is_down_fails_the_turn_clearly(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    define(
        settings,
        "gone",
        'model = "openai:local"\n'
        f'[provider]\nbase_url = "http://127.0.0.1:{port}/v1"\nmax_retries = 1\ntimeout = 5\n',
    )
    await start_worker()
    sid = await settled_session(client, "gone")
    events = await client.wait(await client.send(sid, "anyone?"))
    [failed] = [e for e in events if isinstance(e, TurnFailed)]
    assert failed.reason.startswith("model error: cannot reach openai at http://127.0.0.1:")
    assert "is the model server running?" in failed.reason
    assert failed.usage is not None and failed.usage.input_tokens is None


async def test_cli_one_turn_exits_non_zero_when_the_turn_fails(
    settings: Settings, models: FakeModelServer
) -> None:
    define(settings, "gpt", openai_agent(models))
    env = env_for(settings, PRAXIS_INPROCESS_WORKER="always")
    models.reset()
    ok = await asyncio.to_thread(praxis, env, "agent", "run", "gpt", "--message", "ping")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "model heard: ping"
    models.reset(always=Fail(500, "the model is unwell"))
    bad = await asyncio.to_thread(praxis, env, "agent", "run", "gpt", "--message", "ping")
    assert bad.returncode != 0
    assert "model error" in bad.stderr and "unwell" in bad.stderr, bad.stderr
    models.reset()


async def test_a_huge_tool_result_is_cut_to_fit_the_bus(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
) -> None:
    tool = '\n[[tools]]\nfunction = "tests.agents_for_tests:big_report"\n'
    define(settings, "reports", openai_agent(models, tool))
    await start_worker()
    script = models.reset(Call("big_report", {"size": 3_000_000}, call_id="b1"), Text("Done."))
    sid = await settled_session(client, "reports")
    events = await client.wait(await client.send(sid, "Report, please"))
    assert isinstance(events[-1], TurnCompleted), events
    [result] = [e for e in events if isinstance(e, ToolResult)]
    limit = settings.max_message_bytes // 8
    assert result.content.endswith("[cut: the result had 3000000 characters]")
    assert len(result.content) < limit + 100
    assert "[cut: the result had 3000000 characters]" in str(script.requests[1]["messages"])


async def test_the_model_writes_the_running_summary_when_asked_to(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
) -> None:
    define(
        settings, "brief", openai_agent(models, '[context]\nmessages = 4\nsummarize = "model"\n')
    )
    await start_worker()
    script = models.reset()
    sid = await settled_session(client, "brief")
    for text in ("one", "two", "three"):
        await client.wait(await client.send(sid, text))
    [compacted] = [e for e in await stored_events(client, sid) if isinstance(e, ContextCompacted)]
    asked = [r for r in script.requests if not r.get("stream")]  # turns stream; this does not
    assert len(asked) == 1 and "User: one" in str(asked[0]["messages"])
    assert "Write a short summary" in str(asked[0]["messages"])
    assert compacted.summary.startswith("model heard: Write a short summary")
    # The next request carries the summary and only the recent messages.
    last = script.requests[-1]
    assert "Summary of the earlier conversation" in str(last["messages"])
    assert [m["content"] for m in last["messages"] if m["role"] == "user"][-1] == "three"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_instructions_join_the_system_prompt_for_their_turn_only(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    provider: str,
) -> None:
    make = openai_agent if provider == "openai" else anthropic_agent
    define(settings, "bot", make(models))
    await start_worker()
    script = models.reset()
    sid = await settled_session(client, "bot")
    [d async for d in client.turn(sid, "Hi", instructions="Answer in French.")]
    [d async for d in client.turn(sid, "Again")]
    first, second = script.requests

    def system(body: dict[str, object]) -> str:
        if provider == "anthropic":
            return str(body["system"])
        messages = body["messages"]
        assert isinstance(messages, list)
        return " ".join(str(m["content"]) for m in messages if m["role"] == "system")

    assert "You are Praxis test bot" in system(first) and "Answer in French." in system(first)
    assert system(first).index("You are Praxis") < system(first).index("Answer in French.")
    assert "You are Praxis test bot" in system(second) and "French" not in system(second)
    # Kept with the message, as every interface shows it.
    stored = await stored_events(client, sid)
    said = [e for e in stored if e.type == "user.message"]
    assert [getattr(e, "instructions", None) for e in said] == ["Answer in French.", None]
