"""Issue 9: the CLI talks to a remote edge with an API key (PRAXIS_EDGE_URL, PRAXIS_API_KEY),
with no way to the bus at all: the same commands, the same output, the owner's sessions
only."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from subprocess import CompletedProcess

from praxis.bus import SessionClient, Settings
from praxis.bus import keys as api_keys
from praxis.schemas import Interface, SessionState
from tests.conftest import ROOT, EdgeProcess, InProcessWorker, edge_env, praxis
from tests.fake_models import Call, FakeModelServer, Text
from tests.test_approvals import REFUND
from tests.test_model_agents import define, openai_agent

Cli = Callable[..., Awaitable[CompletedProcess[str]]]


def remote(tmp_path: Path, edge: EdgeProcess, key: str | None, **extra: str) -> Cli:
    """The CLI of a user with an API key and no way to the bus (its URL goes nowhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PRAXIS_DATA_DIR": str(tmp_path / "nothing-here"),
        "PRAXIS_NATS_URL": "nats://127.0.0.1:1",
        "PRAXIS_EDGE_URL": edge.url,
        **extra,
    }
    if key is not None:
        env["PRAXIS_API_KEY"] = key

    def cli(*args: str, stdin: str = "") -> Awaitable[CompletedProcess[str]]:
        return asyncio.to_thread(praxis, env, *args, stdin=stdin)

    return cli


async def test_the_cli_drives_sessions_through_a_remote_edge_with_a_key(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    secured_edge: EdgeProcess,
    tmp_path: Path,
) -> None:
    await start_worker()
    _, alice_key = await api_keys.create_key(client.bus, "alice", "acme")
    _, bob_key = await api_keys.create_key(client.bus, "bob", "globex")
    alice, bob = remote(tmp_path, secured_edge, alice_key), remote(tmp_path, secured_edge, bob_key)

    ran = await alice("agent", "run", "echo", "--message", "hello over http", "--task-id", "t-9")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "hello over http"
    sid = ran.stderr.split("Session created: ")[1].split()[0]
    record = await client.get(sid)
    assert record.owner is not None and record.owner.principal == "alice"
    assert record.task_id == "t-9" and record.created_by is Interface.API

    listed = await alice("agent", "list-sessions", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["session_id"] for r in json.loads(listed.stdout)] == [sid]
    shown = await alice("agent", "show-session", sid, "--json")
    data = json.loads(shown.stdout)
    assert data["state"] == "ACTIVE" and data["counters"]["user_messages"] == 1
    assert [h["content"] for h in data["history"]] == ["hello over http", "hello over http"]

    told = await alice("agent", "run", "recall", "--message", "x", "--instructions", "in verse")
    assert told.returncode == 0, told.stderr
    assert json.loads(told.stdout)["instructions"] == "in verse"  # sent over REST

    assert (await alice("agent", "suspend", sid)).stdout.strip().endswith("SUSPENDED")
    again = await alice("agent", "resume", sid, "--message", "and again")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "and again"
    assert "hello over http" in again.stderr  # the last messages, shown first
    chat = await alice("agent", "resume", sid, stdin="third\n")
    assert chat.returncode == 0, chat.stderr
    assert "Agent: third" in chat.stdout
    assert (await client.get(sid)).counters.user_messages == 3

    # Another owner's session is unknown to bob, as if it did not exist; bob sees none.
    for args in (("show-session", sid), ("resume", sid, "--message", "x"), ("suspend", sid)):
        other = await bob("agent", *args)
        assert other.returncode == 1 and f"unknown session '{sid}'" in other.stderr, other
    assert json.loads((await bob("agent", "list-sessions", "--json")).stdout) == []

    assert (await alice("agent", "complete", sid)).returncode == 0
    assert (await client.get(sid)).state is SessionState.COMPLETED
    late = await alice("agent", "resume", sid, "--message", "too late")
    assert late.returncode == 1 and "COMPLETED" in late.stderr

    # Without a key, or with a wrong one: one clear line, no traceback.
    for key in (None, "prx_key_nope.nothing"):
        refused = await remote(tmp_path, secured_edge, key)("agent", "list-sessions")
        assert refused.returncode == 1
        assert "PRAXIS_API_KEY" in refused.stderr and "Traceback" not in refused.stderr
    unknown = await alice("agent", "run", "nobody", "--message", "hi")
    assert unknown.returncode == 1
    assert unknown.stderr.count("unknown agent 'nobody'") == 1, unknown.stderr  # said once
    assert "known agents: boom, crash, echo, hang, hello-world, recall, slow" in unknown.stderr


async def test_through_an_edge_an_agent_defined_here_says_to_restart_the_workers(
    client: SessionClient,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    secured_edge: EdgeProcess,
    tmp_path: Path,
) -> None:
    """The hint the bus path gives, through an edge too: the agent is defined in this
    installation (PRAXIS_AGENTS here) and the running workers do not offer it."""
    await start_worker()
    _, key = await api_keys.create_key(client.bus, "carol", "acme")
    cli = remote(tmp_path, secured_edge, key, PRAXIS_AGENTS="tests.agents_for_tests:Drawl")
    ran = await cli("agent", "run", "drawl", "--message", "hi")
    assert ran.returncode == 1
    assert ran.stderr.count("unknown agent 'drawl'") == 1, ran.stderr
    assert "the running workers do not offer it" in ran.stderr, ran.stderr


async def test_bus_commands_with_only_an_edge_say_they_need_the_bus(tmp_path: Path) -> None:
    """Only PRAXIS_EDGE_URL: the commands that work on the bus refuse with one line instead
    of showing a local embedded server's (empty) bus."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PRAXIS_DATA_DIR": str(tmp_path / "local"),
        "PRAXIS_EDGE_URL": "http://127.0.0.1:1",
    }
    for args in (["workers"], ["status"], ["agent", "export", "ses_x"], ["bus", "provision"]):
        done = await asyncio.to_thread(praxis, env, *args)
        assert done.returncode == 1, (args, done)
        line = done.stderr.strip()
        assert "works on the bus, not through an edge" in line and "PRAXIS_NATS_URL" in line
        assert len(line.splitlines()) == 1, line
    assert not (tmp_path / "local" / "nats").exists()  # no local server was started


async def test_approving_a_tool_call_through_a_remote_edge(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    define(settings, "shop", openai_agent(models, REFUND))
    await start_worker()
    edge = EdgeProcess(edge_env(settings, PRAXIS_AUTH="on"), tmp_path / "edge.log").start()
    try:
        _, key = await api_keys.create_key(client.bus, "alice", "acme")
        alice = remote(tmp_path, edge, key)
        models.reset(Call("refund", {"order": "5"}, call_id="r5", text="Sure."), Text("Done: 5."))
        ran = await alice("agent", "run", "shop", "--message", "Refund order 5")
        assert ran.returncode == 3, ran.stderr
        sid = ran.stderr.split("Session created: ")[1].split()[0]
        assert f"praxis agent approve {sid} r5" in ran.stderr
        approved = await alice("agent", "approve", sid)
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.strip() == "Sure.\n\nDone: 5."
        nothing = await alice("agent", "approve", sid)
        assert nothing.returncode == 1 and "no tool call waiting" in nothing.stderr
    finally:
        edge.stop()
