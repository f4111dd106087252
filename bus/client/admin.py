"""Removing sessions: everything of a session purged from the bus, by a client allowed
to purge the stream, or by a worker on request (for the edge, whose bus user may not)."""

from __future__ import annotations

import json

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from praxis.bus import subjects
from praxis.bus.client import reading, scope
from praxis.bus.client.base import ClientState
from praxis.bus.errors import CommandTimeoutError, PublishError
from praxis.bus.partitions import in_partition
from praxis.schemas import check_token


async def purge(c: ClientState, session_id: str, missing_ok: bool) -> None:
    check_token(session_id, "session id")
    if c.scope is not None and not c.scope.admin:
        await scope.guard(c, session_id)  # an unknown one is not found, whatever missing_ok
    if not missing_ok:
        await reading.head(c, session_id)
    c.caches.task_ids.pop(session_id)
    js, settings = c.bus.js, c.bus.settings
    await js.purge_stream(c.bus.stream_of(session_id), subject=subjects.session_all(session_id))
    for bucket, key in (
        (in_partition(settings.sessions_bucket, c.bus.partition(session_id)), session_id),
        (c.bus.lease_bucket(session_id), session_id),
        (settings.dead_letters_bucket, f"{session_id}.*"),
    ):
        # The bucket's own stream, not KV purge: that would leave a marker naming the key.
        await js.purge_stream(subjects.kv_stream(bucket), subject=subjects.kv_key(bucket, key))


async def request_purge(c: ClientState, session_id: str) -> None:
    await scope.guard(c, session_id)
    await reading.head(c, session_id)
    request = json.dumps({"session_id": session_id}).encode()
    timeout = c.bus.settings.command_timeout
    try:
        resp = await c.bus.nc.request(subjects.PURGE_REQUESTS, request, timeout=timeout)
    except (NoRespondersError, NatsTimeoutError) as e:
        raise CommandTimeoutError(session_id, "purge", timeout) from e
    error = json.loads(resp.data or b"{}").get("error")
    if error:
        raise PublishError(f"purge of session {session_id!r} failed: {error}")
    c.caches.task_ids.pop(session_id)
