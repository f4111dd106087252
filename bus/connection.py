"""The connection to NATS and the handles every Praxis process needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError
from nats.js.kv import KeyValue

from praxis.bus import subjects
from praxis.bus.credentials import Credentials
from praxis.bus.errors import NotConnectedError, ProvisioningError, PublishError
from praxis.bus.partitions import Partitions, in_partition
from praxis.bus.permissions import Role, inbox_prefix
from praxis.bus.provision import Handles, ensure_partition, provision, read_partitions
from praxis.bus.settings import Settings

log = logging.getLogger("praxis.bus")
T = TypeVar("T")

RETRYABLE = (
    NoRespondersError,
    NoStreamResponseError,  # no responders, as JetStream's publish reports it
    NatsTimeoutError,
    ServiceUnavailableError,
    asyncio.TimeoutError,
)


class RetryCount:
    """Publishes this process retried because JetStream was briefly unavailable."""

    value = 0


@dataclass(slots=True)
class Bus:
    """A live connection with the JetStream context and KV handles, for one process."""

    settings: Settings
    nc: Client
    js: JetStreamContext
    partitions: Partitions
    handles: list[Handles]
    """Each partition's session records and leases buckets."""
    dead_letters: KeyValue
    workers: KeyValue

    def records_of(self, session_id: str) -> KeyValue:
        """The bucket of ``session_id``'s record (in its partition)."""
        return self.handles[self.partitions.of(session_id)][0]

    def leases_of(self, session_id: str) -> KeyValue:
        """The bucket of ``session_id``'s lease (in its partition)."""
        return self.handles[self.partitions.of(session_id)][1]

    def lease_bucket(self, session_id: str) -> str:
        """The name of :meth:`leases_of`'s bucket."""
        return in_partition(self.settings.leases_bucket, self.partitions.of(session_id))

    def partition(self, session_id: str) -> int:
        """The partition that holds ``session_id`` (see :mod:`praxis.bus.partitions`)."""
        return self.partitions.of(session_id)

    def inputs(self, session_id: str) -> str:
        """The subject of ``session_id``'s commands, in its partition."""
        return subjects.inputs(session_id, self.partitions.of(session_id))

    def events(self, session_id: str) -> str:
        """The subject of ``session_id``'s events, in its partition."""
        return subjects.events(session_id, self.partitions.of(session_id))

    def stream_of(self, session_id: str) -> str:
        """The stream that holds ``session_id``."""
        return self.partitions.stream(self.partitions.of(session_id))

    async def refresh_partitions(self) -> Partitions:
        """Read the partitioning again (the bus may have grown since this connected)."""
        found = await read_partitions(self.js, self.settings.stream)
        for k in range(len(self.handles), found.count):  # grown: open the new buckets
            self.handles.append(
                await ensure_partition(self.js, self.settings, found, k, create=False)
            )
        self.partitions = found
        return found

    @property
    def timeout(self) -> float:
        return self.settings.request_timeout


async def open_connection(
    url: str,
    name: str,
    timeout: float,
    credentials: Credentials | None = None,
    inbox: str = "_INBOX",
) -> Client:
    """Connect; give up soon if the first connect cannot be made, then reconnect for ever.

    ``inbox``: the prefix of this connection's reply subjects (a role's own, so that its
    permissions can keep other users off its replies)."""

    holder: list[Client] = []
    first_errors: list[str] = []  # why the first connect fails, before it gives up

    async def _on_error(e: Exception) -> None:
        if not holder:
            first_errors.append(str(e) or type(e).__name__)
            return
        text = str(e)
        if "permissions violation" in text.lower():
            refusals = REFUSED.setdefault(holder[0], [])
            refusals[:] = [*refusals[-9:], text]
        log.warning("nats: %s", e)

    async def _on_disconnect() -> None:
        if holder and (holder[0].is_closed or holder[0].is_draining):
            return  # our own close
        if holder:
            DOWN_SINCE[holder[0]] = asyncio.get_running_loop().time()
        log.warning("nats: disconnected from %s", url)

    async def _on_reconnect() -> None:
        if holder:
            DOWN_SINCE.pop(holder[0], None)
        log.info("nats: reconnected")

    try:
        nc = await nats.connect(
            servers=[u.strip() for u in url.split(",")],
            name=name,
            connect_timeout=timeout,
            allow_reconnect=True,
            max_reconnect_attempts=FIRST_CONNECT_ATTEMPTS,
            reconnect_time_wait=0.5,
            max_outstanding_pings=3,
            error_cb=_on_error,
            disconnected_cb=_on_disconnect,
            reconnected_cb=_on_reconnect,
            inbox_prefix=inbox,
            **(credentials.options() if credentials else {}),
        )
    except Exception as e:  # nats raises several unrelated types for a failed first connect
        raise NotConnectedError(url, _why(first_errors, e, credentials)) from e
    nc.options["max_reconnect_attempts"] = -1  # once connected: reconnect for ever
    holder.append(nc)
    return nc


REFUSED: weakref.WeakKeyDictionary[Client, list[str]] = weakref.WeakKeyDictionary()
"""The last permission violations the server reported to each connection (it refuses a
request by saying so, not by answering it: the request itself times out)."""


DOWN_SINCE: weakref.WeakKeyDictionary[Client, float] = weakref.WeakKeyDictionary()
"""When each connection was lost (the event loop's clock), until it is made again."""


async def reconnected(nc: Client, grace: float) -> bool:
    """Whether ``nc`` is connected, waiting for that while it has been down for less than
    ``grace`` seconds (a cluster's client fails over to another server in well under a
    second; a server that is gone stays gone)."""
    loop = asyncio.get_running_loop()
    deadline = DOWN_SINCE.get(nc, loop.time()) + grace
    while not nc.is_connected:
        if nc.is_closed or loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def refused(nc: Client) -> str | None:
    """The last permission violation the server reported on this connection, if any."""
    found = REFUSED.get(nc)
    return found[-1] if found else None


FIRST_CONNECT_ATTEMPTS = 2
"""Tries of each server before the first connect gives up (half a second apart)."""


def _why(seen: list[str], e: Exception, credentials: Credentials | None) -> str:
    """Why the first connect failed: a refusal of credentials wins over the resets the
    server sends after it."""
    if any("authorization violation" in x.lower() for x in seen):
        hint = "set PRAXIS_NATS_NKEY_SEED, PRAXIS_NATS_CREDS or PRAXIS_NATS_USER and PASSWORD"
        if credentials and credentials.given:
            return f"the server refused these credentials ({hint})"
        return f"the server requires credentials ({hint})"
    return seen[-1] if seen else str(e) or type(e).__name__


@asynccontextmanager
async def connect(
    settings: Settings,
    url: str,
    name: str,
    role: Role = Role.ADMIN,
    credentials: Credentials | None = None,
) -> AsyncIterator[Bus]:
    """Connect, provision (idempotently) and yield a :class:`Bus`; drain on exit.

    ``role``: what the process is (its reply subjects' prefix; whether it may create the
    stream and buckets). ``credentials``: default, those of ``settings``. A process that
    connects without credentials creates what is missing, as an admin would; one with
    credentials of a role other than admin only checks that it is there."""
    creds = credentials if credentials is not None else Credentials.from_settings(settings)
    nc = await open_connection(url, name, settings.request_timeout, creds, inbox_prefix(role))
    try:
        js = nc.jetstream(timeout=settings.request_timeout)
        try:
            handles = await provision(js, settings, create=role is Role.ADMIN or not creds.given)
        except RETRYABLE as e:
            why = refused(nc)
            if why is None:
                raise
            raise ProvisioningError(
                f"these credentials may not provision the bus ({why}): provision it once "
                "with admin credentials ('praxis bus provision')"
            ) from e
        bus = Bus(settings, nc, js, *handles)
        refresher = asyncio.create_task(_refresh_partitions(bus))
        try:
            yield bus
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
    finally:
        if not nc.is_closed:
            try:
                await nc.drain()
            except Exception as e:  # e.g. reconnecting: the server went away first
                log.debug("drain on close: %s", e)
                try:
                    await nc.close()
                except Exception as closing:  # nats-py writes its buffer to a dead socket
                    log.debug("close after a failed drain: %s", closing)


PARTITIONS_REFRESH = 5.0
"""Seconds between a process's readings of the bus's partitioning: a bus grown while it
runs has its new partitions used (new sessions, workers taking work) within this."""


async def _refresh_partitions(bus: Bus) -> None:
    while True:
        await asyncio.sleep(PARTITIONS_REFRESH)
        try:
            await bus.refresh_partitions()
        except Exception as e:  # reconnecting, say: the next round tries again
            log.debug("reading the partitions failed: %s", e)


async def with_retry(op: Callable[[], Awaitable[T]], *, what: str, deadline: float) -> T:
    """Run ``op`` again with backoff while JetStream is briefly unavailable (leader change),
    for up to ``deadline`` seconds (``Settings.retry_window``).

    Only for operations that are safe to repeat (publishes carry ``Nats-Msg-Id``).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    delay = 0.05
    while True:
        try:
            return await op()
        except RETRYABLE as e:
            if loop.time() + delay > end:
                raise PublishError(
                    f"{what}: JetStream unavailable for {deadline:g}s ({e!r})"
                ) from e
            RetryCount.value += 1
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        except APIError as e:
            if e.code == 503 and loop.time() + delay < end:
                RetryCount.value += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            raise PublishError(f"{what}: {e.description or e}") from e
