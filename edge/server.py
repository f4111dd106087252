"""Serve the edge with uvicorn inside the caller's event loop (and its signal handling)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
from collections.abc import Generator
from pathlib import Path

import uvicorn
from litestar import Litestar

from praxis.bus import follow
from praxis.bus.logs import say


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handlers: the caller's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class PortInUseError(OSError):
    """The address the edge is to listen on is taken (or not this machine's)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port), or one clear error."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise PortInUseError(f"cannot listen on {host!r}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is in use: stop what listens there, or choose "
                "another with --port (or PRAXIS_EDGE_PORT)"
            ) from None
        raise PortInUseError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def check_free(host: str, port: int) -> None:
    """Fail now, with one line, if the edge could not listen on ``host``:``port``."""
    if port:
        bind(host, port).close()


async def serve(
    app: Litestar,
    host: str,
    port: int,
    stop: asyncio.Event,
    ready_file: Path | None = None,
    also: Path | None = None,
) -> None:
    """Serve until ``stop`` is set; print the URL once listening (port 0: any free one),
    and write it to ``ready_file`` (and ``also``) as ``{"url": ..., "pid": ...}`` (whole or
    not at all), for a process that started this one (or looks for it)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through ours (PRAXIS_LOG_FORMAT, the ids)
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    server = _Server(config)
    sock = bind(host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # uvicorn has no event for this
        if task.done():
            with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                await task
            raise OSError(f"the edge could not start on {host}:{port} (see the log above)")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"http://{shown}:{bound[1]}"
    say(f"Praxis edge on {url}")
    for path in (ready_file, also):
        if path is not None:
            partial = path.with_name(path.name + ".part")
            partial.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            partial.replace(path)
    stop_waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
    # Streams end now, each with an `error` event that says where to follow again, rather
    # than being cut off when the graceful shutdown runs out.
    follow.end_all("the edge is stopping")
    server.should_exit = True
    stop_waiter.cancel()
    await task
