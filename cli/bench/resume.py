"""Resume and turn latency by history length: does a long conversation stay fast?

For each size one session (``echo``) is built by import; then in alternating rounds, per
size: *resume* = a suspended session's ``resume()`` (a worker loads it and makes it ACTIVE)
plus its last 20 messages (what ``praxis agent resume`` shows), and a *turn* until it
completes. With a deployment of its own the worker runs with its state cache off, so that
every resume loads the session from the bus, as after days away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from praxis.bus import SessionClient
from praxis.bus.transfer import Conversation, import_conversation
from praxis.cli.bench.stack import Stack
from praxis.cli.bench.stats import Series
from praxis.schemas import TurnCompleted

COLD = {"PRAXIS_STATE_CACHE": "0", "PRAXIS_LINGER": "0"}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


async def build(client: SessionClient, size: int) -> str:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "x" * 40}
        for i in range(size)
    ]
    conversation = Conversation.model_validate({"messages": messages})
    record = await import_conversation(client, conversation, agent="echo", task_id=None)
    return record.session_id


async def resume_once(client: SessionClient, sid: str) -> float:
    await client.suspend(sid)
    t0 = time.perf_counter()
    await client.resume(sid)
    await client.history(sid, limit=20, more=True)
    return time.perf_counter() - t0


async def turn_once(client: SessionClient, sid: str, text: str) -> float:
    t0 = time.perf_counter()
    async for item in client.turn(sid, text):
        if isinstance(item.event, TurnCompleted):
            break
    return time.perf_counter() - t0


async def by_history(
    stack: Stack,
    sizes: list[int],
    rounds: int,
    per_round: int,
    note: Callable[[str], None],
    done: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Per size: resume and turn latencies (by round), and the worker's memory. ``note``
    says what it does; ``done`` ends each round."""
    if stack.own:  # every resume loads the session from the bus
        await stack.set_workers(0)
        stack.env |= COLD
        await stack.set_workers(1)
    client = stack.client
    sessions = {}
    for size in sizes:
        t0 = time.perf_counter()
        sessions[size] = await build(client, size)
        note(f"resume: built a {size:,}-message session in {time.perf_counter() - t0:.1f} s")
    for size in sizes:  # warm every path once
        await resume_once(client, sessions[size])
        await turn_once(client, sessions[size], "warm")
    resume = {s: Series(f"resume {s:,}") for s in sizes}
    turn = {s: Series(f"turn {s:,}") for s in sizes}
    memory: dict[int, float | None] = {}
    for r in range(rounds):
        for size in sizes:
            sid = sessions[size]
            res, tur = [], []
            for i in range(per_round):
                res.append(await resume_once(client, sid))
                tur.append(await turn_once(client, sid, f"r{r}-{i}"))
            resume[size].add_round(res)
            turn[size].add_round(tur)
            if stack.workers:
                memory.setdefault(size, rss_mb(stack.workers[0].pid))
        done(f"resume: round {r + 1}/{rounds}")
    base = sizes[0]
    return [
        {
            "messages": size,
            "resume_ms": resume[size].summary(),
            "turn_ms": turn[size].summary(),
            "resume_vs_smallest": resume[size].p50 / resume[base].p50,
            "turn_vs_smallest": turn[size].p50 / turn[base].p50,
            "worker_rss_mb": memory.get(size),
        }
        for size in sizes
    ]
