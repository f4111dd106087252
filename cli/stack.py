"""``praxis up``: the local stack in the foreground (NATS unless PRAXIS_NATS_URL, workers,
the edge). Children report readiness through the bus (workers' heartbeats) and a ready
file (the edge's URL), not through their logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from praxis.bus import (
    BusError,
    SessionClient,
    Settings,
    connect,
)
from praxis.bus.logs import say
from praxis.bus.permissions import Role
from praxis.cli.common import EDGE_FILE
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import resolve_url, runs
from praxis.cli.serve import HostOption, PortOption
from praxis.workers import install_signal_handlers


def _metrics_port(settings: Settings, i: int) -> dict[str, str]:
    """Worker ``i`` of several serves its metrics on the port after worker ``i - 1``'s."""
    port = settings.metrics_port
    return {"PRAXIS_METRICS_PORT": str(port + i)} if port else {}


@runs("INFO")
async def up_cmd(
    *,
    workers: Annotated[int, Parameter(help="Worker processes to run.")] = 1,
    host: HostOption = None,
    port: PortOption = None,
    edge: Annotated[bool, Parameter(help="Run the HTTP edge too.", negative="--no-edge")] = True,
) -> None:
    """The ``praxis up`` command (its help text: :mod:`praxis.cli.app`)."""
    settings = _settings()
    if edge:  # before anything starts: a port in use is one line, not a half-started stack
        from praxis.edge.server import check_free

        check_free(host or settings.edge_host, settings.edge_port if port is None else port)
    endpoint = await resolve_url(settings, keep=True)
    url, embedded = endpoint.url, endpoint.embedded

    def env(role: Role) -> dict[str, str]:
        """Each child process logs in as its role (with the embedded server)."""
        out = {**os.environ, "PRAXIS_NATS_URL": url, "PRAXIS_INPROCESS_WORKER": "never"}
        seed = endpoint.credentials(role).nkey_seed
        if seed is not None:
            out["PRAXIS_NATS_NKEY_SEED"] = str(seed)
        return out

    stop = asyncio.Event()
    install_signal_handlers(stop)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        admin = endpoint.credentials(Role.ADMIN)
        async with connect(settings, url, "praxis-up", Role.ADMIN, admin) as bus:
            procs = [
                subprocess.Popen(  # noqa: ASYNC220
                    [sys.executable, "-m", "praxis.cli", "worker"],
                    env=env(Role.WORKER) | _metrics_port(settings, i),
                )
                for i in range(max(workers, 0))
            ]
            await _wait_for_workers(SessionClient(bus), {p.pid for p in procs}, procs)
            edge_url = None
            if edge:
                edge_args = ["--host", host or settings.edge_host]
                edge_args += ["--port", str(settings.edge_port if port is None else port)]
                edge_proc, edge_url = await asyncio.to_thread(
                    _start_edge, edge_args, env(Role.EDGE)
                )
                procs.append(edge_proc)
            edge_file = settings.data_dir / EDGE_FILE
            if edge_url:
                edge_file.write_text(json.dumps({"url": edge_url}))
            where = f"embedded NATS at {url} (data in {settings.data_dir})" if embedded else url
            say(
                f"Praxis is up: {where}; {workers} worker(s)"
                + (f"; HTTP API at {edge_url} (docs at {edge_url}/schema)" if edge_url else "")
                + ". Ctrl-C to stop."
            )
            if embedded:
                say('To use it from programs in another shell: eval "$(praxis env)"')
            await stop.wait()
    finally:
        (settings.data_dir / EDGE_FILE).unlink(missing_ok=True)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            await asyncio.to_thread(p.wait)
        if embedded is not None:
            await asyncio.to_thread(embedded.release, frozenset(), True)
        say("Praxis stopped.")


def _start_edge(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``praxis edge``; return it and its URL once it listens (from its ready file)."""
    with tempfile.TemporaryDirectory(prefix="praxis-up-") as tmp:
        ready = Path(tmp) / "edge.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "praxis.cli", "edge", *args, "--ready-file", str(ready)],
            env=env,
            stdout=subprocess.DEVNULL,  # its banner: up prints its own (its logs: stderr)
        )
        while proc.poll() is None:
            if ready.exists():
                return proc, str(json.loads(ready.read_text())["url"])
            time.sleep(0.02)
    raise BusError(f"the edge did not start (exit code {proc.returncode}); see the log above")


async def _wait_for_workers(
    client: SessionClient, pids: set[int], procs: list[subprocess.Popen[bytes]]
) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        live = {w.pid for w in await client.workers()}
        if pids <= live:
            return
        dead = [p for p in procs if p.poll() is not None]
        if dead or asyncio.get_running_loop().time() > deadline:
            raise BusError(
                f"{len(pids - live)} worker(s) did not start (exit codes "
                f"{[p.returncode for p in dead]}); see the log above"
            )
        await asyncio.sleep(0.05)
