"""What every part of the client shares: the connection, who it acts for, what it
remembers of sessions (task ids and owners never change), and the small types it
returns."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Self

from praxis.bus.cache import Bounded
from praxis.bus.connection import Bus
from praxis.schemas import AgentInfo, Interface, Owner, SessionRecord

KEPT = 100_000
"""Sessions whose task id and owner a client remembers (a long-lived edge talks to
endless sessions)."""


@dataclass(frozen=True, slots=True)
class Scope:
    """A caller as the edge authenticated it: the owner of the sessions it creates, and
    whether it may see every session (``admin``)."""

    owner: Owner
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """A command the bus has stored: follow ``events(session_id, after=cursor)`` for its effects."""

    session_id: str
    command_id: str
    cursor: int


@dataclass(frozen=True, slots=True)
class Page:
    items: list[SessionRecord]
    next_cursor: str | None


@dataclass(slots=True)
class Caches:
    """Shared by a client and the copies ``scoped`` and ``via`` make of it."""

    task_ids: Bounded[str, str] = field(default_factory=lambda: Bounded[str, str](KEPT))
    owners: Bounded[str, Owner | None] = field(
        default_factory=lambda: Bounded[str, Owner | None](KEPT)
    )
    agents: Bounded[str, dict[str, AgentInfo]] = field(
        default_factory=lambda: Bounded[str, dict[str, AgentInfo]](1, ttl=2.0)
    )
    """The agents live workers offer, for two seconds."""
    live: Bounded[str, asyncio.Future[int | None]] = field(
        default_factory=lambda: Bounded[str, "asyncio.Future[int | None]"](1, ttl=1.0)
    )
    """How many workers are live, for a second: when no worker answers, many commands
    time out together and ask at once."""


class ClientState:
    """The state a :class:`~praxis.bus.client.SessionClient` carries (its parts are
    functions of it)."""

    def __init__(
        self, bus: Bus, interface: Interface = Interface.BUS, actor: str | None = None
    ) -> None:
        self.bus = bus
        self.interface = interface
        self.actor = actor
        """Who drives the sessions through this client, recorded in the events it causes."""
        self.scope: Scope | None = None
        """Whose sessions this client may see (None: everyone's, as the CLI and workers)."""
        self.caches = Caches()

    def scoped(self, scope: Scope | None, actor: str | None = None) -> Self:
        """A client for one caller: it creates sessions owned by ``scope.owner`` and, unless
        ``scope.admin``, sees no other owner's session (they are 'unknown', never
        'forbidden', so ids cannot be probed). Shares this client's caches."""
        other = copy.copy(self)
        other.scope = scope
        other.actor = actor or self.actor
        return other

    def via(self, interface: Interface) -> Self:
        """This client for another interface (recorded in the events it causes, and as a
        session's ``created_by``). Shares this client's caches."""
        other = copy.copy(self)
        other.interface = interface
        return other

    def sees(self, record: SessionRecord) -> bool:
        scope = self.scope
        return scope is None or scope.admin or record.owner == scope.owner
