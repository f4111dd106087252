"""Idempotent provisioning of the stream, the work consumer and the KV buckets.

Existing objects are compared with what Praxis needs; a difference is reported with
:class:`ProvisioningMismatchError`, never silently rewritten.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from praxis.bus import subjects
from praxis.bus.errors import ProvisioningError, ProvisioningMismatchError
from praxis.bus.partitions import Partitions, in_partition
from praxis.bus.settings import Settings

SUBJECTS_OVERLAP = 10065
NO_SUITABLE_PEERS = 10005
log = logging.getLogger("praxis.bus")


def stream_config(s: Settings, partition: int = 0, parts: Partitions | None = None) -> StreamConfig:
    """Partition ``partition``'s stream; partition 0's carries the partitioning (``parts``)
    in its metadata."""
    parts = parts or Partitions(s.stream)
    return StreamConfig(
        name=parts.stream(partition),
        description="Praxis agent sessions: commands, events and checkpoints"
        + (f" (partition {partition})" if partition else ""),
        subjects=[subjects.input_wildcard(partition), subjects.output_wildcard(partition)],
        metadata=parts.metadata() if partition == 0 else None,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=s.replicas,
        duplicate_window=s.duplicate_window,
        max_msg_size=s.max_message_bytes,
        allow_direct=True,
        allow_rollup_hdrs=True,
        allow_atomic=True,
        allow_msg_schedules=True,  # the sessions' expiry timers
    )


def consumer_config(s: Settings, partition: int = 0) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=s.consumer,
        description="Praxis workers: a message means 'this session has work'",
        filter_subject=subjects.input_wildcard(partition),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=s.ack_wait,
        max_ack_pending=max(1000, s.worker_concurrency * 16),
        max_deliver=-1,
        num_replicas=s.replicas,
    )


def kv_config(
    s: Settings,
    bucket: str,
    description: str,
    *,
    ttl: float | None = None,
    storage: StorageType = StorageType.FILE,
) -> KeyValueConfig:
    """A Praxis bucket: one value per key, replicated as the stream, read directly."""
    return KeyValueConfig(
        bucket=bucket,
        description=description,
        history=1,
        ttl=ttl,
        storage=storage,
        replicas=s.replicas,
        direct=True,
    )


def partition_buckets(s: Settings, partition: int) -> tuple[KeyValueConfig, KeyValueConfig]:
    """A partition's session records and leases: each written by its sessions' turns, so
    on the partition's own leader like its stream."""
    suffix = f" (partition {partition})" if partition else ""
    return (
        kv_config(s, in_partition(s.sessions_bucket, partition), "Praxis session records" + suffix),
        # No limit_marker_ttl here: nats-py would see marker messages on get/create.
        kv_config(
            s,
            in_partition(s.leases_bucket, partition),
            "Praxis session leases (single writer per session)" + suffix,
            ttl=s.lease_ttl,
        ),
    )


def bucket_configs(s: Settings) -> list[KeyValueConfig]:
    """The buckets every partition shares."""
    return [
        kv_config(
            s,
            s.dead_letters_bucket,
            "Praxis dead letters: commands parked after failing repeatedly",
        ),
        # On file: a server that restarts keeps it (a bucket in memory would be gone, and
        # every reader of heartbeats would fail until someone provisioned it again).
        kv_config(
            s,
            s.workers_bucket,
            "Praxis worker heartbeats",
            ttl=max(3 * s.heartbeat_interval, 1.0),
        ),
        janitor_bucket(s),
        keys_bucket(s),
    ]


def janitor_bucket(s: Settings) -> KeyValueConfig:
    return kv_config(
        s, s.janitor_bucket, "Praxis retention: who sweeps old sessions, and when it last did"
    )


def keys_bucket(s: Settings) -> KeyValueConfig:
    return kv_config(s, s.keys_bucket, "Praxis API keys (hashed)")


def _diff(have: Any, want: Any, fields: list[str]) -> dict[str, tuple[object, object]]:
    out: dict[str, tuple[object, object]] = {}
    for f in fields:
        h, w = getattr(have, f), getattr(want, f)
        if isinstance(w, list):
            h, w = sorted(h or []), sorted(w)
        if isinstance(w, float | int) and isinstance(h, float | int) and abs(h - w) < 1e-6:
            continue
        if (h or None) != (w or None):
            out[f] = (h, w)
    return out


_STREAM_FIELDS = [
    "subjects",
    "retention",
    "storage",
    "num_replicas",
    "duplicate_window",
    "max_msg_size",
    "allow_direct",
    "allow_rollup_hdrs",
    "allow_atomic",
    "allow_msg_schedules",
]
# Flags a newer Praxis needs that can be turned on in an existing stream without touching
# its data: turned on (and logged) rather than reported as a mismatch.
_ADDITIVE = {"allow_msg_schedules"}


def _missing(kind: str, name: str) -> ProvisioningError:
    return ProvisioningError(
        f"{kind} {name!r} does not exist and this process may not create it: provision the "
        "bus once with admin credentials ('praxis bus provision')"
    )


async def ensure_stream(
    js: JetStreamContext, want: StreamConfig, wait: float = 15.0, *, create: bool = True
) -> StreamConfig:
    """The stream as it is (made as ``want`` if missing and ``create``)."""
    assert want.name is not None
    if create:
        info = await _existing_or_created(js, want, wait)
    else:
        try:
            info = await js.stream_info(want.name)
        except NotFoundError:
            raise _missing("stream", want.name) from None
    if info is None:
        return want
    diff = _diff(info.config, want, _STREAM_FIELDS)
    if diff and set(diff) <= _ADDITIVE and create:
        config = info.config
        for flag in diff:
            setattr(config, flag, True)
        await js.update_stream(config)
        log.warning("stream %r: turned on %s (needed by this Praxis)", want.name, sorted(diff))
        return config
    if diff:
        raise ProvisioningMismatchError("stream", want.name, diff)
    return info.config


async def _existing_or_created(
    js: JetStreamContext, want: StreamConfig, wait: float
) -> StreamInfo | None:
    """The stream's info if it exists; ``None`` once this call has created it. A cluster
    still forming (not enough peers for the replicas) is waited for, up to ``wait``."""
    assert want.name is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await js.stream_info(want.name)
        except NotFoundError:
            pass
        try:
            await js.add_stream(want)
            return None
        except BadRequestError as e:
            if e.err_code == SUBJECTS_OVERLAP:
                raise ProvisioningError(
                    f"cannot create stream {want.name!r}: another stream already holds "
                    f"subjects {want.subjects} ({e.description}); remove it or use a "
                    "separate NATS account or server"
                ) from e
            if e.err_code == NO_SUITABLE_PEERS and loop.time() < deadline:
                await asyncio.sleep(0.25)
                continue
            if e.err_code == NO_SUITABLE_PEERS:
                raise ProvisioningError(
                    f"cannot create stream {want.name!r} with {want.num_replicas} replicas: "
                    f"{e.description} (are {want.num_replicas} JetStream servers up? "
                    "PRAXIS_REPLICAS sets the replicas)"
                ) from e
            try:  # created meanwhile by another process?
                return await js.stream_info(want.name)
            except NotFoundError:
                raise ProvisioningError(
                    f"cannot create stream {want.name!r}: {e.description}"
                ) from e


async def ensure_consumer(
    js: JetStreamContext, stream: str, want: ConsumerConfig, *, create: bool = True
) -> None:
    assert want.durable_name is not None
    try:
        info = await js.consumer_info(stream, want.durable_name)
    except NotFoundError:
        if not create:
            raise _missing("consumer", want.durable_name) from None
        try:
            await js.add_consumer(stream, want)
            return
        except BadRequestError:
            info = await js.consumer_info(stream, want.durable_name)
    diff = _diff(info.config, want, ["filter_subject", "ack_policy", "ack_wait", "max_deliver"])
    if diff:
        raise ProvisioningMismatchError("consumer", want.durable_name, diff)


async def ensure_bucket(
    js: JetStreamContext, want: KeyValueConfig, *, create: bool = True, remake: bool = False
) -> KeyValue:
    """``remake``: a bucket whose every value is written again within its TTL (heartbeats)
    is made again as wanted if it differs only in its storage (an earlier release kept it
    in memory), by a process that may create; others take it as it is."""
    try:
        kv = await js.key_value(want.bucket)
    except (NotFoundError, BadRequestError):
        if not create:
            raise _missing("key-value bucket", want.bucket) from None
        return await js.create_key_value(want)
    info = await js.stream_info(subjects.kv_stream(want.bucket))
    have = info.config
    expect = StreamConfig(
        max_age=want.ttl,
        num_replicas=want.replicas,
        storage=want.storage,
        max_msgs_per_subject=want.history,
    )
    diff = _diff(have, expect, ["max_age", "num_replicas", "storage", "max_msgs_per_subject"])
    if remake and set(diff) == {"storage"}:
        if not create:
            return kv
        await js.delete_key_value(want.bucket)
        log.warning("bucket %r: made again on %s storage", want.bucket, want.storage)
        return await js.create_key_value(want)
    if diff:
        raise ProvisioningMismatchError("key-value bucket", want.bucket, diff)
    return kv


async def provision(
    js: JetStreamContext, settings: Settings, *, create: bool = True
) -> tuple[Partitions, list[Handles], KeyValue, KeyValue]:
    """Create what is missing (``create``; else only check that it is there and as
    needed); return the partitioning, each partition's record and lease buckets, and the
    dead letters and workers buckets."""
    parts, handles = await ensure_partitions(js, settings, create=create)
    dead, workers, *_ = [
        await ensure_bucket(js, c, create=create, remake=c.bucket == settings.workers_bucket)
        for c in bucket_configs(settings)
    ]
    return parts, handles, dead, workers


Handles = tuple[KeyValue, KeyValue]
"""A partition's session records and leases buckets."""


async def ensure_partition(
    js: JetStreamContext, settings: Settings, parts: Partitions, k: int, *, create: bool = True
) -> Handles:
    """Partition ``k``'s stream, work consumer and buckets."""
    if k:
        await ensure_stream(js, stream_config(settings, k, parts), create=create)
    await ensure_consumer(js, parts.stream(k), consumer_config(settings, k), create=create)
    records, leases = [
        await ensure_bucket(js, c, create=create) for c in partition_buckets(settings, k)
    ]
    return records, leases


async def ensure_partitions(
    js: JetStreamContext, settings: Settings, *, create: bool = True
) -> tuple[Partitions, list[Handles]]:
    """Every partition; the bus grown to ``settings.partitions`` first if that asks for
    more (never fewer)."""
    n = settings.partitions or 1
    fresh = Partitions(settings.stream, n, n)
    first = await ensure_stream(js, stream_config(settings, 0, fresh), create=create)
    parts = Partitions.from_metadata(settings.stream, first.metadata)
    wanted = settings.partitions
    if wanted is not None and wanted < parts.count:
        raise ProvisioningError(
            f"the bus has {parts.count} partitions and PRAXIS_PARTITIONS asks for {wanted}: "
            "partitions cannot be removed (their sessions live there); unset it, or set "
            f"it to {parts.count} or more"
        )
    if wanted is not None and wanted > parts.count:
        if not create:
            raise ProvisioningError(
                f"the bus has {parts.count} partitions and PRAXIS_PARTITIONS asks for "
                f"{wanted}: grow it with admin credentials ('praxis bus provision "
                f"--partitions {wanted}')"
            )
        grown = Partitions(settings.stream, wanted, parts.hashed)
        for k in range(parts.count, grown.count):  # before anyone is told of them
            await ensure_partition(js, settings, grown, k)
        first.metadata = {**(first.metadata or {}), **grown.metadata()}
        await js.update_stream(first)
        log.warning("the bus now has %d partitions", grown.count)
        parts = grown
    handles = [await ensure_partition(js, settings, parts, k, create=create) for k in parts.all()]
    return parts, handles


async def read_partitions(js: JetStreamContext, base: str) -> Partitions:
    """The partitioning partition 0's stream holds now (it grows while processes run)."""
    info = await js.stream_info(base)
    return Partitions.from_metadata(base, info.config.metadata)
