"""What a CLI command runs on: a bus connection, embedded NATS and worker when needed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec

import uvloop

from praxis.bus import Bus, SessionClient, Settings, connect, logs, tracing
from praxis.bus.credentials import Credentials
from praxis.bus.embedded import Embedded, ensure_server
from praxis.bus.permissions import Role
from praxis.cli.remote import EdgeClient, Sessions
from praxis.schemas import Interface

if TYPE_CHECKING:  # imported when a command runs a worker itself, not at start-up
    from praxis.workers import Worker

P = ParamSpec("P")

log = logging.getLogger("praxis.cli")


def load_settings() -> Settings:
    return Settings()


def setup_logging(default: str) -> None:
    """Log at ``PRAXIS_LOG_LEVEL`` (else ``default``) in ``PRAXIS_LOG_FORMAT`` (text or
    json), every line with the session and task it is about (see :mod:`bus.logs`)."""
    level = os.environ.get("PRAXIS_LOG_LEVEL", default).upper()
    logs.configure(level, os.environ.get("PRAXIS_LOG_FORMAT", "text").strip().lower())


_WORKER_LOGGERS = ("praxis.worker", "praxis.bus.pull", "praxis.agents")


def _worker_log_to_file(settings: Settings) -> None:
    """The in-process worker's log lines into a file of the data directory."""
    folder = settings.data_dir / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(folder / "cli-worker.log")
    except OSError:  # no place for it: the lines are dropped, the errors still reach the user
        handler = logging.NullHandler()
    handler.addFilter(logs.Ids())
    handler.setFormatter(logging.Formatter(logs.TEXT))
    for name in _WORKER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False


def login_name() -> str | None:
    """Who runs the CLI, for the events its commands cause (``None`` if unknown)."""
    try:
        return getpass.getuser()[:200] or None
    except (KeyError, OSError):  # no such user in the passwords file, no variables set
        return None


def runs(
    log_level: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, int | None]]], Callable[P, int]]:
    """A command written as a coroutine: logging set up (``PRAXIS_LOG_LEVEL``, else
    ``log_level``), then run on uvloop; its exit status is what it returns (else 0)."""

    def wrap(command: Callable[P, Coroutine[Any, Any, int | None]]) -> Callable[P, int]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> int:
            setup_logging(log_level)
            return run_coro(command(*args, **kwargs))

        return run

    return wrap


def run_coro(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a command's coroutine on uvloop (errors are reported by ``praxis.cli.app.main``)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(interruptible(coro)) or 0


_RECANCEL = 5.0
"""Seconds after which a command that Ctrl-C has not ended is cancelled again: longer than
what a cancelled command does before it ends (say how to continue, within two seconds)."""


async def interruptible(coro: Coroutine[Any, Any, int | None]) -> int | None:
    """Run ``coro`` until it ends or Ctrl-C cancels it, then raise ``KeyboardInterrupt``.

    ``asyncio.Runner`` cancels the command once on the first Ctrl-C, and one cancellation
    can be lost: in Python 3.11 ``asyncio.wait_for`` (which nats-py's requests use) returns
    its result and drops a cancellation that arrives as its future completes, and the
    command then waits on as if no Ctrl-C had come. Here a command that has not ended
    :data:`_RECANCEL` seconds after a cancellation is cancelled again; a second Ctrl-C
    raises ``KeyboardInterrupt`` at once. Commands that handle signals themselves
    (``praxis up``, ``praxis worker``) install their own handlers over this one."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    task = loop.create_task(coro)

    def on_sigint() -> None:
        interrupted.set()
        task.cancel()
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one: at once

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
        return await task
    waiting = loop.create_task(interrupted.wait())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        while not task.done():  # interrupted, and the cancellation has not ended it (yet)
            await asyncio.wait({task}, timeout=_RECANCEL)
            task.cancel()
    finally:
        waiting.cancel()
        if not interrupted.is_set():
            loop.remove_signal_handler(signal.SIGINT)
        task.cancel()  # nothing if it ended; if this wrapper was cancelled, the command too
    if interrupted.is_set() and task.cancelled():
        raise KeyboardInterrupt
    return task.result()


@dataclass
class Runtime:
    bus: Bus
    client: SessionClient
    embedded: Embedded | None
    worker: Worker | None


@dataclass(frozen=True)
class Endpoint:
    """The NATS server a command uses, and how each kind of process logs in to it."""

    url: str
    embedded: Embedded | None
    given: Credentials
    """The credentials of the settings (``PRAXIS_NATS_*``), if any."""

    def credentials(self, role: Role) -> Credentials:
        """The settings' credentials, or with the embedded server, those of ``role``."""
        if self.given.given or self.embedded is None:
            return self.given
        return self.embedded.credentials(role)


async def resolve_url(settings: Settings, keep: bool = False) -> Endpoint:
    """``PRAXIS_NATS_URL``, or the embedded server under ``PRAXIS_DATA_DIR``."""
    given = Credentials.from_settings(settings)
    if settings.nats_url:
        return Endpoint(settings.nats_url, None, given)
    embedded = await asyncio.to_thread(ensure_server, settings, keep)
    return Endpoint(embedded.url, embedded, given)


def needs_the_bus(settings: Settings) -> None:
    """Refuse a command that works on the bus when only an edge is given: it would use a
    local embedded server instead, and show what is there (nothing), not the edge's."""
    if settings.edge_url and not settings.nats_url:
        raise ValueError(
            f"this command works on the bus, not through an edge: PRAXIS_EDGE_URL is set "
            "and PRAXIS_NATS_URL is not. Set PRAXIS_NATS_URL (and the bus credentials) to "
            "that deployment's NATS, or unset PRAXIS_EDGE_URL to use the local stack (in "
            f"{settings.data_dir})"
        )


async def _dedicated(client: SessionClient) -> bool:
    return any(w.dedicated for w in await client.workers())


def _wants_worker(settings: Settings, embedded: Embedded | None) -> bool:
    if settings.inprocess_worker == "never":
        return False
    return settings.inprocess_worker == "always" or embedded is not None


@contextlib.asynccontextmanager
async def bus_connection(
    settings: Settings,
    name: str,
    role: Role = Role.ADMIN,
    endpoint: Endpoint | None = None,
    own: set[int] | None = None,
) -> AsyncIterator[tuple[Bus, Embedded | None]]:
    """Connect as ``role`` (to the embedded server without a URL). Without ``endpoint``,
    release that server at the end; with one, the caller does, knowing its connections'
    ids (``own``, filled in here)."""
    tracing.configure(settings.tracing, name)
    where = endpoint or await resolve_url(settings)
    ids: set[int] = set() if own is None else own
    try:
        if where.embedded is not None and role is not Role.ADMIN:
            # Only an admin may create the stream and buckets of a new data directory.
            admin = where.credentials(Role.ADMIN)
            async with connect(settings, where.url, f"{name}-provision", Role.ADMIN, admin):
                pass
        async with connect(settings, where.url, name, role, where.credentials(role)) as bus:
            if bus.nc.client_id is not None:
                ids.add(int(bus.nc.client_id))
            yield bus, where.embedded
    finally:
        if endpoint is None and where.embedded is not None:
            await asyncio.to_thread(where.embedded.release, frozenset(ids))


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings,
    *,
    with_worker: bool = True,
    name: str = "praxis-cli",
    role: Role = Role.ADMIN,
    worker_log: bool = False,
) -> AsyncIterator[Runtime]:
    """A connection as ``role`` and, when no dedicated worker is live, a worker in this
    process (on a connection of its own unless ``role`` may do a worker's job).

    That worker's log goes to ``DATA_DIR/logs/cli-worker.log``, not beside the command's
    own output (its one-line errors say what the user needs), unless ``worker_log`` (a
    server, whose log is the place) or ``PRAXIS_LOG_LEVEL`` is set."""
    if role is not Role.EDGE:
        needs_the_bus(settings)
    endpoint = await resolve_url(settings)
    own: set[int] = set()
    try:
        async with contextlib.AsyncExitStack() as stack:
            bus, embedded = await stack.enter_async_context(
                bus_connection(settings, name, role, endpoint, own)
            )
            client = SessionClient(bus, Interface.CLI, actor=login_name())
            worker: Worker | None = None
            if with_worker and _wants_worker(settings, embedded) and not await _dedicated(client):
                # Any number of stateless workers may serve a session, so each CLI command
                # runs its own unless a dedicated one ('praxis worker', 'praxis up') is live.
                worker_bus = bus
                if role is not Role.ADMIN:
                    worker_bus, _ = await stack.enter_async_context(
                        bus_connection(settings, f"{name}-worker", Role.WORKER, endpoint, own)
                    )
                from praxis.workers import Worker, registry_for

                if not worker_log and "PRAXIS_LOG_LEVEL" not in os.environ:
                    _worker_log_to_file(settings)
                worker = Worker(worker_bus, registry_for(settings), dedicated=False)
                await worker.heartbeat()
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop)) if worker else None
            try:
                yield Runtime(bus, client, embedded, worker)
            finally:
                if task is not None:
                    stop.set()
                    await task
    finally:
        if endpoint.embedded is not None:
            await asyncio.to_thread(endpoint.embedded.release, frozenset(own))


@contextlib.asynccontextmanager
async def sessions(settings: Settings, *, with_worker: bool = True) -> AsyncIterator[Sessions]:
    """What the session commands drive: a remote edge (``PRAXIS_EDGE_URL``, with
    ``PRAXIS_API_KEY``), or the bus (see :func:`runtime`)."""
    if settings.edge_url:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        remote = EdgeClient(settings.edge_url, key, settings.request_timeout)
        try:
            yield remote
        finally:
            await remote.aclose()
        return
    async with runtime(settings, with_worker=with_worker) as rt:
        yield rt.client
