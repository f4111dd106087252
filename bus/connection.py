"""The connection to NATS and the handles every Praxis process needs."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, ServiceUnavailableError
from nats.js.kv import KeyValue

from bus.errors import NotConnectedError, PublishError
from bus.settings import Settings

log = logging.getLogger("praxis.bus")
T = TypeVar("T")

RETRYABLE = (NoRespondersError, NatsTimeoutError, ServiceUnavailableError, asyncio.TimeoutError)


class RetryCount:
    """Publishes this process retried because JetStream was briefly unavailable."""

    value = 0


@dataclass(slots=True)
class Bus:
    """A live connection with the JetStream context and KV handles, for one process."""

    settings: Settings
    nc: Client
    js: JetStreamContext
    sessions: KeyValue
    leases: KeyValue
    dead_letters: KeyValue
    workers: KeyValue

    @property
    def stream(self) -> str:
        return self.settings.stream

    @property
    def timeout(self) -> float:
        return self.settings.request_timeout


async def open_connection(url: str, name: str, timeout: float) -> Client:
    """Connect with endless reconnects; fail fast if the first connect cannot be made."""

    async def _on_error(e: Exception) -> None:
        log.warning("nats: %s", e)

    holder: list[Client] = []

    async def _on_disconnect() -> None:
        if holder and (holder[0].is_closed or holder[0].is_draining):
            return  # our own close
        log.warning("nats: disconnected from %s", url)

    async def _on_reconnect() -> None:
        log.info("nats: reconnected")

    try:
        nc = await nats.connect(
            servers=[u.strip() for u in url.split(",")],
            name=name,
            connect_timeout=timeout,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            max_outstanding_pings=3,
            error_cb=_on_error,
            disconnected_cb=_on_disconnect,
            reconnected_cb=_on_reconnect,
        )
    except Exception as e:  # nats raises several unrelated types for a failed first connect
        raise NotConnectedError(url, str(e) or type(e).__name__) from e
    holder.append(nc)
    return nc


@asynccontextmanager
async def connect(settings: Settings, url: str, name: str) -> AsyncIterator[Bus]:
    """Connect, provision (idempotently) and yield a :class:`Bus`; drain on exit."""
    from bus.provision import provision  # local: provision imports Bus for typing

    nc = await open_connection(url, name, settings.request_timeout)
    try:
        js = nc.jetstream(timeout=settings.request_timeout)
        handles = await provision(js, settings)
        yield Bus(settings, nc, js, *handles)
    finally:
        if not nc.is_closed:
            try:
                await nc.drain()
            except Exception as e:
                log.debug("drain on close: %s", e)
                await nc.close()


async def with_retry(op: Callable[[], Awaitable[T]], *, what: str, deadline: float = 10.0) -> T:
    """Run ``op`` again with backoff while JetStream is briefly unavailable (leader change).

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
