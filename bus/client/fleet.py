"""The fleet: live workers (by their heartbeats) and the agents they offer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from praxis.bus.client import reading
from praxis.bus.client.base import ClientState
from praxis.schemas import AgentInfo, WorkerInfo


async def workers(c: ClientState) -> list[WorkerInfo]:
    """Live workers: those whose last heartbeat is recent (killed ones age out)."""
    values = await reading.bucket_values(c, c.bus.settings.workers_bucket)
    infos = [WorkerInfo.model_validate_json(v) for v in values]
    horizon = 3 * c.bus.settings.heartbeat_interval
    now = datetime.now(UTC)
    return [w for w in infos if (now - w.seen_at).total_seconds() <= horizon]


async def live_workers(c: ClientState) -> int | None:
    """How many workers are live (``None`` if the workers cannot be read). One read a
    second at most, shared by every caller."""
    counting = c.caches.live.get("live")
    if counting is None:
        counting = asyncio.ensure_future(_count_live(c))
        c.caches.live.put("live", counting)
    return await asyncio.shield(counting)


async def _count_live(c: ClientState) -> int | None:
    try:
        return len(await workers(c))
    except Exception:
        return None


async def known_agents(c: ClientState) -> dict[str, AgentInfo]:
    """Agents offered by live workers (cached for two seconds)."""
    agents = c.caches.agents.get("agents")
    if agents is None:
        agents = {a.name: a for w in await workers(c) for a in w.agents}
        c.caches.agents.put("agents", agents)
    return agents
