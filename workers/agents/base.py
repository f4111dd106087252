"""The agent interface: what a user implements to add an agent to Praxis.

An agent is a class with a ``name``; each turn it gets a :class:`TurnContext` and yields
its reply as text pieces (tokens), which Praxis streams to clients live and stores as
one ``agent.message`` when the turn ends. Agents keep no state between turns: what they
need is in the context, built from the session's checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from schemas import ChatMessage


@dataclass(frozen=True, slots=True)
class TurnContext:
    session_id: str
    task_id: str
    agent: str
    metadata: Mapping[str, Any]
    history: Sequence[ChatMessage]
    """The recent conversation before this turn, oldest first."""
    user_messages: int
    """How many messages the user has sent, this turn's included."""
    message: str | None
    """The user's message of this turn; ``None`` for the greeting when a session starts."""
    attempt: int = 1
    """1, or more when a turn is re-run after its worker died."""


class Agent(ABC):
    """Subclass, set ``name`` (a subject token) and ``description``, implement ``respond``.

    Register it under the entry-point group ``praxis.agents`` or list it in the
    ``PRAXIS_AGENTS`` setting as ``module:Class``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def greet(self, ctx: TurnContext) -> AsyncIterator[str] | None:
        """The agent's first words when a session starts, or ``None`` to wait for the user."""
        return None

    @abstractmethod
    def respond(self, ctx: TurnContext) -> AsyncIterator[str]:
        """Yield the reply to ``ctx.message`` piece by piece."""
