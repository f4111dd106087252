"""The README's examples run as written."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Callable

from praxis.bus import SessionClient, Settings
from praxis.bus.embedded import NatsServer
from praxis.bus.permissions import Role
from praxis.bus.state import load_head
from praxis.workers.agents import Agent, TurnContext
from tests.conftest import (
    ROOT,
    EdgeProcess,
    InProcessWorker,
    WorkerProcess,
    credentials,
    env_for,
    eventually,
    live_count_is,
    live_workers,
    settled_session,
)

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


async def run_example(marker: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the README's Python block that contains ``marker``; it must succeed."""
    example = next(b for b in BLOCKS if marker in b)
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


async def test_client_example_runs(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    worker_processes(1)
    await live_workers(client, 1)
    done = await run_example("SessionClient(bus)", env_for(settings))
    assert 'You said: "Help me with coding". That is your first message' in done.stdout


async def test_agent_example_works() -> None:
    example = next(b for b in BLOCKS if "class Shout(Agent)" in b)
    namespace: dict[str, object] = {}
    exec(example, namespace)
    shout = namespace["Shout"]
    assert isinstance(shout, type) and issubclass(shout, Agent)
    agent = shout()
    ctx = TurnContext("s", "t", "shout", {}, (), 1, "make some noise")
    assert [p async for p in agent.respond(ctx)] == ["MAKE ", "SOME ", "NOISE "]
    greeting = agent.greet(ctx)
    assert greeting is not None and [p async for p in greeting] == ["HELLO!"]


def test_quick_start_commands_are_the_ci_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install . && praxis agent run hello-world" in README
    assert "pip install -e '.[test]' && python -m pytest" in README
    assert "pip install --quiet -e '.[test]'" in ci and "\npython -m pytest\n" in ci


async def test_http_example_runs(
    edge: EdgeProcess, client: SessionClient, worker_processes: Callable[[int], list[WorkerProcess]]
) -> None:
    worker_processes(1)
    await live_workers(client, 1)
    env = {**env_for(client.bus.settings), "PRAXIS_EDGE_URL": edge.url}
    done = await run_example("connect_sse", env)
    lines = done.stdout.splitlines()
    assert lines[0].startswith('You said: "How do I handle errors?". That is your 2nd message')
    assert lines[1:] == [
        "user: Help me with coding",  # answered at once: no greeting before it
        'agent: You said: "Help me with coding". That is your first message in this session.',
        "user: How do I handle errors?",
        lines[0].replace("You said", "agent: You said", 1),
    ]


async def test_the_roadmaps_requests_workflow_prints_the_reply_as_it_streams(
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
    assert lines[lines.index("How do I handle errors?") + 1 :].count(reply) == 1
    streamed = "".join(lines[lines.index("How do I handle errors?") + 1 : lines.index(reply)])
    assert streamed == reply  # the pieces, as they came, then the whole reply


async def test_graphql_example_runs(edge: EdgeProcess, worker: InProcessWorker) -> None:
    env = {**env_for(worker.worker.bus.settings), "PRAXIS_EDGE_URL": edge.url}
    done = await run_example("WebsocketsTransport", env)
    assert done.stdout.splitlines() == [
        "Hello! How can I help you today?",
        'You said: "Help me with coding". That is your first message in this session.',
    ]


async def test_pipeline_example_runs_with_plain_nats_py(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    """A service with nothing of Praxis but the README publishes a run and gets its result."""
    worker_processes(1)
    await live_workers(client, 1)
    env = env_for(settings)
    env.pop("PYTHONPATH")  # plain nats-py, not our packages
    done = await run_example('"kind": "create_session"', env)
    assert done.stdout.strip() == "completed Summarise invoice 42"


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
    following = asyncio.create_task(run_example("STREAM = os.environ", env))
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
    again = await run_example("STREAM = os.environ", env)
    assert again.stdout == (await following).stdout
    env["AFTER"] = str(seqs[0])
    rest = await run_example("STREAM = os.environ", env)
    assert rest.stdout.splitlines() == (await following).stdout.splitlines()[1:]
