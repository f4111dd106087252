"""What a worker keeps between a session's runs: its folded state (a cache that may be
dropped at any time) and the expiry timers it set."""

from __future__ import annotations

from dataclasses import dataclass

from praxis.bus.cache import Bounded
from praxis.schemas import Checkpoint


@dataclass(slots=True)
class Cached:
    """A session's state as a run left it. Used only while the session's latest event is
    still ``tail``: the first append's fence checks it."""

    state: Checkpoint
    tail: int
    lease_hint: int | None
    unsaved: int = 0
    """Events in ``state`` after the latest snapshot stored."""


StateCache = Bounded[str, Cached]
