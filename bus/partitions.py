"""Which partition stream holds a session: a pure function of its id and of two numbers
the bus keeps in its configuration (the first stream's metadata).

A deployment has ``count`` partitions. Partition 0 is the stream every release before
partitions used (``PRAXIS``, subjects ``sess.<id>.in`` and ``sess.<id>.out.…``);
partition ``k`` ≥ 1 is stream ``PRAXIS_k`` with subjects ``sess.<id>.p<k>.in`` and
``sess.<id>.p<k>.out.…``. A session stays in its partition for its whole life:

- An id Praxis makes names its partition: ``ses_<24 hex digits>-p<k>`` (made with the
  partition picked at random among all of them; a deployment of one partition makes the
  ids it always made, without the suffix).
- Any other id (one a caller chose, or one made before partitions) is hashed: FNV-1a
  (32 bits) of its UTF-8 bytes, modulo ``hashed``, the number of partitions the bus was
  first provisioned with. That number never changes, so growing the partitions moves no
  session: new sessions with ids Praxis makes use the new partitions; sessions with
  chosen ids stay spread over the first ``hashed`` ones.

A service on the bus finds a session's partition with these two rules and the two numbers
(stream info of ``PRAXIS``, metadata ``praxis_partitions`` and ``praxis_hashed``): no
lookup per session.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

from praxis.schemas import new_id

MAX_PARTITIONS = 64
"""More than a cluster needs (each partition is a stream and a consumer, two Raft groups):
the roles' permissions name every partition's stream up to this, so that growing the bus
needs no change to them."""
COUNT_KEY = "praxis_partitions"
HASHED_KEY = "praxis_hashed"
"""The stream metadata that holds the partitioning (on partition 0's stream)."""

_NAMED = re.compile(r"[a-z]+_[0-9a-f]{24}-p([0-9]{1,2})")


def fnv1a_32(data: bytes) -> int:
    """FNV-1a, 32 bits (the hash NATS's own ``partition()`` subject transform uses)."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def named(session_id: str) -> int | None:
    """The partition an id made by Praxis names, or ``None`` for any other id."""
    found = _NAMED.fullmatch(session_id)
    return int(found.group(1)) if found else None


@lru_cache(maxsize=65536)
def _hashed(session_id: str, hashed: int) -> int:
    return fnv1a_32(session_id.encode()) % hashed


def in_partition(name: str, partition: int) -> str:
    """The name of a partition's stream or bucket: ``name`` for partition 0 (as before
    partitions), ``name_k`` for partition k."""
    return name if partition == 0 else f"{name}_{partition}"


def share(partitions: int, sharing: list[str], me: str) -> list[int]:
    """The partitions worker ``me`` takes when the live workers ``sharing`` share them out:
    each to one worker (in id order, round the workers), so that each session's work goes
    to one worker; a worker beyond the partitions doubles up on one. One partition, or one
    worker: every partition."""
    workers = sorted({*sharing, me})
    if partitions < 2 or len(workers) < 2:
        return list(range(partitions))
    i = workers.index(me)
    mine = [k for k in range(partitions) if k % len(workers) == i]
    return mine or [i % partitions]


class PartitionError(ValueError):
    """An id names a partition this deployment does not have (answered 400)."""

    http_status = 400
    problem_type = "invalid-id"


@dataclass(frozen=True, slots=True)
class Partitions:
    """The partitioning of one deployment."""

    base: str = "PRAXIS"
    """The name of partition 0's stream; partition k's is ``<base>_<k>``."""
    count: int = 1
    hashed: int = 1
    """The partitions ids not made by Praxis are hashed over (the first provisioning's)."""
    _rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.hashed <= self.count <= MAX_PARTITIONS:
            raise ValueError(
                f"partitions: need 1 <= hashed ({self.hashed}) <= count ({self.count}) "
                f"<= {MAX_PARTITIONS}"
            )

    def of(self, session_id: str) -> int:
        """The partition of ``session_id``; :class:`PartitionError` if it names one this
        deployment does not have (yet: a process that has not seen the bus grow says so)."""
        k = named(session_id)
        if k is None:
            return 0 if self.hashed == 1 else _hashed(session_id, self.hashed)
        if k >= self.count:
            raise PartitionError(
                f"session id {session_id!r} names partition {k}; this deployment has "
                f"{self.count} (0-{self.count - 1})"
            )
        return k

    def stream(self, partition: int) -> str:
        return in_partition(self.base, partition)

    def stream_of(self, session_id: str) -> str:
        return self.stream(self.of(session_id))

    def all(self) -> range:
        return range(self.count)

    def new_session_id(self) -> str:
        """A new session id, in a partition picked at random (named in the id when the
        deployment has more than one)."""
        sid = new_id("ses")
        if self.count == 1:
            return sid
        return f"{sid}-p{self._rng.randrange(self.count)}"

    def metadata(self) -> dict[str, str]:
        return {COUNT_KEY: str(self.count), HASHED_KEY: str(self.hashed)}

    @classmethod
    def from_metadata(cls, base: str, metadata: dict[str, str] | None) -> Partitions:
        """What partition 0's stream says (a stream without it: one partition, as every
        deployment made before partitions)."""
        found = metadata or {}
        try:
            count = int(found.get(COUNT_KEY, "1"))
            hashed = int(found.get(HASHED_KEY, "1"))
        except ValueError as e:
            raise ValueError(f"stream {base!r}: unreadable partition metadata {found}") from e
        return cls(base, count, hashed)
