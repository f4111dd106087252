"""MCP servers in real use: a real server (``tests/mcp_server.py``, written with the
``mcp`` package) over stdio and streamable HTTP, driven by a model agent whose model is a
fake OpenAI server. Each call carries the session context; a stdio server serves many
turns from one process, is restarted when it dies, is bounded when it hangs, shares its
connection between sessions up to its limit, and is stopped when the worker drains."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings
from praxis.schemas import ToolResult, TurnCompleted, TurnFailed
from praxis.workers.agents.model import ModelAgent
from tests import mcp_server
from tests.agents_for_tests import tool_calls_logged
from tests.conftest import ROOT, InProcessWorker, eventually, settled_session
from tests.fake_models import Call, FakeModelServer, LoopbackServer, Text
from tests.test_model_agents import define, openai_agent


def stdio_agent(models: FakeModelServer, log: Path, extra: str = "") -> str:
    return openai_agent(
        models,
        "\n[[mcp]]\n"
        f'command = "{sys.executable}"\n'
        'args = ["-m", "tests.mcp_server"]\n'
        f'cwd = "{ROOT}"\n'
        'tool_prefix = "ext"\n'
        f'env = {{ PRAXIS_TEST_TOOL_LOG = "{log}", PYTHONPATH = "{ROOT}" }}\n' + extra,
    )


def context_seen(log: Path) -> list[dict[str, object]]:
    return [c for c in tool_calls_logged(str(log)) if c["tool"] == "context"]


def alive(pid: int) -> bool:
    """Running (a process that exited but was not reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_every_call_carries_the_session_and_one_process_serves_every_turn(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    log = tmp_path / "mcp.jsonl"
    define(settings, "ctxbot", stdio_agent(models, log))
    worker = await start_worker()
    sids = [await settled_session(client, "ctxbot", task_id=f"task-{i}") for i in range(2)]
    alice = SessionClient(client.bus, actor="alice")
    for turn in range(3):
        for sid in sids:
            models.reset(Call("ext_context", {}, call_id=f"c{turn}"), Text("noted"))
            events = await alice.wait(await alice.send(sid, f"turn {turn}"))
            assert isinstance(events[-1], TurnCompleted), events
    seen = context_seen(log)
    assert len(seen) == 6
    records = {sid: await client.get(sid) for sid in sids}
    for call, sid in zip(seen, sids * 3, strict=True):
        meta = call["meta"]
        assert isinstance(meta, dict)
        assert meta["praxis/session_id"] == sid
        assert meta["praxis/task_id"] == records[sid].task_id
        assert meta["praxis/agent"] == "ctxbot"
        assert meta["praxis/actor"] == "alice"  # who sent the message
        assert str(meta["praxis/turn_id"]).isdigit()  # the cursor of the message it answers
    assert len({str(c["meta"]["praxis/turn_id"]) for c in seen}) == 6  # type: ignore[index]
    assert len({c["pid"] for c in seen}) == 1  # one process for six turns of two sessions
    (server,) = agent_servers(worker, "ctxbot")
    assert server.starts == 1


def agent_servers(worker: InProcessWorker, name: str) -> list[object]:
    agent = worker.worker.registry.get(name)
    assert isinstance(agent, ModelAgent)
    return list(agent.servers())


async def test_a_server_that_dies_fails_that_turn_and_is_restarted(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    log = tmp_path / "mcp.jsonl"
    define(settings, "diebot", stdio_agent(models, log))
    worker = await start_worker()
    sid = await settled_session(client, "diebot")
    models.reset(Call("ext_context", {}, call_id="c1"), Text("ok"))
    await client.wait(await client.send(sid, "before"))
    (first,) = [c["pid"] for c in context_seen(log)]

    models.reset(Call("ext_die", {}, call_id="d1"), Text("unreachable"))
    events = await client.wait(await client.send(sid, "crash it"))
    [failed] = [e for e in events if isinstance(e, TurnFailed)]
    assert "MCP server 'ext' stopped during the call of die" in failed.reason, failed.reason
    assert "being restarted" in failed.reason
    assert isinstance(first, int) and not alive(first)

    # The session goes on, and the next turn finds the server started again.
    models.reset(Call("ext_context", {}, call_id="c2"), Text("back"))
    events = await client.wait(await client.send(sid, "after"))
    assert isinstance(events[-1], TurnCompleted), events
    second = context_seen(log)[-1]["pid"]
    assert second != first
    (server,) = agent_servers(worker, "diebot")
    assert server.starts == 2  # type: ignore[attr-defined]


async def test_a_hung_call_is_bounded_by_the_servers_timeout(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    log = tmp_path / "mcp.jsonl"
    # 3 s: the server's timeout also bounds its start, which a loaded machine can take
    # more than a second for (a Python MCP server imports its library first).
    define(settings, "napbot", stdio_agent(models, log, "timeout = 3\n"))
    await start_worker()
    sid = await settled_session(client, "napbot")
    models.reset(Call("ext_nap", {"seconds": 30}, call_id="n1"), Text("It did not answer."))
    began = asyncio.get_running_loop().time()
    events = await client.wait(await client.send(sid, "take a nap"))
    took = asyncio.get_running_loop().time() - began
    assert isinstance(events[-1], TurnCompleted), events
    assert took < 15, took  # the call gave up after 3 s, not 30
    # The model was told, and the server still answers the next call.
    models.reset(Call("ext_context", {}, call_id="c1"), Text("fine"))
    events = await client.wait(await client.send(sid, "still there?"))
    assert isinstance(events[-1], TurnCompleted), events
    assert context_seen(log)


async def test_sessions_share_a_server_up_to_its_limit_and_drain_stops_it(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    """max_concurrent_calls = 1: two sessions' calls at once run one after the other, on
    one process; when the worker drains, the process ends."""
    log = tmp_path / "mcp.jsonl"
    define(settings, "onebot", stdio_agent(models, log, "max_concurrent_calls = 1\n"))
    worker = await start_worker()
    sids = [await settled_session(client, "onebot") for _ in range(2)]
    models.reset(
        Call("ext_nap", {"seconds": 0.4}, call_id="a"),
        Call("ext_nap", {"seconds": 0.4}, call_id="b"),
        always=Text("rested"),
    )
    receipts = [await client.send(sid, "nap") for sid in sids]
    outcomes = await asyncio.gather(*(client.wait(r) for r in receipts))
    assert all(isinstance(events[-1], TurnCompleted) for events in outcomes), outcomes
    naps = [c for c in tool_calls_logged(str(log)) if c["tool"] == "nap"]
    assert len(naps) == 2 and naps[0]["pid"] == naps[1]["pid"]
    first, second = sorted(naps, key=lambda n: float(n["began"]))  # type: ignore[arg-type]
    assert float(second["began"]) >= float(first["ended"])  # type: ignore[arg-type]
    pid = naps[0]["pid"]
    assert isinstance(pid, int) and alive(pid)
    await worker.stop()

    async def gone() -> bool:
        return not alive(pid)

    await eventually(gone, 10, "the MCP server to stop with the worker")


async def test_an_http_server_gets_the_session_in_meta_and_headers(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "mcp.jsonl"
    monkeypatch.setenv("PRAXIS_TEST_TOOL_LOG", str(log))  # the server runs in this process
    server = LoopbackServer(mcp_server.server.streamable_http_app()).start()
    try:
        define(
            settings,
            "webctx",
            openai_agent(
                models,
                f'\n[[mcp]]\nurl = "{server.url}/mcp"\nsession_headers = true\n'
                'headers = { X-Team = "blue" }\n',
            ),
        )
        await start_worker()
        sid = await settled_session(client, "webctx", task_id="task-web")
        models.reset(Call("context", {}, call_id="c1"), Text("seen"))
        events = await client.wait(await client.send(sid, "who am I?"))
        assert isinstance(events[-1], TurnCompleted), events
        result = next(e for e in events if isinstance(e, ToolResult))
        seen = json.loads(str(result.content))
    finally:
        server.stop()
    assert seen["meta"]["praxis/session_id"] == sid
    assert seen["meta"]["praxis/task_id"] == "task-web"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-praxis-session-id"] == sid
    assert headers["x-praxis-task-id"] == "task-web"
    assert headers["x-praxis-agent"] == "webctx"
    assert headers["x-praxis-turn-id"] == seen["meta"]["praxis/turn_id"]
