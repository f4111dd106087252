"""What the runners of one worker process share: the folded states kept between a
session's runs (a cache that may be dropped at any time), the expiry timers set, and
the signals to stop lingering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from praxis.bus import Bus
from praxis.bus.cache import Bounded
from praxis.schemas import Checkpoint
from praxis.workers.agents import AgentRegistry
from praxis.workers.session.listing import Listing
from praxis.workers.session.order import Deliveries
from praxis.workers.session.ownership import KeptLeases
from praxis.workers.session.snapshots import Snapshots


@dataclass(slots=True)
class Cached:
    """A session's state as a run left it. Used only while the session's latest event is
    still ``tail``: the first append's fence checks it."""

    state: Checkpoint
    tail: int
    lease_hint: int | None
    unsaved: int = 0
    """Records in ``state`` after the latest snapshot stored."""
    unsaved_bytes: int = 0
    """Their bytes."""
    snapshot_bytes: int = 0
    """The latest snapshot's bytes (0: not known)."""


StateCache = Bounded[str, Cached]


class RunContext:
    """What runners share within one worker process."""

    def __init__(self, bus: Bus, registry: AgentRegistry, worker_id: str) -> None:
        self.bus = bus
        self.registry = registry
        self.worker_id = worker_id
        s = bus.settings
        self.cache = StateCache(s.state_cache)
        self.timers = Bounded[str, datetime](max(bus.settings.state_cache, 1000))
        """The due time of the expiry timer this worker last set, per session."""
        self.snapshots = Snapshots(bus.nc)
        """Snapshot subscriptions of the sessions this worker holds."""
        self.kept = KeptLeases(bus, gone=self.snapshots.drop)
        """Leases kept between a session's runs while the worker is busy."""
        self.holders = Bounded[str, str](
            max(bus.settings.state_cache, 1000), bus.settings.lease_ttl
        )
        """The worker that took this worker's last triggers of a session (it runs it): its
        next ones go straight there, with no claim tried first (see ``forward``)."""
        self.stopping = asyncio.Event()
        """Set when the worker drains: runners stop lingering."""
        self.resting: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
        """Wrapped around a wait for input: the worker's slot is free meanwhile."""
        self.crowded = asyncio.Event()
        """Set while the worker runs as many sessions as it may, or more work waits on the
        server: runners stop lingering, so that waiting sessions get their turn (a session
        in a fast loop of messages would otherwise keep its slot while the loop lasts)."""
        self.deliveries = Deliveries()
        """The order of the work messages this worker received: a trigger known to be its
        session's next input is taken as delivered, without reading it from the stream."""
        self.listing = Listing(bus)
        """The session records that listings read, coalesced while a session is in use."""
