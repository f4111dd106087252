"""Issue 8: tool calls as events, a crash after a tool ran does not run it again, and
human approval: the turn pauses holding no worker, survives worker restarts, and goes on
when approved or denied."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from praxis.bus import (
    IllegalTransitionError,
    Receipt,
    SessionClient,
    Settings,
    ToolCallNotWaitingError,
)
from praxis.schemas import (
    MessageQueued,
    ToolCallsRequested,
    ToolDecided,
    ToolResult,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    TurnWaiting,
    UserMessageAccepted,
)
from tests import mcp_server
from tests.agents_for_tests import tool_calls_logged
from tests.conftest import (
    ROOT,
    EdgeProcess,
    InProcessWorker,
    WorkerProcess,
    env_for,
    eventually,
    live_workers,
    praxis,
    settled_session,
    stored_events,
)
from tests.fake_models import Call, FakeModelServer, LoopbackServer, Text
from tests.test_model_agents import define, openai_agent

REFUND = '\n[[tools]]\nfunction = "tests.agents_for_tests:refund"\nrequires_approval = true\n'
LOOKUP = '\n[[tools]]\nfunction = "tests.agents_for_tests:lookup_order"\n'


async def _types(client: SessionClient, sid: str) -> list[str]:
    return [e.type for e in await stored_events(client, sid)]


async def test_tool_calls_and_results_are_events_of_the_history(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
) -> None:
    define(settings, "shop", openai_agent(models, LOOKUP))
    await start_worker()
    models.reset(Call("lookup_order", {"order": "42"}, call_id="c42"), Text("It shipped."))
    sid = await settled_session(client, "shop")
    await client.wait(await client.send(sid, "Where is 42?"))
    events = await stored_events(client, sid)
    turn = [e.type for e in events][-6:]
    assert turn == [
        "user.message",
        "turn.started",
        "tool.calls",
        "tool.result",
        "agent.message",
        "turn.completed",
    ]
    calls = next(e for e in events if isinstance(e, ToolCallsRequested))
    assert [(c.call_id, c.tool, c.args, c.needs_approval) for c in calls.calls] == [
        ("c42", "lookup_order", {"order": "42"}, False)
    ]
    result = next(e for e in events if isinstance(e, ToolResult))
    assert (result.call_id, result.content) == ("c42", "order 42: shipped on Monday")


async def test_a_crash_after_a_tool_ran_does_not_run_it_again(
    client: SessionClient,
    settings: Settings,
    worker_processes: Callable[..., list[WorkerProcess]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    """The worker dies while the model answers after the tool's result was recorded. The
    next worker replays the model's first response and the tool's result, and asks the
    model only what it had not answered: the tool ran once."""
    define(settings, "shop", openai_agent(models, LOOKUP))
    log = str(tmp_path / "tools.jsonl")
    [first] = worker_processes(1, PRAXIS_TEST_TOOL_LOG=log)
    await live_workers(client, 1)
    script = models.reset(
        Call("lookup_order", {"order": "9"}, call_id="c9", text="Looking."),
        Text("never finished", delay=20),
        Text("Order 9 shipped."),
    )
    sid = await settled_session(client, "shop")
    receipt = await client.send(sid, "Where is 9?")

    async def tool_done() -> bool:
        return "tool.result" in await _types(client, sid) and len(script.requests) == 2

    await eventually(tool_done, what="the tool's result, and the model asked again")
    first.proc.kill()
    first.proc.wait()
    worker_processes(1, PRAXIS_TEST_TOOL_LOG=log)
    events = await client.wait(receipt)
    assert any(isinstance(e, TurnCompleted) for e in events), events
    assert [c["order"] for c in tool_calls_logged(log)] == ["9"]
    assert len(script.requests) == 3  # the first response was replayed, not asked again
    assert "order 9: shipped on Monday" in str(script.requests[2]["messages"])
    history = await client.history(sid)
    assert history[-1].content == "Looking.\n\nOrder 9 shipped."
    starts = [e for e in await stored_events(client, sid) if isinstance(e, TurnStarted)]
    assert [s.attempt for s in starts][-2:] == [1, 2]


async def test_approval_survives_a_worker_restart_then_the_turn_goes_on(
    client: SessionClient,
    edge: EdgeProcess,
    settings: Settings,
    worker_processes: Callable[..., list[WorkerProcess]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    define(settings, "shop", openai_agent(models, REFUND))
    log = str(tmp_path / "tools.jsonl")
    [first] = worker_processes(1, PRAXIS_TEST_TOOL_LOG=log)
    await live_workers(client, 1)
    script = models.reset(
        Call("refund", {"order": "7"}, call_id="r7", text="I can refund that."),
        Text("Refunded order 7."),
    )
    sid = await settled_session(client, "shop")
    events = await client.wait(await client.send(sid, "Refund order 7"))
    waiting = events[-1]
    assert isinstance(waiting, TurnWaiting) and waiting.final
    assert [(c.call_id, c.tool, c.needs_approval) for c in waiting.calls] == [
        ("r7", "refund", True)
    ]
    assert waiting.text == "I can refund that."
    record = await client.get(sid)
    assert [c.call_id for c in record.waiting_for] == ["r7"]
    assert tool_calls_logged(log) == []  # not run before the approval

    # The wait holds no worker: restart it.
    first.proc.terminate()
    first.proc.wait()
    worker_processes(1, PRAXIS_TEST_TOOL_LOG=log)
    await live_workers(client, 1)
    with pytest.raises(ToolCallNotWaitingError, match="no tool call 'nope'"):
        await client.approve(sid, "nope")
    # Approved over REST.
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        view = (await http.get(f"/agent-sessions/{sid}")).json()
        assert [c["call_id"] for c in view["waiting_for"]] == ["r7"]
        assert view["waiting_for"][0]["args"] == {"order": "7"}
        wrong = await http.post(f"/agent-sessions/{sid}/tool-calls/nope/approve")
        assert wrong.status_code == 409 and wrong.json()["waiting"] == ["r7"]
        missing = await http.post("/agent-sessions/nobody/tool-calls/r7/approve")
        assert missing.status_code == 404
        bad = await http.post(f"/agent-sessions/{sid}/tool-calls/r7/approve", json={"x": 1})
        assert bad.status_code == 422
        ok = await http.post(
            f"/agent-sessions/{sid}/tool-calls/r7/approve", json={"reason": "receipt seen"}
        )
        assert ok.status_code == 202, ok.text
        body = ok.json()
    events = await client.wait(Receipt(sid, body["command_id"], body["cursor"]))
    decided = next(e for e in events if isinstance(e, ToolDecided))
    assert decided.approved and decided.tool == "refund" and decided.reason == "receipt seen"
    assert decided.interface is not None and decided.interface.value == "api"
    assert isinstance(events[-1], TurnCompleted)
    assert [c["order"] for c in tool_calls_logged(log)] == ["7"]
    assert len(script.requests) == 2
    assert (await client.history(sid))[-1].content == "I can refund that.\n\nRefunded order 7."
    assert (await client.get(sid)).waiting_for == []
    with pytest.raises(ToolCallNotWaitingError):
        await client.approve(sid, "r7")


async def test_a_denied_call_is_not_run_and_the_model_is_told_why(
    client: SessionClient,
    edge: EdgeProcess,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = str(tmp_path / "tools.jsonl")
    monkeypatch.setenv("PRAXIS_TEST_TOOL_LOG", log)
    define(settings, "shop", openai_agent(models, REFUND))
    await start_worker()
    script = models.reset(Call("refund", {"order": "8"}, call_id="r8"), Text("Understood."))
    sid = await settled_session(client, "shop")
    await client.wait(await client.send(sid, "Refund order 8"))
    # Denied over GraphQL.
    query = (
        "query($id: String!) { agentSession(sessionId: $id) "
        "{ waitingFor { callId tool args needsApproval } } }"
    )
    mutation = (
        "mutation($id: String!, $call: String!, $why: String) "
        "{ denyToolCall(sessionId: $id, callId: $call, reason: $why) { commandId cursor } }"
    )
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        shown = await http.post("/graphql", json={"query": query, "variables": {"id": sid}})
        assert shown.json()["data"]["agentSession"]["waitingFor"] == [
            {"callId": "r8", "tool": "refund", "args": {"order": "8"}, "needsApproval": True}
        ]
        variables = {"id": sid, "call": "nope", "why": None}
        wrong = await http.post("/graphql", json={"query": mutation, "variables": variables})
        assert wrong.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
        variables = {"id": sid, "call": "r8", "why": "not without a receipt"}
        denied = await http.post("/graphql", json={"query": mutation, "variables": variables})
        receipt = denied.json()["data"]["denyToolCall"]
    events = await client.wait(Receipt(sid, receipt["commandId"], receipt["cursor"]))
    assert isinstance(events[-1], TurnCompleted)
    result = next(e for e in await stored_events(client, sid) if isinstance(e, ToolResult))
    assert result.denied
    assert result.content == "The user denied this call of refund: not without a receipt"
    assert "not without a receipt" in str(script.requests[-1]["messages"])
    assert tool_calls_logged(log) == []


async def test_messages_while_waiting_follow_double_texting(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRAXIS_TEST_TOOL_LOG", str(tmp_path / "tools.jsonl"))
    define(settings, "shop", openai_agent(models, REFUND))
    await start_worker()

    async def waiting_session() -> str:
        models.reset(Call("refund", {"order": "1"}, call_id="r1", text="Let me."))
        sid = await settled_session(client, "shop")
        await client.wait(await client.send(sid, "Refund order 1"))
        return sid

    # enqueue (default): kept, answered once the waiting turn has ended.
    sid = await waiting_session()
    queued = await client.wait(await client.send(sid, "and my other order?"))
    assert isinstance(queued[-1], MessageQueued)
    models.reset(Text("Refunded."))  # then the queued message: "model heard: ..."
    await client.wait(await client.approve(sid, "r1"))

    async def answered() -> bool:
        return (await client.history(sid))[-1].content == "model heard: and my other order?"

    await eventually(answered, what="the queued message to be answered")
    contents = [h.content for h in await client.history(sid)]
    assert contents[-3:] == ["Let me.\n\nRefunded.", "and my other order?", contents[-1]]

    # reject: refused, the turn still waits.
    sid = await waiting_session()
    refused = await client.wait(await client.send(sid, "hello?", on_busy="reject"))
    assert refused[-1].type == "command.rejected"
    assert "waiting for approval of refund" in getattr(refused[-1], "reason", "")
    assert [c.call_id for c in (await client.get(sid)).waiting_for] == ["r1"]

    # interrupt: the waiting turn ends (its words kept, interrupted), the message is answered.
    models.reset()
    events = await client.wait(await client.send(sid, "forget it", on_busy="interrupt"))
    failed = next(e for e in events if isinstance(e, TurnFailed))
    assert failed.cancelled and failed.reason.startswith("interrupted: a newer message")
    assert any(isinstance(e, UserMessageAccepted) for e in events)
    assert isinstance(events[-1], TurnCompleted)
    history = await client.history(sid)
    assert history[-3].content == "Let me." and history[-3].interrupted
    assert (await client.get(sid)).waiting_for == []
    with pytest.raises(ToolCallNotWaitingError):
        await client.approve(sid, "r1")

    # Suspended: no decisions; completing ends the waiting turn.
    sid = await waiting_session()
    await client.suspend(sid)
    with pytest.raises(IllegalTransitionError, match="SUSPENDED"):
        await client.approve(sid, "r1")
    await client.complete(sid)
    kinds = await _types(client, sid)
    assert kinds[-2:] == ["turn.failed", "session.state_changed"]
    assert (await client.get(sid)).waiting_for == []


async def test_approve_in_the_cli(
    client: SessionClient,
    settings: Settings,
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    """One message: exit 3 and how to approve; 'praxis agent approve' goes on; in a chat the
    CLI asks."""
    log = str(tmp_path / "tools.jsonl")
    define(settings, "shop", openai_agent(models, REFUND))
    env = env_for(settings, PRAXIS_INPROCESS_WORKER="always", PRAXIS_TEST_TOOL_LOG=log)

    def cli(*args: str, stdin: str = ""):  # type: ignore[no-untyped-def]
        return asyncio.to_thread(praxis, env, *args, stdin=stdin)

    models.reset(Call("refund", {"order": "5"}, call_id="r5", text="Sure."), Text("Done: 5."))
    ran = await cli("agent", "run", "shop", "--message", "Refund order 5")
    assert ran.returncode == 3, ran.stderr
    sid = ran.stderr.split("Session created: ")[1].split()[0]
    assert 'waits for approval of refund({"order": "5"}) (call r5)' in ran.stderr
    assert f"praxis agent approve {sid} r5" in ran.stderr
    assert ran.stdout.strip() == "Sure."
    unknown = await cli("agent", "approve", sid, "r9")
    assert unknown.returncode == 1 and "no tool call 'r9'" in unknown.stderr
    approved = await cli("agent", "approve", sid)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == "Sure.\n\nDone: 5."
    assert [c["order"] for c in tool_calls_logged(log)] == ["5"]
    nothing = await cli("agent", "approve", sid)
    assert nothing.returncode == 1 and "no tool call waiting" in nothing.stderr

    # In a chat, the CLI asks; an answer other than yes or no is the denial's reason.
    models.reset(Call("refund", {"order": "6"}, call_id="r6"), Text("As you wish."))
    chat = await cli("agent", "run", "shop", stdin="Refund order 6\nnot this one\n")
    assert chat.returncode == 0, chat.stderr
    assert 'Allow refund({"order": "6"})? [y/N]' in chat.stdout
    assert "Agent: As you wish." in chat.stdout
    assert '[tool] refund({"order": "6"}) (needs approval)' in chat.stderr
    assert "[denied] The user denied this call of refund: not this one" in chat.stderr
    sid = chat.stderr.split("Session created: ")[1].split()[0]
    decided = [e for e in await stored_events(client, sid) if isinstance(e, ToolDecided)]
    assert [(d.approved, d.reason, d.interface and d.interface.value) for d in decided] == [
        (False, "not this one", "cli")
    ]
    assert [c["order"] for c in tool_calls_logged(log)] == ["5"]


def mcp_agent(models: FakeModelServer, log: str) -> str:
    return openai_agent(
        models,
        "\n[[mcp]]\n"
        f'command = "{sys.executable}"\n'
        'args = ["-m", "tests.mcp_server"]\n'
        f'cwd = "{ROOT}"\n'
        'tool_prefix = "ext"\n'
        'requires_approval = ["ext_delete_*"]\n'
        f'env = {{ PRAXIS_TEST_TOOL_LOG = "{log}", PYTHONPATH = "{ROOT}" }}\n',
    )


async def test_mcp_stdio_tools_with_events_and_approval(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    """A real MCP server (the mcp package, over stdio) gives the agent its tools; its calls
    are events like any tool's, and its tools can need approval."""
    log = str(tmp_path / "mcp.jsonl")
    define(settings, "mcpbot", mcp_agent(models, log))
    await start_worker()
    script = models.reset(
        Call("ext_weather", {"city": "Oslo"}, call_id="w1"), Text("Sunny in Oslo.")
    )
    sid = await settled_session(client, "mcpbot")
    events = await client.wait(await client.send(sid, "Weather in Oslo?"))
    assert isinstance(events[-1], TurnCompleted), events
    tools = {t["function"]["name"] for t in script.requests[0]["tools"]}
    assert tools >= {"ext_weather", "ext_delete_account", "ext_context"}
    result = next(e for e in events if isinstance(e, ToolResult))
    assert (result.tool, result.content) == ("ext_weather", "sunny in Oslo, 21 C")
    assert tool_calls_logged(log) == [{"tool": "weather", "city": "Oslo"}]

    models.reset(Call("ext_delete_account", {"user": "bob"}, call_id="d1"), Text("Deleted."))
    events = await client.wait(await client.send(sid, "Delete bob"))
    assert isinstance(events[-1], TurnWaiting)
    assert [(c.tool, c.needs_approval) for c in events[-1].calls] == [("ext_delete_account", True)]
    assert len(tool_calls_logged(log)) == 1
    events = await client.wait(await client.approve(sid, "d1"))
    assert isinstance(events[-1], TurnCompleted)
    assert tool_calls_logged(log)[-1] == {"tool": "delete_account", "user": "bob"}


async def test_mcp_streamable_http_tools(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same server over streamable HTTP on a loopback port."""
    log = str(tmp_path / "mcp.jsonl")
    monkeypatch.setenv("PRAXIS_TEST_TOOL_LOG", log)  # the server runs in this process
    server = LoopbackServer(mcp_server.server.streamable_http_app()).start()
    try:
        define(
            settings,
            "webbot",
            openai_agent(models, f'\n[[mcp]]\nurl = "{server.url}/mcp"\n'),
        )
        await start_worker()
        models.reset(Call("weather", {"city": "Rome"}, call_id="w2"), Text("Sunny in Rome."))
        sid = await settled_session(client, "webbot")
        events = await client.wait(await client.send(sid, "Weather in Rome?"))
        assert isinstance(events[-1], TurnCompleted), events
        result = next(e for e in events if isinstance(e, ToolResult))
        assert result.content == "sunny in Rome, 21 C"
        assert tool_calls_logged(log) == [{"tool": "weather", "city": "Rome"}]
    finally:
        server.stop()
