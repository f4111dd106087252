"""Load: many sessions at once, each sending its next message as soon as its last turn is
over (a closed loop), for a fixed time: turns per second and turn latency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from praxis.bus import SessionClient
from praxis.cli.bench.server import Counts, per_turn
from praxis.cli.bench.stack import RAW_STREAM, CpuSeconds, cpu_ms_per_turn
from praxis.cli.bench.stats import Series
from praxis.schemas import TurnCompleted, TurnFailed

CREATE_CONCURRENCY = 200


@dataclass
class LoadResult:
    name: str
    sessions: int
    seconds: float
    latencies: Series
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        return len(self.latencies.values)

    @property
    def per_second(self) -> float:
        return self.turns / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "seconds": self.seconds,
            "turns": self.turns,
            "turns_per_s": self.per_second,
            "errors": self.errors,
            "turn_ms": self.latencies.summary(),
            **self.extra,
        }


async def new_sessions(
    client: SessionClient, n: int, agent: str = "echo", metadata: dict[str, Any] | None = None
) -> list[str]:
    """``n`` sessions of ``agent``, started (their first turn done)."""
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one() -> str:
        async with gate:
            record, receipt = await client.create(agent, metadata=metadata)
            await client.wait(receipt)
            return record.session_id

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _none() -> None:
    return None


async def closed_loops(
    client: SessionClient,
    session_ids: list[str],
    seconds: float,
    name: str = "load",
    cpu: Callable[[], CpuSeconds | None] = lambda: None,
    server: Callable[[], Awaitable[Counts | None]] = _none,
) -> LoadResult:
    """Every session sends, waits for its turn to end, sends again, until time is up;
    ``cpu`` and ``server`` read what it cost, before and after."""
    latencies: list[float] = []
    errors = 0
    kinds: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    cpu_before = cpu()
    start = loop.time()
    end = start + seconds

    per_session: Counter[str] = Counter()

    async def one(sid: str) -> None:
        nonlocal errors
        i = 0
        while loop.time() < end:
            i += 1
            t0 = time.perf_counter()
            try:
                async for item in client.turn(sid, f"load {i}"):
                    if isinstance(item.event, TurnFailed):
                        errors += 1
                        kinds[f"turn.failed: {item.event.reason[:80]}"] += 1
                    if isinstance(item.event, TurnCompleted | TurnFailed):
                        break
            except Exception as e:
                errors += 1
                kinds[type(e).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            per_session[sid] += 1

    writes_before = await stored_writes(client)
    server_before = await server()
    await asyncio.gather(*(one(sid) for sid in session_ids))
    server_after = await server()
    writes = await stored_writes(client) - writes_before
    series = Series(name)
    series.add_round(latencies)
    took = loop.time() - start
    extra: dict[str, Any] = {"error_kinds": dict(kinds.most_common(10))} if kinds else {}
    extra |= cpu_ms_per_turn(cpu_before, cpu(), len(latencies))
    extra |= per_turn(server_before, server_after, len(latencies))
    if latencies:
        extra["writes_per_turn"] = writes / len(latencies)
        counts = sorted(per_session[sid] for sid in session_ids)
        extra["turns_per_session"] = {
            "min": counts[0],
            "p50": counts[len(counts) // 2],
            "max": counts[-1],
        }
    return LoadResult(name, len(session_ids), took, series, errors, extra)


async def stored_writes(client: SessionClient) -> int:
    """Messages stored so far in every stream of the deployment (the session stream and
    the buckets' streams), as the server counts them: the sum of their last sequences
    (the benchmark's own floor stream left out)."""
    infos = await client.bus.js.streams_info()
    return sum(i.state.last_seq for i in infos if i.config.name != RAW_STREAM)
