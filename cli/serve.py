"""Serving: ``praxis worker`` and ``praxis edge`` run until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from praxis.bus.logs import say
from praxis.bus.permissions import Role
from praxis.cli.common import EDGE_FILE, running_edge, warn
from praxis.cli.runtime import bus_connection, runs, runtime
from praxis.cli.runtime import load_settings as _settings
from praxis.workers import Worker, install_signal_handlers, registry_for

log = logging.getLogger("praxis.cli")


SUPERVISOR_FD = "PRAXIS_SUPERVISOR_FD"
"""Set by ``praxis up`` for the processes it starts: a pipe's read end, at end-of-file once
``up`` is gone (however it ended), when they stop by themselves."""


def stop_with_supervisor(stop: asyncio.Event) -> None:
    """Under ``praxis up``: set ``stop`` once it is gone (its pipe reads end-of-file)."""
    raw = os.environ.get(SUPERVISOR_FD, "")
    if not raw.isdigit():
        return
    fd, loop = int(raw), asyncio.get_running_loop()

    def gone() -> None:
        loop.remove_reader(fd)
        if not stop.is_set():
            log.warning("praxis up is gone: stopping")
            stop.set()

    try:
        loop.add_reader(fd, gone)
    except (OSError, ValueError):  # not open here: not started by up after all
        return


def _stop_event() -> asyncio.Event:
    """Set by SIGTERM, SIGINT, or the end of the ``praxis up`` that started this process."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    stop_with_supervisor(stop)
    return stop


@runs("INFO")
async def worker_cmd() -> None:
    """The ``praxis worker`` command (its help text: :mod:`praxis.cli.app`)."""
    settings = _settings()
    async with bus_connection(settings, "praxis-worker", Role.WORKER) as (bus, _):
        await Worker(bus, registry_for(settings)).run(_stop_event())


HostOption = Annotated[
    str | None, Parameter(help="Address to listen on (default PRAXIS_EDGE_HOST, 127.0.0.1).")
]


PortOption = Annotated[
    int | None, Parameter(help="Port to listen on, 0 for any free one (default 8000).")
]


@runs("WARNING")
async def edge_cmd(
    *,
    host: HostOption = None,
    port: PortOption = None,
    ready_file: Annotated[
        Path | None,
        Parameter(help='Once listening, write {"url": ...} to this file (for supervisors).'),
    ] = None,
) -> None:
    """The ``praxis edge`` command (its help text: :mod:`praxis.cli.app`)."""
    # Imported here: a worker, which shares this module, starts 1.5 s sooner without them.
    from praxis.edge.app import create_app
    from praxis.edge.auth import is_loopback
    from praxis.edge.server import check_free, serve

    settings = _settings()
    bind = host or settings.edge_host
    if settings.auth == "off":
        if not is_loopback(bind):
            raise ValueError(
                f"refusing to serve the edge on {bind} without authentication: set "
                "PRAXIS_AUTH=on (with keys from 'praxis keys create', or PRAXIS_JWT_*), "
                "or bind to 127.0.0.1"
            )
        warn(
            "the edge runs without authentication (PRAXIS_AUTH=off): anyone who can reach "
            "this machine's loopback address can use every session"
        )
    edge_port = settings.edge_port if port is None else port
    check_free(bind, edge_port)  # before connecting: a port in use is one line
    stop = _stop_event()
    async with runtime(settings, name="praxis-edge", role=Role.EDGE, worker_log=True) as rt:
        if rt.worker is not None:
            say("No dedicated worker is running: this edge runs one itself.")
        app = create_app(settings, rt.bus)
        # On the data directory's own server, 'praxis env' tells other shells this URL.
        shown = None
        if rt.embedded is not None and running_edge(settings) is None:
            shown = settings.data_dir / EDGE_FILE
        try:
            await serve(app, bind, edge_port, stop, ready_file, also=shown)
        finally:
            if shown is not None:
                shown.unlink(missing_ok=True)
