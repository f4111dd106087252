"""Stateless workers: take work from the bus, run agent turns, append fenced events."""

from praxis.workers.agents import Agent, AgentRegistry, TurnContext, load_agents, registry_for
from praxis.workers.session import LeaseLostError, RunContext, SessionRunner
from praxis.workers.worker import Worker, install_signal_handlers

__all__ = [
    "Agent",
    "AgentRegistry",
    "LeaseLostError",
    "RunContext",
    "SessionRunner",
    "TurnContext",
    "Worker",
    "install_signal_handlers",
    "load_agents",
    "registry_for",
]
