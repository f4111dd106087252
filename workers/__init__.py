"""Stateless workers: take work from the bus, run agent turns, append fenced events."""

from workers.agents import Agent, AgentRegistry, TurnContext, load_agents, registry_for
from workers.runner import LeaseLostError, RunContext, SessionRunner
from workers.worker import Worker, install_signal_handlers

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
