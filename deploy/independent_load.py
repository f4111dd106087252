"""An independent load client, to check ``praxis bench load`` against: N sessions of the
``echo`` agent in closed loops through ``SessionClient.turn``, an 8-word message per turn,
for a fixed time; it prints turns per second, turn latency and its own CPU per turn.

It shares nothing with the benchmark but the public client::

    PRAXIS_NATS_URL=nats://127.0.0.1:4222 python deploy/independent_load.py 100 10 [uvloop]

(the deployment's credentials as for any client: ``PRAXIS_NATS_CREDS`` or a seed). With
``uvloop`` it runs on uvloop, as ``praxis bench`` does; without, on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from praxis.bus import SessionClient, Settings, connect
from praxis.schemas import Interface, TurnCompleted, TurnFailed

MESSAGE = "please repeat these eight words back to me"


async def main(sessions: int, seconds: float) -> dict[str, float]:
    settings = Settings()
    assert settings.nats_url, "set PRAXIS_NATS_URL"
    async with connect(settings, settings.nats_url, "independent-load") as bus:
        client = SessionClient(bus, Interface.API)
        gate = asyncio.Semaphore(200)

        async def create() -> str:
            async with gate:
                record, receipt = await client.create("echo")
                await client.wait(receipt)
                return record.session_id

        sids = await asyncio.gather(*(create() for _ in range(sessions)))
        latencies: list[float] = []
        errors = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def one(sid: str) -> None:
            nonlocal errors
            while loop.time() < end:
                t0 = time.perf_counter()
                async for item in client.turn(sid, MESSAGE):
                    if isinstance(item.event, TurnFailed):
                        errors += 1
                    if isinstance(item.event, TurnCompleted | TurnFailed):
                        break
                latencies.append(time.perf_counter() - t0)

        cpu0, t0 = time.process_time(), loop.time()
        await asyncio.gather(*(one(s) for s in sids))
        took, cpu = loop.time() - t0, time.process_time() - cpu0
    latencies.sort()
    n = len(latencies)
    return {
        "sessions": sessions,
        "turns_per_s": n / took,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))],
        "errors": errors,
        "client_cpu_ms_per_turn": 1000 * cpu / n,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    if "uvloop" in sys.argv[3:]:
        import uvloop

        print(json.dumps(uvloop.run(main(n, secs))))
    else:
        print(json.dumps(asyncio.run(main(n, secs))))
