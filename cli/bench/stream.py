"""Streaming capacity: N sessions each running a turn of the ``synthetic`` model (T tokens
at R tokens/s) at once, followed over REST SSE through one edge, beside the floor: the same
token streams published on core NATS by another process and relayed to SSE by the
smallest Litestar handler that can do it. Each token carries the wall-clock time it left
its source (the agent, or the floor's publisher): the delay is from then to its arrival
in the SSE client."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from praxis.bus.credentials import Credentials
from praxis.cli.bench.sse_client import SSEError, open_stream
from praxis.cli.bench.stack import Stack, _cpu_of
from praxis.cli.bench.stats import Series

SUBJECT = "praxis_bench_stream"
"""The floor's subjects (``SUBJECT.<i>``), written out in the scripts below."""
_TOKEN = re.compile(rb"t(\d+)@(\d+)")

# The floor's relay: one route, a core NATS subscription per stream, each message written
# as one SSE message straight into a streamed response (no SSE framework layer); a comment
# first, once subscribed. Started as its own process.
RELAY = """
import asyncio, json, sys, nats, uvicorn
from litestar import Litestar, get
from litestar.response import Stream
from praxis.edge.server import bind
async def main(url, options):
    nc = await nats.connect(url, **json.loads(options))
    @get("/s/{i:int}")
    async def stream(i: int) -> Stream:
        queue = asyncio.Queue()
        async def put(msg):
            queue.put_nowait(msg.data)
        sub = await nc.subscribe(f"praxis_bench_stream.{i}", cb=put)
        await nc.flush()
        async def relay():
            try:
                yield b": subscribed\\r\\n\\r\\n"
                while (data := await queue.get()) != b"END":
                    yield b"data: %s\\r\\n\\r\\n" % data
            finally:
                await sub.unsubscribe()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Stream(relay(), media_type="text/event-stream", headers=headers)
    app = Litestar([stream], logging_config=None)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    print(f"ready http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await server.serve(sockets=[sock])
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

# The floor's source: every stream's tokens at the rate, stamped, then END.
PUBLISHER = """
import asyncio, json, sys, time, nats
async def main(url, options, streams, tokens, rate):
    nc = await nats.connect(url, **json.loads(options))
    loop = asyncio.get_running_loop()
    start = loop.time()
    async def one(i):
        for j in range(tokens):
            if rate and j:
                await asyncio.sleep(max(0.0, start + j / rate - loop.time()))
            await nc.publish(f"praxis_bench_stream.{i}", f"t{j}@{time.time_ns()} ".encode())
        await nc.publish(f"praxis_bench_stream.{i}", b"END")
    await asyncio.gather(*(one(i) for i in range(streams)))
    await nc.flush()
    await nc.close()
argv = sys.argv
asyncio.run(main(argv[1], argv[2], int(argv[3]), int(argv[4]), float(argv[5])))
"""


class Tally:
    """What the SSE clients received: tokens in order, and each one's delay."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.delays: list[float] = []
        self.complete = 0
        self.errors = 0
        self.first_error: str | None = None

    def stream(self) -> Callable[[bytes], bool]:
        """A reader for one stream: fed each SSE data line; ``True`` once it is whole."""
        expected = 0

        def feed(data: bytes) -> bool:
            nonlocal expected
            now = time.time_ns()
            for index, stamp in _TOKEN.findall(data):
                if int(index) != expected:
                    raise ValueError(f"token {int(index)} came where {expected} was due")
                expected += 1
                self.delays.append((now - int(stamp)) / 1e9)
            return expected == self.tokens

        return feed

    def summary(self, seconds: float, cpu: dict[str, float]) -> dict[str, Any]:
        series = Series("delay")
        series.add_round(self.delays)
        delivered = len(self.delays)
        return {
            "deltas": delivered,
            "seconds": seconds,
            "deltas_per_s": delivered / seconds if seconds else 0.0,
            "delay_ms": series.summary(),
            "complete_streams": self.complete,
            "errors": self.errors,
            **({"first_error": self.first_error[:300]} if self.first_error else {}),
            "cpu_ms_per_delta": {k: v * 1000 / max(delivered, 1) for k, v in cpu.items()},
        }


async def praxis_streams(stack: Stack, streams: int, tokens: int, rate: float) -> dict[str, Any]:
    """N synthetic turns at once, each followed over REST SSE through one edge."""
    base = await stack.start_edge()
    metadata = {"tokens": tokens, "tokens_per_s": rate, "stamp": True}
    gate = asyncio.Semaphore(100)

    async def session() -> str:
        async with gate:
            record, receipt = await stack.client.create("synthetic", metadata=metadata)
            await stack.client.wait(receipt)  # its greeting-less start: nothing to stream
            return record.session_id

    sids = list(await asyncio.gather(*(session() for _ in range(streams))))
    tally = Tally(tokens)

    async def follow(sid: str) -> None:
        body = {"message": "stream", "stream": True}
        feed = tally.stream()
        kind = b""
        async with open_stream(f"{base}/agent-sessions/{sid}/messages", body) as lines:
            async for line in lines:
                if line.startswith(b"event: "):
                    kind = line[7:]
                elif kind != b"token.delta" or not line.startswith(b"data: "):
                    continue
                elif feed(json.loads(line[6:])["data"]["text"].encode()):
                    tally.complete += 1
                    return

    return await _measure(tally, sids, follow, lambda: _cpu(stack), None)


async def floor_streams(stack: Stack, streams: int, tokens: int, rate: float) -> dict[str, Any]:
    """The same streams from a publisher on core NATS through the smallest relay."""
    options = json.dumps(Credentials.from_settings(stack.settings).options())
    relay = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [sys.executable, "-c", RELAY, stack.url, options], stdout=subprocess.PIPE, env=stack.env
    )
    stack.others.append(relay)
    assert relay.stdout is not None
    line = (await asyncio.to_thread(relay.stdout.readline)).decode().strip()
    if not line.startswith("ready "):
        raise RuntimeError(f"the floor's relay did not start (exit status {relay.wait()})")
    base = line.removeprefix("ready ")
    tally = Tally(tokens)
    subscribed = asyncio.Semaphore(0)

    async def follow(sid: str) -> None:
        feed = tally.stream()
        async with open_stream(f"{base}/s/{sid}") as lines:
            async for line in lines:
                if line.startswith(b": subscribed"):
                    subscribed.release()
                elif line.startswith(b"data: ") and feed(line[6:]):
                    tally.complete += 1
                    return

    async def publish() -> None:
        for _ in range(streams):  # every relay subscription made before the first token
            await subscribed.acquire()
        args = [stack.url, options, str(streams), str(tokens), str(rate)]
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PUBLISHER, *args)
        await proc.wait()

    def cpu() -> dict[str, float]:
        return {"relay": _cpu_of(relay.pid)}

    return await _measure(tally, [str(i) for i in range(streams)], follow, cpu, publish)


async def _measure(
    tally: Tally,
    names: list[str],
    follow: Callable[[str], Awaitable[None]],
    cpu: Callable[[], dict[str, float]],
    start: Callable[[], Awaitable[None]] | None,
) -> dict[str, Any]:
    """Follow the named streams at once until each is whole (``start``: what makes them
    flow, once they are followed); what they received, how fast, and the CPU it cost."""

    async def one(name: str) -> None:
        try:
            await follow(name)
        except (OSError, SSEError, ValueError, asyncio.IncompleteReadError) as e:
            tally.errors += 1
            tally.first_error = tally.first_error or f"{type(e).__name__}: {e}"

    before = cpu()
    t0 = time.perf_counter()
    jobs = [asyncio.create_task(one(n)) for n in names]
    if start is not None:
        await start()
    await asyncio.wait_for(asyncio.gather(*jobs), 600)
    took = time.perf_counter() - t0
    after = cpu()
    return tally.summary(took, {k: after[k] - before[k] for k in after})


def _cpu(stack: Stack) -> dict[str, float]:
    return {
        "edge": _cpu_of(stack.edge_pid) if stack.edge_pid else 0.0,
        "workers": sum(_cpu_of(p.pid) for p in stack.workers),
    }
