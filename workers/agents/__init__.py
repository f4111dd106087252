"""Agents: the interface, the built-ins and the registry."""

from praxis.workers.agents.base import Agent, TurnContext
from praxis.workers.agents.builtin import Echo, HelloWorld, stream_words
from praxis.workers.agents.registry import (
    ENTRY_POINT_GROUP,
    AgentRegistry,
    load_agents,
    registry_for,
)
from praxis.workers.agents.spec import AgentDefinition

__all__ = [
    "ENTRY_POINT_GROUP",
    "Agent",
    "AgentDefinition",
    "AgentRegistry",
    "Echo",
    "HelloWorld",
    "TurnContext",
    "load_agents",
    "registry_for",
    "stream_words",
]
