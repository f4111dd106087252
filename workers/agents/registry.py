"""Finding agents: entry points in the ``praxis.agents`` group and ``PRAXIS_AGENTS``."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from praxis.bus.settings import Settings
from praxis.schemas import AgentInfo, is_token
from praxis.workers.agents.base import Agent
from praxis.workers.agents.spec import AgentDefinition, DefinitionError, read_definition

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

    def names(self, *, unlisted: bool = False) -> list[str]:
        """The agents' names (those not ``listed`` only if asked for)."""
        return sorted(n for n, r in self._agents.items() if unlisted or r.agent.listed)

    async def close(self) -> None:
        """Let every agent free what it holds (its MCP servers' processes)."""
        for name, r in self._agents.items():
            try:
                await r.agent.close()
            except Exception:
                log.exception("agent %s did not close cleanly", name)

    def infos(self) -> list[AgentInfo]:
        return [
            AgentInfo(
                name=name, description=r.agent.description, source=r.source, listed=r.agent.listed
            )
            for name, r in sorted(self._agents.items())
        ]


def _instantiate(target: object, source: str) -> Agent:
    if isinstance(target, type) and issubclass(target, Agent):
        target = target()
    if isinstance(target, AgentDefinition):
        from praxis.workers.agents.model import from_definition  # pydantic-ai only when used

        return from_definition(target)
    if not isinstance(target, Agent):
        raise AgentLoadError(
            f"{source} is not a praxis Agent or AgentDefinition (got {type(target).__name__})"
        )
    return target


def load_agents(extra: list[str] | None = None, agents_dir: Path | None = None) -> AgentRegistry:
    """Load every agent: entry points, ``extra`` (``module:attribute``) and the definitions
    in ``agents_dir`` (``*.toml``). A broken one is reported in ``errors`` (where and why)
    and skipped; the others load."""
    registry = AgentRegistry()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {ep.value}"
        _add(registry, source, ep.load)
    for spec in extra or []:
        source = f"PRAXIS_AGENTS {spec}"

        def target(spec: str = spec) -> object:
            module_name, _, attr = spec.partition(":")
            return getattr(_import_here(module_name), attr)

        _add(registry, source, target)
    if agents_dir is not None and agents_dir.is_dir():
        for path in sorted(agents_dir.glob("*.toml")):
            _add(registry, f"file {path}", functools.partial(read_definition, path))
    for err in registry.errors:
        log.error("could not load agent: %s", err)
    return registry


def _import_here(module_name: str) -> ModuleType:
    """Import a ``PRAXIS_AGENTS`` module as ``python -m`` would: from the installed packages,
    else from the current directory (the ``praxis`` command, unlike ``python``, does not put
    it on the path), so a module beside you loads without packaging or ``PYTHONPATH``."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        here = os.getcwd()
        top = module_name.partition(".")[0]
        if e.name != top or here in sys.path or not _module_in(Path(here), top):
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def _module_in(folder: Path, name: str) -> bool:
    return (folder / f"{name}.py").is_file() or (folder / name).is_dir()


def registry_for(settings: Settings) -> AgentRegistry:
    """The agents of this installation as ``settings`` describe it."""
    return load_agents(settings.agents, settings.agents_dir)


def _add(registry: AgentRegistry, source: str, load: Callable[[], object]) -> None:
    try:
        registry.add(_instantiate(load(), source), source)
    except DefinitionError as e:  # where: the file itself, or a field of the definition
        origin = source.removeprefix("file ")
        place = origin if e.where == origin else f"{origin}: {e.where}"
        registry.errors.append(f"{place}: " + "; ".join(e.problems))
    except Exception as e:
        registry.errors.append(f"{source}: {e}")
