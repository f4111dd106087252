"""Session leases in KV: who may work on a session right now.

A lease is a key in a bucket whose TTL is the lease time: created only if absent, renewed
by revision, released by revision. Leases decide who *should* work; the fence in
:mod:`bus.commit` makes sure a writer that lost its lease *cannot* write.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from praxis.bus import subjects
from praxis.schemas import check_token


@dataclass(slots=True)
class Lease:
    session_id: str
    worker_id: str
    revision: int
    renewed_at: float = field(default_factory=time.monotonic)
    """When the write of ``revision`` was sent (monotonic): the lease lives at least
    ``lease_ttl`` from then."""

    def age(self) -> float:
        return time.monotonic() - self.renewed_at


def _value(worker_id: str) -> bytes:
    return json.dumps({"worker_id": worker_id, "at": time.time()}).encode()


async def claim(
    kv: KeyValue, session_id: str, worker_id: str, hint: int | None = None
) -> Lease | None:
    """Take the lease if nobody holds it; ``None`` if somebody does.

    ``hint`` is the revision this worker's own release left: if nothing happened since,
    the claim is one round trip.
    """
    got = await try_claim(kv, session_id, worker_id, hint)
    return got if isinstance(got, Lease) else None


async def try_claim(
    kv: KeyValue, session_id: str, worker_id: str, hint: int | None = None
) -> Lease | Held:
    """:func:`claim`, telling who holds the lease when it is not free."""
    check_token(session_id, "session id")
    sent = time.monotonic()
    if hint is not None:
        try:
            rev = await kv.update(session_id, _value(worker_id), last=hint)
            return Lease(session_id, worker_id, rev, sent)
        except KeyWrongLastSequenceError:
            pass
    # Two round trips: read, then write on the revision read. (nats-py's create() first
    # tries revision 0 and needs three once a released lease left a delete marker.)
    try:
        held = await kv.get(session_id)
        worker, at = _holder(held.value)
        return Held(worker, held.revision or 0, at)
    except NotFoundError as e:
        # nats-py reports a delete marker as not found, with the marker as ``entry``.
        entry = getattr(e, "entry", None)
        last = entry.revision if entry is not None else 0
    sent = time.monotonic()
    try:
        rev = await kv.update(session_id, _value(worker_id), last=last)
    except KeyWrongLastSequenceError:
        return Held("", last)  # another claim won the race
    return Lease(session_id, worker_id, rev, sent)


async def take_over(kv: KeyValue, session_id: str, worker_id: str, revision: int) -> Lease | None:
    """Take a lease its holder handed over at ``revision`` (``None``: it changed since)."""
    sent = time.monotonic()
    try:
        rev = await kv.update(session_id, _value(worker_id), last=revision)
    except (KeyWrongLastSequenceError, NotFoundError):
        return None
    return Lease(session_id, worker_id, rev, sent)


async def renew(kv: KeyValue, lease: Lease) -> bool:
    """Extend the lease; ``False`` if it was lost (expired and taken, or deleted)."""
    sent = time.monotonic()
    try:
        lease.revision = await kv.update(
            lease.session_id, _value(lease.worker_id), last=lease.revision
        )
    except (KeyWrongLastSequenceError, NotFoundError):
        return False
    lease.renewed_at = sent
    return True


async def release(nc: Client, bucket: str, lease: Lease, timeout: float) -> int | None:
    """Give the lease up if it is still ours; return the revision of the release marker.

    A lost lease is left to its new holder (``None``).
    """
    # kv.delete() does not return the marker's revision: write the marker ourselves.
    resp = await nc.request(
        subjects.kv_key(bucket, lease.session_id),
        b"",
        headers={"KV-Operation": "DEL", "Nats-Expected-Last-Subject-Sequence": str(lease.revision)},
        timeout=timeout,
    )
    ack = json.loads(resp.data or b"{}")
    return None if "error" in ack else int(ack["seq"])


async def holder(kv: KeyValue, session_id: str) -> str | None:
    """The worker holding the session's lease, if any."""
    try:
        entry = await kv.get(session_id)
    except NotFoundError:
        return None
    return _holder(entry.value)[0] or None


@dataclass(slots=True, frozen=True)
class Held:
    """A lease somebody else holds: its holder (``""``: unknown), revision, and when the
    holder wrote it (its clock, ``time.time()``; ``None``: unknown)."""

    worker_id: str
    revision: int
    written_at: float | None = None

    def expires_in(self, ttl: float) -> float | None:
        """Seconds until the lease expires unless renewed (by the holder's clock)."""
        return None if self.written_at is None else self.written_at + ttl - time.time()


def _holder(value: bytes | None) -> tuple[str, float | None]:
    if not value:
        return "", None
    try:
        found = json.loads(value)
        worker, at = found.get("worker_id", ""), found.get("at")
    except (ValueError, AttributeError):
        return "", None
    return (
        worker if isinstance(worker, str) else "",
        float(at) if isinstance(at, int | float) else None,
    )
