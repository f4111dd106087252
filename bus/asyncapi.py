"""The bus contract as an AsyncAPI 3.0 document, made by faststream from the wire models:
every subject Praxis uses, what travels on it, and who sends it. Other services can publish
commands and follow sessions from it without reading Praxis's code. Served by the edge at
``GET /asyncapi.json`` and printed by ``praxis bus docs``."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel, Field

from praxis import installed_version
from praxis.bus import subjects
from praxis.bus.settings import Settings
from praxis.schemas import (
    Checkpoint,
    Command,
    CommandOutcome,
    DeadLetter,
    Expire,
    SessionRecord,
    Snapshot,
    WorkerInfo,
)
from praxis.schemas.records import LiveMessage
from praxis.schemas.stored import SHARED

SESSION = "{session_id}"


class Record(BaseModel):
    """What one decision of a session's owner stores: its events, what they share once.

    An event is ``h`` and one object of ``e`` together (no field is in both); fields at
    their defaults are left out (read them as the event's schema's defaults). Records of
    format 1 (written before, or with ``PRAXIS_RECORD_FORMAT=1``) are a JSON array of whole
    events; a JSON object without ``r`` is one event."""

    r: Literal[2] = Field(description="The record's format.")
    h: dict[str, Any] = Field(
        description="The fields all its events share, of: "
        + ", ".join(f"`{k}`" for k in sorted(SHARED))
        + "."
    )
    e: list[dict[str, Any]] = Field(
        description="Each event's own fields, with its `type` (an `Event` without `h`)."
    )


class PurgeRequest(BaseModel):
    """Remove a session (every command, event and snapshot of it, and its record)."""

    session_id: str


class PurgeAnswer(BaseModel):
    """Empty when the session is gone; ``error`` says why not."""

    error: str | None = None


class LeaseHandover(BaseModel):
    """A work message (trigger) of a session whose lease the receiving worker holds, with
    headers ``Praxis-Session`` (the session id) and ``Praxis-Ack`` (the trigger's
    ``$JS.ACK`` subject); the payload is the command as stored. (Without those headers,
    from a worker of an earlier release: ``{"session_id"}``, asking for a kept lease.)"""

    session_id: str | None = None


class LeaseHandoverAnswer(BaseModel):
    """``taken``: the receiver runs the session and acknowledges the trigger itself;
    else ``revision``: it only kept the lease between runs and the asker may take it at
    that revision; neither: hand the trigger back, for later."""

    taken: bool = False
    revision: int | None = None


class Empty(BaseModel):
    """No payload."""


_PARTITIONS = (
    "A bus with more than one partition has a stream per partition k >= 1 "
    "(`{stream}_k`) whose subjects carry `pk` before `in` and `out`: "
    "`sess.<id>.pk.in`, `sess.<id>.pk.out.evt` and so on; every channel below is the same "
    "there. A session's partition: an id that ends in `-pk` after `<prefix>_` and 24 hex "
    "digits (one Praxis made) is in partition k; any other id is in partition "
    "FNV-1a-32(id as UTF-8) mod `praxis_hashed`, a number in the metadata of the first "
    "stream (beside `praxis_partitions`, how many there are)."
)

# (channel name, subject, payload, who sends it, description); "praxis" sends, or others do.
_CHANNELS: list[tuple[str, str, Any, bool, str]] = [
    (
        "commands",
        subjects.input_wildcard(0).replace("*", SESSION),
        Command,
        False,
        "Commands for a session, stored in the stream: `create_session` first (publish it "
        "with `Nats-Expected-Last-Subject-Sequence: 0` so that it is stored only for a new "
        "id), then messages, decisions on tool calls, suspend, resume, complete, cancel. Set "
        "`Nats-Msg-Id` to `<session_id>.<command_id>` (the window spans every session): a "
        "repeat within the duplicate window is dropped. "
        "Give `reply_to` (an `_INBOX.` subject) to get the outcome there.",
    ),
    (
        "events",
        "sess.{session_id}.out.evt",
        Record,
        True,
        "The session's durable events, written by its owner only as records (the events "
        "of one decision: an `Event` is the record's `h` and one of its `e`), each fenced on "
        "the one before (`Nats-Expected-Last-Subject-Sequence`). An event's id is the "
        "record's stream sequence times 1000 plus its place in the record, and the cursor "
        "to follow from (read by direct get).",
    ),
    (
        "checkpoints",
        "sess.{session_id}.out.ckpt",
        Checkpoint,
        True,
        "The latest snapshot of the session's state (rolled up): the fold of its events up "
        "to `as_of`.",
    ),
    (
        "expiry-timers",
        "sess.{session_id}.out.timer",
        Expire,
        True,
        "The session's expiry timer: a JetStream message schedule (`Nats-Schedule: @at …`) "
        "that publishes this `expire` command to the session's commands when due.",
    ),
    (
        "live",
        "live.{session_id}",
        LiveMessage,
        True,
        "Core NATS, not stored: a notice after each stored event (`commit`: the event and "
        "the sequence it was fenced on, so a follower sees a gap), the latest event when a "
        "worker takes the session up (`tail`), and the token deltas of the turn in flight.",
    ),
    (
        "snapshots",
        "snap.{session_id}",
        Empty,
        False,
        "Request/reply: the owner answers with the text so far of the turn in flight "
        "(a `Snapshot`; empty when there is none). Answered to `_INBOX.` subjects only.",
    ),
    (
        "snapshot-answers",
        "_INBOX.{inbox}",
        Snapshot,
        True,
        "The owner's answer to a snapshot request.",
    ),
    (
        "purge-requests",
        subjects.PURGE_REQUESTS,
        PurgeRequest,
        False,
        "Request/reply, answered by one worker (a queue group): remove a session, for "
        "callers that may not purge the stream themselves. Answered to `_INBOX.` subjects.",
    ),
    (
        "lease-handovers",
        "praxis.lease.{worker_id}",
        LeaseHandover,
        False,
        "Request/reply between workers: a worker that got a trigger of a session another "
        "worker holds hands it to that worker, which takes it if it runs the session "
        "(and acknowledges it), or hands over a lease it only keeps between turns. "
        "Answered with a `LeaseHandoverAnswer`.",
    ),
    (
        "purge-answers",
        "_INBOX.{inbox}",
        PurgeAnswer,
        True,
        "A worker's answer to a purge request.",
    ),
    (
        "command-outcomes",
        "_INBOX.{inbox}",
        CommandOutcome,
        True,
        "How a command that named a `reply_to` ended (core NATS, best effort: the events "
        "are the truth).",
    ),
]


def _buckets(s: Settings) -> list[tuple[str, str, Any, bool, str]]:
    return [
        (
            "session-records",
            subjects.kv_key(s.sessions_bucket, SESSION),
            SessionRecord,
            True,
            "Key-value bucket: each session's record, the index that listings read.",
        ),
        (
            "worker-heartbeats",
            subjects.kv_key(s.workers_bucket, "{worker_id}"),
            WorkerInfo,
            True,
            "Key-value bucket: each live worker's heartbeat (with a time to live).",
        ),
        (
            "dead-letters",
            subjects.kv_key(s.dead_letters_bucket, "{letter_id}"),
            DeadLetter,
            True,
            "Key-value bucket: commands parked after their handling kept failing.",
        ),
    ]


def document(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bus (``settings``: its names and servers)."""
    s = settings or Settings()
    servers = (s.nats_url or "nats://127.0.0.1:4222").split(",")
    broker = NatsBroker(servers)
    channels = [*_CHANNELS, *_partitioned(_CHANNELS), *_buckets(s)]
    for name, subject, payload, praxis_sends, description in channels:
        if praxis_sends:
            broker.publisher(subject, title=name, description=description, schema=payload)
        else:
            _receiver(broker, name, subject, payload, description)
    spec = AsyncAPI(
        broker,
        title="Praxis bus",
        version=installed_version(),
        description="Conversational agent sessions on NATS JetStream: the subjects, what "
        f"travels on them, and who sends it. Stream `{s.stream}` holds partition 0 "
        f"(`sess.<id>.in`, `sess.<id>.out.>`); the workers' durable pull consumer "
        f"`{s.consumer}` takes `{subjects.input_wildcard(0)}`. " + _PARTITIONS,
    )
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    for channel in doc.get("channels", {}).values():  # AsyncAPI 3: name the parameters
        names = re.findall(r"\{(\w+)\}", channel.get("address", ""))
        if names:
            channel["parameters"] = {n: {"description": _PARAMETERS[n]} for n in names}
    # Named things in name order: the generator's order changes from run to run, and the
    # committed copy should change only when the contract does.
    for key in ("channels", "operations"):
        doc[key] = dict(sorted(doc.get(key, {}).items()))
    for key, named in doc.get("components", {}).items():
        doc["components"][key] = dict(sorted(named.items()))
    return doc


_PARAMETERS = {
    "session_id": "A session id: 1-128 characters from A-Z, a-z, 0-9, '_' and '-'.",
    "partition": "`p<k>`: the session's partition k, 1 or more (see the description).",
    "worker_id": "A worker id.",
    "letter_id": "A dead letter's id.",
    "inbox": "The rest of the requester's inbox subject.",
}


_SESSION_PREFIX = f"sess.{SESSION}."


def _partitioned(
    channels: list[tuple[str, str, Any, bool, str]],
) -> list[tuple[str, str, Any, bool, str]]:
    """Each session channel again for partitions 1 and up (``sess.<id>.p<k>.…``)."""
    return [
        (
            f"{name}-in-partition",
            f"{_SESSION_PREFIX}{{partition}}.{subject.removeprefix(_SESSION_PREFIX)}",
            payload,
            sends,
            f"`{name}` of a session in partition 1 or more (the same messages).",
        )
        for name, subject, payload, sends, _ in channels
        if subject.startswith(_SESSION_PREFIX)
    ]


def _receiver(broker: NatsBroker, name: str, subject: str, payload: Any, description: str) -> None:
    """A channel Praxis receives on, with ``payload`` as its message."""

    async def handler(message: Any) -> None:
        """Documentation only: never subscribed."""

    # The message's type, from which faststream makes the schema (set here: annotations in
    # this module are strings, not evaluated).
    handler.__annotations__ = {"message": payload, "return": None}
    broker.subscriber(subject, title=name, description=description)(handler)
