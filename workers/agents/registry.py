"""Finding agents: entry points in the ``praxis.agents`` group and ``PRAXIS_AGENTS``."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points

from schemas import AgentInfo, is_token
from workers.agents.base import Agent

log = logging.getLogger("praxis.agents")
ENTRY_POINT_GROUP = "praxis.agents"


class AgentLoadError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Registered:
    agent: Agent
    source: str


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, Registered] = {}
        self.errors: list[str] = []

    def add(self, agent: Agent, source: str) -> None:
        if not is_token(agent.name):
            raise AgentLoadError(f"agent name {agent.name!r} from {source} is not a valid id")
        if agent.name in self._agents:
            log.warning(
                "agent %r from %s replaces the one from %s",
                agent.name,
                source,
                self._agents[agent.name].source,
            )
        self._agents[agent.name] = Registered(agent, source)

    def get(self, name: str) -> Agent | None:
        found = self._agents.get(name)
        return found.agent if found else None

    def names(self) -> list[str]:
        return sorted(self._agents)

    def infos(self) -> list[AgentInfo]:
        return [
            AgentInfo(name=name, description=r.agent.description, source=r.source)
            for name, r in sorted(self._agents.items())
        ]


def _instantiate(target: object, source: str) -> Agent:
    agent = target() if isinstance(target, type) else target
    if not isinstance(agent, Agent):
        raise AgentLoadError(f"{source} is not a praxis Agent (got {type(agent).__name__})")
    return agent


def load_agents(extra: list[str] | None = None) -> AgentRegistry:
    """Load every agent; a broken one is reported in ``errors`` and skipped."""
    registry = AgentRegistry()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {ep.value}"
        try:
            registry.add(_instantiate(ep.load(), source), source)
        except Exception as e:
            registry.errors.append(f"{source}: {e}")
    for spec in extra or []:
        source = f"PRAXIS_AGENTS {spec}"
        try:
            module_name, _, attr = spec.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            registry.add(_instantiate(target, source), source)
        except Exception as e:
            registry.errors.append(f"{source}: {e}")
    for err in registry.errors:
        log.error("could not load agent: %s", err)
    return registry
