"""Who may do what on the bus: one NATS user per kind of Praxis component, each allowed the
subjects of its job and nothing else.

- ``worker``: takes work from the work queue, reads commands, writes events, snapshots and
  timers, leases, records, dead letters and heartbeats, streams live text, answers
  snapshot requests, purges old sessions (retention).
- ``edge``: publishes commands, reads events, records and workers, follows live text, checks
  API keys, writes the record of a session it creates (the index that listings read; never
  trusted for access) and asks a worker to purge a session on DELETE (it may not purge the
  stream itself: a purge permission cannot be limited to one session).
- ``service``: another service driving sessions on the bus (a pipeline): publishes
  commands, reads events and records, follows live text, gets outcomes on its inboxes.
- ``admin``: everything (provisioning, API keys, clean-up, dead letters, import).

Inbox prefixes keep the components' replies apart: the worker and the edge get their answers
on ``_INBOX_worker.>`` and ``_INBOX_edge.>``, which no other user may read or write; admins and
services use the usual ``_INBOX.>``, where workers publish command outcomes (``reply_to``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from praxis.bus import subjects
from praxis.bus.partitions import MAX_PARTITIONS, Partitions, in_partition
from praxis.bus.settings import Settings
from praxis.bus.subjects import LEASE_HANDOVERS, PURGE_REQUESTS


class Role(StrEnum):
    ADMIN = "admin"
    WORKER = "worker"
    EDGE = "edge"
    SERVICE = "service"


INBOX_PREFIXES = {
    Role.ADMIN: "_INBOX",
    Role.WORKER: "_INBOX_worker",
    Role.EDGE: "_INBOX_edge",
    Role.SERVICE: "_INBOX",
}


INPUTS = ["sess.*.in", "sess.*.*.in"]
"""Commands of every partition's sessions (``sess.<id>.in``, ``sess.<id>.p<k>.in``)."""
OUTPUTS = ["sess.*.out.>", "sess.*.*.out.>"]


def inbox_prefix(role: Role) -> str:
    return INBOX_PREFIXES[role]


def _reads(stream: str) -> list[str]:
    """Direct gets (one message, or a batch) and the stream's description."""
    direct = f"$JS.API.DIRECT.GET.{stream}"
    leader = f"$JS.API.STREAM.MSG.GET.{stream}"  # what a replica may not have yet
    return [direct, f"{direct}.>", leader, f"$JS.API.STREAM.INFO.{stream}"]


def _every(s: Settings, bucket: str) -> list[str]:
    """``bucket`` in every partition it may have (records and leases are per partition)."""
    if bucket not in (s.sessions_bucket, s.leases_bucket):
        return [bucket]
    return [in_partition(bucket, k) for k in range(MAX_PARTITIONS)]


def _buckets(s: Settings, names: list[str], *, write: bool) -> list[str]:
    out: list[str] = []
    for name in (every for bucket in names for every in _every(s, bucket)):
        out += _reads(subjects.kv_stream(name))
        if write:
            out.append(subjects.kv_key(name, ">"))
    return out


def _records(s: Settings) -> list[str]:
    """Writing session records (of any partition)."""
    return [subjects.kv_key(name, ">") for name in _every(s, s.sessions_bucket)]


def _all_buckets(s: Settings) -> list[str]:
    return [
        s.sessions_bucket,
        s.leases_bucket,
        s.dead_letters_bucket,
        s.workers_bucket,
        s.janitor_bucket,
        s.keys_bucket,
    ]


def _streams(s: Settings) -> list[str]:
    """Every partition's stream, those the bus may grow to included: growing it needs no
    new permissions."""
    parts = Partitions(s.stream, MAX_PARTITIONS, 1)
    return [parts.stream(k) for k in parts.all()]


def _checks(s: Settings) -> list[str]:
    """What every component reads at connect to check that the bus is provisioned."""
    return (
        [read for stream in _streams(s) for read in _reads(stream)]
        + [f"$JS.API.CONSUMER.INFO.{stream}.{s.consumer}" for stream in _streams(s)]
        + [
            f"$JS.API.STREAM.INFO.{subjects.kv_stream(every)}"
            for bucket in _all_buckets(s)
            for every in _every(s, bucket)
        ]
    )


def _purges(s: Settings) -> list[str]:
    """Removing a session: its subjects in the stream, its record, lease and dead letters."""
    buckets = (s.sessions_bucket, s.leases_bucket, s.dead_letters_bucket)
    kv = [subjects.kv_stream(every) for b in buckets for every in _every(s, b)]
    streams = [*_streams(s), *kv]
    return [f"$JS.API.STREAM.PURGE.{x}" for x in streams]


def _worker_buckets(s: Settings) -> list[str]:
    return [b for b in _all_buckets(s) if b != s.keys_bucket]


def permissions(role: Role, s: Settings) -> dict[str, Any] | None:
    """The NATS permissions of a role (``None``: no limits)."""
    if role is Role.ADMIN:
        return None
    inbox = f"{inbox_prefix(role)}.>"
    if role is Role.WORKER:
        publish = [
            *OUTPUTS,  # events, snapshots, expiry timers (fenced, single writer)
            "live.*",
            "_INBOX.>",  # command outcomes on the sender's inbox (reply_to)
            *(f"$JS.API.CONSUMER.MSG.NEXT.{x}.{s.consumer}" for x in _streams(s)),
            *(f"$JS.ACK.{x}.{s.consumer}.>" for x in _streams(s)),
            *_checks(s),
            *_buckets(s, _worker_buckets(s), write=True),
            *_purges(s),  # retention
            LEASE_HANDOVERS,  # a lease another worker keeps between runs, asked for
        ]
        subscribe = [*INPUTS, "snap.*", PURGE_REQUESTS, LEASE_HANDOVERS, inbox]
        # Snapshot answers go to the requester's inbox, whatever its prefix.
        return _perm(publish, subscribe, responses=True)
    readers = [
        *INPUTS,  # commands
        "snap.*",  # the text of a turn in flight
        *_checks(s),
        *_buckets(s, [s.sessions_bucket, s.workers_bucket], write=False),
    ]
    if role is Role.EDGE:
        publish = [
            *readers,
            *_records(s),  # the record of a session it creates
            *_reads(subjects.kv_stream(s.keys_bucket)),  # API keys (hashed)
            PURGE_REQUESTS,  # DELETE /agent-sessions/{id}: a worker purges
        ]
        return _perm(publish, ["live.*", inbox])
    publish = [*readers, *_records(s)]
    return _perm(publish, ["live.*", inbox])


def _perm(publish: list[str], subscribe: list[str], responses: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "publish": {"allow": sorted(set(publish))},
        "subscribe": {"allow": sorted(set(subscribe))},
    }
    if responses:
        out["allow_responses"] = True
    return out


def authorization(
    users: dict[Role, str], s: Settings, *, default: Role | None = None
) -> dict[str, Any]:
    """The ``authorization`` block of a nats-server config: one nkey user per role
    (``users`` maps a role to its public key). ``default``: the role of clients that
    connect without credentials (for tests; never in a deployment)."""
    entries = []
    for role, public_key in users.items():
        entry: dict[str, Any] = {"nkey": public_key}
        perms = permissions(role, s)
        if perms is not None:
            entry["permissions"] = perms
        entries.append(entry)
    config: dict[str, Any] = {"authorization": {"users": entries}}
    if default is not None:
        config["no_auth_user"] = users[default]
    return config


def server_config(users: dict[Role, str], s: Settings, *, default: Role | None = None) -> str:
    """A nats-server config file (JSON is valid nats-server config syntax); with
    ``nats_sync=always``, JetStream writes every message through to disk."""
    config = authorization(users, s, default=default)
    if s.nats_sync == "always":
        config = {**config, "jetstream": {"sync_interval": "always"}}
    return json.dumps(config, indent=2) + "\n"
