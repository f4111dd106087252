"""Issue 33: the CLI with no worker running. What it says is stored is stored (and answered
once a worker starts), every path gives up with the same error after
``PRAXIS_COMMAND_TIMEOUT`` (on the bus, or through an edge), and Ctrl-C always says how to
continue the session."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings
from tests.conftest import (
    ROOT,
    EdgeProcess,
    InProcessWorker,
    edge_env,
    ended,
    env_for,
    eventually,
    praxis,
    spawn_praxis,
)

NOT_ANSWERED = "is stored but not answered after"


def session_of(stderr: str) -> str:
    return stderr.split("Session created: ")[1].split()[0]


def hint(sid: str) -> str:
    return f"Session {sid} stays open; continue it with: praxis agent resume {sid}"


@pytest.fixture
def bare_edge(settings: Settings, tmp_path: Path) -> Iterator[EdgeProcess]:
    """An edge with no worker behind it, that gives up on a command after 2 s of quiet."""
    env = edge_env(settings, PRAXIS_COMMAND_TIMEOUT="2")
    proc = EdgeProcess(env, tmp_path / "edge.log").start()
    yield proc
    proc.stop()


def on_the_bus(settings: Settings) -> dict[str, str]:
    return env_for(settings, PRAXIS_INPROCESS_WORKER="never", PRAXIS_COMMAND_TIMEOUT="2")


def through(edge: EdgeProcess, tmp_path: Path) -> dict[str, str]:
    """A user's shell after ``eval "$(praxis env)"``: the edge's URL and no worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
    return env | {
        "PYTHONPATH": str(ROOT),
        "PRAXIS_DATA_DIR": str(tmp_path / "cli-data"),
        "PRAXIS_NATS_URL": "nats://127.0.0.1:1",  # goes nowhere: the edge is the way
        "PRAXIS_EDGE_URL": edge.url,
    }


async def answered(client: SessionClient, sid: str, text: str) -> None:
    async def done() -> bool:
        history = await client.history(sid)
        return [(h.role, h.content) for h in history] == [("user", text), ("agent", text)]

    await eventually(done, 20, f"the stored message of {sid} answered")


@pytest.mark.parametrize("path", ["bus", "edge"])
async def test_a_message_sent_while_no_worker_runs_is_stored_and_answered_later(
    path: str,
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    bare_edge: EdgeProcess,
    tmp_path: Path,
) -> None:
    env = on_the_bus(settings) if path == "bus" else through(bare_edge, tmp_path)
    text = f"kept while no worker runs ({path})"
    run = await asyncio.to_thread(praxis, env, "agent", "run", "echo", "--message", text)
    assert run.returncode == 1, run
    sid = session_of(run.stderr)
    error = run.stderr.split("praxis: error: ", 1)[1]
    assert NOT_ANSWERED in error and "no worker is running" in error, run.stderr
    assert error.splitlines()[1] == hint(sid), run.stderr  # what to do, after the error
    assert "Traceback" not in run.stderr

    await start_worker()
    await answered(client, sid, text)


async def test_an_interactive_chat_through_an_edge_says_no_worker_answers_the_greeting(
    settings: Settings, bare_edge: EdgeProcess, tmp_path: Path
) -> None:
    run = await asyncio.to_thread(praxis, through(bare_edge, tmp_path), "agent", "run", "echo")
    assert run.returncode == 1, run
    assert NOT_ANSWERED in run.stderr and hint(session_of(run.stderr)) in run.stderr


@pytest.mark.parametrize("path", ["bus", "edge"])
async def test_ctrl_c_while_waiting_for_a_worker_says_how_to_continue(
    path: str,
    client: SessionClient,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    bare_edge: EdgeProcess,
    tmp_path: Path,
) -> None:
    env = on_the_bus(settings) if path == "bus" else through(bare_edge, tmp_path)
    env["PRAXIS_COMMAND_TIMEOUT"] = "60"  # only Ctrl-C ends the wait (on the bus path)
    text = f"interrupted ({path})"
    proc = spawn_praxis(env, "agent", "run", "echo", "--message", text)
    assert proc.stderr is not None
    try:
        lines = [await asyncio.to_thread(proc.stderr.readline) for _ in range(2)]
        assert lines[1].startswith("Task: "), lines  # created: now it waits
        proc.send_signal(signal.SIGINT)
        _, rest = await asyncio.to_thread(ended, proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    sid = session_of(lines[0])
    assert proc.returncode == 130, rest
    assert rest.strip() == hint(sid), rest

    await start_worker()
    await answered(client, sid, text)


async def test_an_openai_stream_with_no_worker_ends_with_the_sdks_error_event(
    bare_edge: EdgeProcess,
) -> None:
    """A streamed response that no worker answers ends with an ``error`` event (the shape
    the OpenAI SDKs know), not a connection cut in the middle of the stream."""
    from openai import AsyncOpenAI

    sdk = AsyncOpenAI(base_url=f"{bare_edge.url}/v1", api_key="unused", max_retries=0)
    kinds = []
    async with sdk:
        stream = await sdk.responses.create(model="echo", input="anyone?", stream=True)
        async for event in stream:
            kinds.append(event.type)
            if event.type == "error":
                assert event.code == "timeout" and NOT_ANSWERED in event.message, event
    assert kinds[0] == "response.created" and kinds[-1] == "error", kinds
