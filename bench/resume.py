"""Resume and turn latency by history length: does a long conversation stay fast?

    python bench/resume.py [--sizes 10,1000,10000,100000] [--rounds 5] [--per-round 20]
                           [--json out.json]

Starts its own nats-server on a free loopback port and one ``praxis worker`` process with
its state cache off (``PRAXIS_STATE_CACHE=0``: every resume loads the session from the bus,
as after days away). Builds one session per size with ``import`` (``echo`` agent), then in
alternating rounds measures, for each size:

- resume: a suspended session's ``SessionClient.resume()`` (the worker loads it and makes
          it ACTIVE) plus its last 20 messages (``history_page(limit=20)``), which is what
          ``praxis agent resume`` shows
- turn:   ``SessionClient.turn()`` until the turn completes

and the worker's resident memory after each size's first round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bus import SessionClient, Settings, connect  # noqa: E402
from bus.embedded import NatsServer  # noqa: E402
from bus.transfer import Conversation, import_conversation  # noqa: E402
from schemas import TurnCompleted  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def build(client: SessionClient, size: int) -> tuple[str, float]:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "x" * 40}
        for i in range(size)
    ]
    t0 = time.perf_counter()
    record = await import_conversation(
        client, Conversation.model_validate({"messages": messages}), agent="echo", task_id=None
    )
    return record.session_id, time.perf_counter() - t0


async def resume_once(client: SessionClient, sid: str) -> float:
    await client.suspend(sid)
    t0 = time.perf_counter()
    await client.resume(sid)
    await client.history_page(sid, limit=20)
    return (time.perf_counter() - t0) * 1000


async def turn_once(client: SessionClient, sid: str, text: str) -> float:
    t0 = time.perf_counter()
    async for item in client.turn(sid, text):
        if isinstance(item.event, TurnCompleted):
            break
    return (time.perf_counter() - t0) * 1000


async def run(args: argparse.Namespace) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="praxis-bench-resume-"))
    server = NatsServer(home / "js", log_file=home / "nats.log").start()
    env = {
        **os.environ,
        "PRAXIS_NATS_URL": server.url,
        "PYTHONPATH": str(ROOT),
        "PRAXIS_STATE_CACHE": "0",
        "PRAXIS_LINGER": "0",
    }
    sizes = [int(s) for s in args.sizes.split(",")]
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [sys.executable, "-m", "cli", "worker"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        settings = Settings(nats_url=server.url, data_dir=home)
        async with connect(settings, server.url, "bench-resume") as bus:
            client = SessionClient(bus)
            while not await client.workers():  # noqa: ASYNC110 - polling the bus, not an event
                await asyncio.sleep(0.05)
            sessions: dict[int, str] = {}
            built: dict[int, float] = {}
            for size in sizes:
                sessions[size], built[size] = await build(client, size)
                print(f"built {size:>7,}-message session in {built[size]:.1f}s", flush=True)
            for size in sizes:  # warm every path once
                await resume_once(client, sessions[size])
                await turn_once(client, sessions[size], "warm")
            resume: dict[int, list[float]] = {s: [] for s in sizes}
            turn: dict[int, list[float]] = {s: [] for s in sizes}
            memory: dict[int, float] = {}
            for r in range(args.rounds):
                for size in sizes:
                    sid = sessions[size]
                    for i in range(args.per_round):
                        resume[size].append(await resume_once(client, sid))
                        turn[size].append(await turn_once(client, sid, f"r{r}-{i}"))
                    memory.setdefault(size, rss_mb(worker.pid))
                print(f"round {r + 1}/{args.rounds} done", flush=True)
    finally:
        worker.terminate()
        worker.wait(15)
        server.stop()
    base = sizes[0]
    result: dict[str, object] = {"sizes": sizes, "import_s": built, "worker_rss_mb": memory}
    for name, data in (("resume", resume), ("turn", turn)):
        result[name] = {
            size: {
                "p50_ms": statistics.median(v),
                "p99_ms": pct(v, 0.99),
                "min_ms": min(v),
                "max_ms": max(v),
                "n": len(v),
                "p50_ratio_to_smallest": statistics.median(v) / statistics.median(data[base]),
            }
            for size, v in data.items()
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"\n{'messages':>9} | {'resume p50':>10} {'p99':>7} {'ratio':>6} | "
        f"{'turn p50':>8} {'p99':>7} {'ratio':>6} | {'worker MB':>9}"
    )
    for size in result["sizes"]:  # type: ignore[attr-defined]
        r = result["resume"][size]  # type: ignore[index]
        t = result["turn"][size]  # type: ignore[index]
        mem = result["worker_rss_mb"][size]  # type: ignore[index]
        print(
            f"{size:>9,} | {r['p50_ms']:>8.2f}ms {r['p99_ms']:>5.2f}ms"
            f" {r['p50_ratio_to_smallest']:>5.2f}x"
            f" | {t['p50_ms']:>6.2f}ms {t['p99_ms']:>5.2f}ms"
            f" {t['p50_ratio_to_smallest']:>5.2f}x"
            f" | {mem:>9.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
