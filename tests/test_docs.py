"""The examples of the README and of the documentation site (docs/) run as written, and
every Python example there is one these tests run."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings
from praxis.bus.embedded import NatsServer
from praxis.bus.permissions import Role
from praxis.bus.state import load_head
from praxis.schemas import ToolResult
from praxis.workers.agents import Agent, TurnContext
from praxis.workers.agents.spec import read_definition
from tests.conftest import (
    ROOT,
    EdgeProcess,
    InProcessWorker,
    WorkerProcess,
    credentials,
    env_for,
    eventually,
    fresh_env,
    live_count_is,
    live_workers,
    praxis,
    settled_session,
    spawn_praxis,
)
from tests.fake_models import Call, FakeModelServer, Text
from tests.test_model_agents import define, openai_agent

README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    block for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
]

MARKERS = {
    "SessionClient(bus)": "test_client_examples_run",
    "class Shout(Agent)": "test_agent_examples_work",
    "def refund(ctx: RunContext[ToolContext]": "test_tool_example_defines_a_tool",
    "connect_sse": "test_http_examples_run",
    "import requests": "test_requests_example_prints_the_reply_as_it_streams",
    "WebsocketsTransport": "test_graphql_examples_run",
    '"kind": "create_session"': "test_pipeline_example_runs_with_plain_nats_py",
    "async def follow(session_id": "test_a_service_follows_events_with_nats_py_and_its_seed",
    "def lookup_order(order: str, ctx: Context)": "test_mcp_server_example_gets_the_task",
    "client.conversations.create(": "test_openai_sdk_example_runs",
}
"""Each Python example a page shows, by a string only it holds, and the test that runs it."""


def test_every_python_example_is_run_by_a_test() -> None:
    for block in BLOCKS:
        found = [marker for marker in MARKERS if marker in block]
        assert len(found) == 1, f"an example no test runs (add it to MARKERS):\n{block[:300]}"
    for marker, test in MARKERS.items():
        assert any(marker in b for b in BLOCKS), f"{marker!r}: no page shows it any more"
        assert test in globals(), test


def examples(marker: str) -> list[str]:
    """Every distinct example that holds ``marker`` (the README's and a page's may differ)."""
    return list(dict.fromkeys(b for b in BLOCKS if marker in b))


async def run_example(
    marker: str, env: dict[str, str], example: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the Python example that contains ``marker`` (or ``example``); it must succeed."""
    example = example or examples(marker)[0]
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", example],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


async def test_client_examples_run(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    worker_processes(1)
    await live_workers(client, 1)
    for example in examples("SessionClient(bus)"):
        done = await run_example("", env_for(settings, Role.SERVICE), example)
        assert 'You said: "Help me with coding". That is your ' in done.stdout


async def test_agent_examples_work() -> None:
    for example in examples("class Shout(Agent)"):
        namespace: dict[str, object] = {}
        exec(example, namespace)
        shout = namespace["Shout"]
        assert isinstance(shout, type) and issubclass(shout, Agent)
        agent = shout()
        ctx = TurnContext("s", "t", "shout", {}, (), 1, "make some noise")
        assert [p async for p in agent.respond(ctx)] == ["MAKE ", "SOME ", "NOISE "]
        greeting = agent.greet(ctx)
        assert greeting is not None and [p async for p in greeting] == ["HELLO!"]


def test_tool_example_defines_a_tool() -> None:
    (example,) = examples("def refund(ctx: RunContext[ToolContext]")
    namespace: dict[str, object] = {}
    exec(example, namespace)  # its imports are real; it calls your service only when run
    refund = namespace["refund"]
    assert callable(refund) and refund.__doc__ == "Refund an order."


def test_agent_definition_example_is_a_valid_definition(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "agents.md").read_text()
    (toml,) = re.findall(r"```toml\n(.*?)```", page, re.S)
    (tmp_path / "support.toml").write_text(toml)
    definition = read_definition(tmp_path / "support.toml")
    assert (definition.name, definition.model) == ("support", "openai:gpt-4o-mini")
    assert [t.requires_approval for t in definition.tools] == [False, True]
    assert [m.tool_prefix for m in definition.mcp] == ["shop", None]


def test_quick_start_commands_are_the_ci_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install . && praxis agent run hello-world" in README
    assert "pip install -e '.[test]' && python -m pytest" in README
    assert "pip install --quiet -e '.[test]'" in ci and "\npython -m pytest\n" in ci


async def test_http_examples_run(
    edge: EdgeProcess, client: SessionClient, worker_processes: Callable[[int], list[WorkerProcess]]
) -> None:
    worker_processes(1)
    await live_workers(client, 1)
    env = {**env_for(client.bus.settings), "PRAXIS_EDGE_URL": edge.url}
    for example in examples("connect_sse"):
        done = await run_example("", env, example)
        check_http_output(done.stdout)


def check_http_output(stdout: str) -> None:
    lines = stdout.splitlines()
    assert lines[0].startswith('You said: "How do I handle errors?". That is your 2nd message')
    assert lines[1:] == [
        "user: Help me with coding",  # answered at once: no greeting before it
        'agent: You said: "Help me with coding". That is your first message in this session.',
        "user: How do I handle errors?",
        lines[0].replace("You said", "agent: You said", 1),
    ]


async def test_requests_example_prints_the_reply_as_it_streams(
    edge: EdgeProcess, client: SessionClient, worker_processes: Callable[[int], list[WorkerProcess]]
) -> None:
    """The roadmap's API workflow with python requests, reading every `data:` line's
    `event["data"]["content"]` (it raised KeyError on turn.started and token.delta)."""
    worker_processes(1)
    await live_workers(client, 1)
    env = {**env_for(client.bus.settings), "PRAXIS_EDGE_URL": edge.url}
    done = await run_example("import requests", env)
    lines = done.stdout.splitlines()
    reply = next(ln for ln in lines if ln.startswith('You said: "How do I handle errors?"'))
    after = lines[lines.index("How do I handle errors?") + 1 :]
    end = len(after) - 1 - after[::-1].index(reply)  # the whole reply, printed last
    streamed = "".join(after[:end])
    assert streamed == reply  # the pieces, as they came (a fast turn's as one), then the reply


async def test_graphql_examples_run(edge: EdgeProcess, worker: InProcessWorker) -> None:
    env = {**env_for(worker.worker.bus.settings), "PRAXIS_EDGE_URL": edge.url}
    for example in examples("WebsocketsTransport"):
        done = await run_example("", env, example)
        assert done.stdout.splitlines() == [
            "Hello! How can I help you today?",
            'You said: "Help me with coding". That is your first message in this session.',
        ]


@pytest.mark.partitions(1, 3)
async def test_pipeline_example_runs_with_plain_nats_py(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    """A service with nothing of Praxis but the README publishes a run and gets its result."""
    worker_processes(1)
    await live_workers(client, 1)
    env = env_for(settings, Role.SERVICE)
    env.pop("PYTHONPATH")  # plain nats-py, not our packages
    done = await run_example('"kind": "create_session"', env)
    assert done.stdout.strip() == "completed Summarise invoice 42"


@pytest.mark.partitions(1, 3)
async def test_a_service_follows_events_with_nats_py_and_its_seed(
    nats: NatsServer,
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    """The README's follower: nothing but nats-py and the service user's seed (which may
    not create a JetStream consumer: an ordered consumer was refused), live notices and
    direct gets, through a whole turn."""
    worker_processes(1)
    await live_workers(client, 1)
    sid = await settled_session(client, "echo")
    _, cursor = await load_head(client.bus, sid)
    env = env_for(settings)
    env.pop("PYTHONPATH")  # plain nats-py, not our packages
    seed = credentials(settings.nats_url, Role.SERVICE).nkey_seed
    env.update(PRAXIS_NATS_NKEY_SEED=str(seed), SESSION_ID=sid, AFTER=str(cursor))
    following = asyncio.create_task(run_example("async def follow(session_id", env))
    await eventually(live_count_is(nats, sid, 1), what="the follower to listen")
    await client.send(sid, "followed")
    lines = [ln.split(" ", 2) for ln in (await following).stdout.splitlines()]
    assert [(kind, text) for _, kind, text in lines] == [
        ("user.message", "followed"),
        ("turn.started", ""),
        ("agent.message", "followed"),
        ("turn.completed", ""),
    ]
    seqs = [int(seq) for seq, _, _ in lines]
    assert seqs == sorted(seqs) and seqs[0] > cursor
    # From the same cursor once the turn is stored: the same events, read from the records
    # (mid-record too: from the first event's id, the rest of its record).
    again = await run_example("async def follow(session_id", env)
    assert again.stdout == (await following).stdout
    env["AFTER"] = str(seqs[0])
    rest = await run_example("async def follow(session_id", env)
    assert rest.stdout.splitlines() == (await following).stdout.splitlines()[1:]


@pytest.fixture(scope="module")
def praxis_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """'praxis up' on a fresh machine, as the quick start runs it; yields its data dir's
    environment (what a user's other shell has)."""
    env = fresh_env(tmp_path_factory.mktemp("up"))
    up = spawn_praxis(env, "up", "--workers", "1", "--port", "0")
    try:
        assert up.stdout is not None
        banner = up.stdout.readline()
        assert "Praxis is up" in banner, banner + (up.stderr.read() if up.stderr else "")
        yield env
    finally:
        up.send_signal(signal.SIGINT)
        up.communicate(timeout=30)


def shell_after_praxis_env(env: dict[str, str], *args: str) -> dict[str, str]:
    """The environment of a shell that ran ``eval "$(praxis env ARGS)"``: nothing of
    Praxis but what it printed (and the data directory, as the user's own)."""
    printed = praxis(env, "env", *args)
    assert printed.returncode == 0, printed.stderr
    shell = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
    shell.pop("PYTHONPATH", None)
    for line in printed.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        (shell[name],) = shlex.split(value)
    assert set(shell) >= {"PRAXIS_NATS_URL", "PRAXIS_NATS_NKEY_SEED", "PRAXIS_EDGE_URL"}
    return shell


async def test_the_examples_run_against_praxis_up_with_praxis_env(
    praxis_up: dict[str, str],
) -> None:
    """The documented local setup runs the documented examples: in another shell,
    eval "$(praxis env)" (the admin) or "--role service" (pipelines), then the example."""
    admin = shell_after_praxis_env(praxis_up)
    service = shell_after_praxis_env(praxis_up, "--role", "service")
    assert service["PRAXIS_NATS_NKEY_SEED"].endswith("service.nk")
    for example in examples("SessionClient(bus)"):
        for shell in (admin, service):
            done = await run_example("", shell, example)
            assert 'You said: "Help me with coding". That is your ' in done.stdout
    piped = await run_example('"kind": "create_session"', service)
    assert piped.stdout.strip() == "completed Summarise invoice 42"
    for example in examples("connect_sse"):
        check_http_output((await run_example("", admin, example)).stdout)


async def test_mcp_server_example_gets_the_task(
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
    tmp_path: Path,
) -> None:
    """The agents page's MCP server, run as a stdio server by a model agent: it reads the
    task from the call's _meta."""
    (example,) = examples("def lookup_order(order: str, ctx: Context)")
    (tmp_path / "orders.py").write_text(example)
    define(
        settings,
        "orders",
        openai_agent(
            models,
            f'\n[[mcp]]\ncommand = "{sys.executable}"\nargs = ["{tmp_path / "orders.py"}"]\n',
        ),
    )
    await start_worker()
    models.reset(Call("lookup_order", {"order": "42"}, call_id="o1"), Text("Shipped."))
    sid = await settled_session(client, "orders", task_id="task-orders")
    events = await client.wait(await client.send(sid, "Where is order 42?"))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.content == "order 42: shipped (asked for task-orders)"


async def test_openai_sdk_example_runs(edge: EdgeProcess, worker: InProcessWorker) -> None:
    env = {**env_for(worker.worker.bus.settings), "PRAXIS_EDGE_URL": edge.url}
    done = await run_example("client.conversations.create(", env)
    lines = done.stdout.splitlines()
    assert lines[0].startswith('You said: "Help me with coding". That is your first message')
    assert lines[1].startswith('You said: "How do I handle errors?". That is your 2nd message')
    assert lines[2:] == [
        "assistant: Hello! How can I help you today?",  # the agent greets a new conversation
        "user: Help me with coding",
        f"assistant: {lines[0]}",
        "user: How do I handle errors?",
        f"assistant: {lines[1]}",
    ]


def _tour() -> list[str]:
    """The README tour's transcript of 'praxis agent run', to the end of its chat."""
    block = re.search(r"```console\n(.*?)```", README.split("## A short tour")[1], re.S)
    assert block is not None
    lines = block[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("$ praxis agent run "))
    end = next(i for i, ln in enumerate(lines) if i > start and ln.startswith("$ "))
    return lines[start:end]


async def test_the_readme_tour_transcript_is_what_the_cli_prints(
    praxis_up: dict[str, str],
) -> None:
    """Every line the chat prints on its own (not the prompts and what the user types) is
    in the transcript as it is printed, ids aside, and the transcript shows nothing more."""
    tour = _tour()
    args = shlex.split(tour[0].removeprefix("$ "))[1:]
    typed = [ln.removeprefix("You: ") for ln in tour if ln.startswith("You: ")]
    stdin = "".join(f"{t}\n" for t in typed if t != "^D")
    shell = shell_after_praxis_env(praxis_up)
    done = await asyncio.to_thread(praxis, shell, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr

    def plain(text: str) -> str:
        return re.sub(r"ses_[0-9a-f]+", "ses_ID", text.replace("You: ", "")).strip()

    printed = [plain(ln) for ln in (done.stderr + done.stdout).splitlines() if plain(ln)]
    shown = [plain(ln) for ln in tour[1:] if not ln.startswith("You: ") and plain(ln)]
    assert sorted(printed) == sorted(shown), (printed, shown)
