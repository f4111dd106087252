"""``praxis up``: the local stack in the foreground (NATS unless PRAXIS_NATS_URL, workers,
the edge), one per data directory, until Ctrl-C.

Children report readiness through the bus (workers' heartbeats) and a ready file (the
edge's URL), not through their logs. ``up`` supervises what it started: a nats-server or a
child that stops is started again (the server on the same port, its data on disk); one that
keeps stopping stops the stack, with one line saying why. The children run in process groups
of their own, so that Ctrl-C at the terminal reaches ``up`` alone, which then stops each of
them once (SIGTERM: workers finish their turns, the edge ends its streams); and each stops by
itself if ``up`` goes away without stopping them (see :mod:`praxis.cli.serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from praxis.bus import BusError, SessionClient, Settings, connect
from praxis.bus.embedded import Embedded, ensure_server
from praxis.bus.logs import say
from praxis.bus.permissions import Role
from praxis.cli.common import EDGE_FILE, warn
from praxis.cli.runtime import Endpoint, resolve_url, runs
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.serve import SUPERVISOR_FD, HostOption, PortOption

log = logging.getLogger("praxis.cli")

LOCK_FILE = "up.lock"
"""Held (flock) by the ``praxis up`` of a data directory for as long as it runs."""
STACK_FILE = "stack.json"
"""What that ``praxis up`` runs: ``{"pid", "nats", "edge"}`` (for the refusal of another)."""

RESTARTS = 3
"""Restarts of one part within :data:`RESTART_WINDOW` seconds before the stack gives up."""
RESTART_WINDOW = 60.0


class StackRunningError(OSError):
    """Another ``praxis up`` runs for this data directory."""


class StackStoppedError(BusError):
    """A part of the stack stopped and could not be kept running."""


@dataclass
class Child:
    """A process of the stack: a worker or the edge, started again the same way."""

    name: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    url: str | None = None
    """The edge's, once it listens."""
    restarts: list[float] = field(default_factory=list)

    def start(self, supervisor_fd: int, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "praxis.cli", *self.args, *extra],
            env=self.env | {SUPERVISOR_FD: str(supervisor_fd)},
            pass_fds=(supervisor_fd,),
            process_group=0,  # Ctrl-C at the terminal is for 'up' alone
            stdout=subprocess.DEVNULL if self.args[0] == "edge" else None,  # up says its URL
        )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


@contextlib.contextmanager
def one_stack(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's stack lock while the stack runs (released by the kernel
    however this process ends), or refuse: one stack per data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / LOCK_FILE, "a")  # noqa: SIM115 (held open: the lock is the file's)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise StackRunningError(_running_stack(data_dir)) from None
    try:
        yield
    finally:
        (data_dir / STACK_FILE).unlink(missing_ok=True)
        fh.close()


def _running_stack(data_dir: Path) -> str:
    try:
        found = json.loads((data_dir / STACK_FILE).read_text())
        where = f"PID {int(found['pid'])}: NATS at {found['nats']}"
        if found.get("edge"):
            where += f", HTTP API at {found['edge']}"
    except (OSError, ValueError, KeyError, TypeError):
        where = "starting"
    return (
        f"Praxis already runs for {data_dir} ('praxis up', {where}): use it (in another "
        'shell: eval "$(praxis env)"), stop it with Ctrl-C in its terminal, or run another '
        "stack with its own PRAXIS_DATA_DIR"
    )


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
    with one_stack(settings.data_dir):
        edge_args: list[str] | None = None
        if edge:  # before anything starts: a port in use is one line, not a half-started stack
            from praxis.edge.server import check_free

            bind, at = host or settings.edge_host, settings.edge_port if port is None else port
            check_free(bind, at)
            edge_args = ["--host", bind, "--port", str(at)]
        stack = Stack(settings, max(workers, 0), edge_args)
        stop = asyncio.Event()
        _stop_on_signals(stop)
        try:
            if await _unless_stopped(stack.start(), stop):
                stack.announce()
                await stack.watch(stop)
        finally:
            await stack.stop()
            say("Praxis stopped.")


async def _unless_stopped(starting: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``starting`` to its end, or until ``stop`` (Ctrl-C while the stack starts):
    whether it ended."""
    task = asyncio.create_task(starting)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # its error, if it failed
    return True


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT, SIGTERM and SIGHUP stop the stack; more of them change nothing (the stop
    finishes: every child stopped, the server released), and say so once."""
    loop = asyncio.get_running_loop()
    told = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal told
        if not stop.is_set():
            log.info("received %s: stopping", sig.name)
            stop.set()
        elif not told:
            told = True
            say("Still stopping: the workers finish their turns first.")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)


class Stack:
    """The embedded server (unless ``PRAXIS_NATS_URL``), the workers and the edge."""

    def __init__(self, settings: Settings, workers: int, edge_args: list[str] | None) -> None:
        self.settings = settings
        self.n_workers = workers
        self.edge_args = edge_args
        self.endpoint: Endpoint | None = None
        self.children: list[Child] = []
        self.nats_restarts: list[float] = []
        # Each child holds the read end; it reads end-of-file when this process is gone.
        self.pipe_r, self.pipe_w = os.pipe()

    @property
    def embedded(self) -> Embedded | None:
        return self.endpoint.embedded if self.endpoint else None

    def _env(self, role: Role) -> dict[str, str]:
        """Each child logs in as its role (with the embedded server)."""
        assert self.endpoint is not None
        env = {**os.environ, "PRAXIS_NATS_URL": self.endpoint.url}
        env["PRAXIS_INPROCESS_WORKER"] = "never"
        seed = self.endpoint.credentials(role).nkey_seed
        if seed is not None:
            env["PRAXIS_NATS_NKEY_SEED"] = str(seed)
        return env

    async def start(self) -> None:
        self.endpoint = await resolve_url(self.settings, keep=True)
        admin = self.endpoint.credentials(Role.ADMIN)
        # Connecting as an admin first creates the stream and buckets of a new data directory.
        async with connect(self.settings, self.endpoint.url, "praxis-up", Role.ADMIN, admin) as bus:
            port = self.settings.metrics_port
            for i in range(self.n_workers):
                metrics = {"PRAXIS_METRICS_PORT": str(port + i)} if port else {}
                child = Child(f"worker {i + 1}", ["worker"], self._env(Role.WORKER) | metrics)
                self.children.append(child)
                child.start(self.pipe_r)
            await _wait_for_workers(SessionClient(bus), self.children)
        if self.edge_args is not None:
            child = Child("the edge", ["edge", *self.edge_args], self._env(Role.EDGE))
            self.children.append(child)  # stopped with the others, even while it starts
            await self._start_edge(child)
        self._write_files()

    async def _start_edge(self, child: Child) -> None:
        with tempfile.TemporaryDirectory(prefix="praxis-up-") as tmp:
            ready = Path(tmp) / "edge.json"
            child.start(self.pipe_r, "--ready-file", str(ready))
            child.url = await asyncio.to_thread(_ready_url, child, ready)

    def _write_files(self) -> None:
        data = self.settings.data_dir
        edge = next((c for c in self.children if c.url), None)
        if edge is not None:
            assert edge.proc is not None
            (data / EDGE_FILE).write_text(json.dumps({"url": edge.url, "pid": edge.proc.pid}))
        assert self.endpoint is not None
        stack = {"pid": os.getpid(), "nats": self.endpoint.url, "edge": edge and edge.url}
        (data / STACK_FILE).write_text(json.dumps(stack))

    def announce(self) -> None:
        assert self.endpoint is not None
        url, data = self.endpoint.url, self.settings.data_dir
        where = f"embedded NATS at {url} (data in {data})" if self.embedded else url
        edge_url = next((c.url for c in self.children if c.url), None)
        say(
            f"Praxis is up: {where}; {self.n_workers} worker(s)"
            + (f"; HTTP API at {edge_url} (docs at {edge_url}/schema)" if edge_url else "")
            + ". Ctrl-C to stop."
        )
        if self.embedded:
            say('To use it from programs in another shell: eval "$(praxis env)"')

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: start again what stopped (or give up, raising why)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
            if stop.is_set():
                return
            embedded = self.embedded
            if embedded is not None and not embedded.alive():
                await self._restart_nats(embedded)
            for child in self.children:
                code = child.exited()
                if code is not None:
                    await self._restart(child, code)

    async def _restart_nats(self, gone: Embedded) -> None:
        _count(self.nats_restarts, "the embedded nats-server", self._nats_log())
        assert self.endpoint is not None
        try:
            found = await asyncio.to_thread(ensure_server, self.settings, True)
        except BusError as e:
            raise StackStoppedError(
                f"the embedded nats-server (PID {gone.pid}) stopped and could not be started "
                f"again: {e}"
            ) from e
        if found.url != gone.url:  # its port was taken meanwhile: the children cannot follow
            with contextlib.suppress(Exception):
                await asyncio.to_thread(found.release, frozenset(), True)
            raise StackStoppedError(
                f"the embedded nats-server (PID {gone.pid}) stopped, and its address "
                f"{gone.url} is taken now: start 'praxis up' again"
            )
        self.endpoint = Endpoint(found.url, found, self.endpoint.given)
        warn(
            f"the embedded nats-server (PID {gone.pid}) stopped; started it again at "
            f"{found.url} (PID {found.pid}), with its data"
        )

    def _nats_log(self) -> str:
        return f"its log: {self.settings.data_dir / 'nats' / 'nats-server.log'}"

    async def _restart(self, child: Child, code: int) -> None:
        _count(child.restarts, child.name, "see the log above")
        warn(f"{child.name} stopped (exit code {code}); starting it again")
        if child.url is not None:
            await self._start_edge(child)
            self._write_files()
        else:
            child.start(self.pipe_r)

    async def stop(self) -> None:
        """Stop every child once (SIGTERM), wait for them (a worker finishes its turns
        first, up to its drain grace), then release the embedded server. Safe to call
        whatever was started."""
        (self.settings.data_dir / EDGE_FILE).unlink(missing_ok=True)
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        grace = self.settings.drain_grace + 15
        await asyncio.to_thread(_wait_all, running, grace)
        os.close(self.pipe_w)
        os.close(self.pipe_r)
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.release, frozenset(), True)


def _count(restarts: list[float], what: str, where: str) -> None:
    """Note a restart of ``what``; give up if it stopped too often lately."""
    now = time.monotonic()
    restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
    if len(restarts) > RESTARTS:
        raise StackStoppedError(
            f"{what} stopped {len(restarts)} times within {RESTART_WINDOW:.0f}s ({where}): "
            "stopping the stack"
        )


def _wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready_url(child: Child, ready: Path) -> str:
    """The edge's URL once it listens (from its ready file)."""
    assert child.proc is not None
    while child.proc.poll() is None:
        if ready.exists():
            return str(json.loads(ready.read_text())["url"])
        time.sleep(0.02)
    raise StackStoppedError(
        f"the edge did not start (exit code {child.proc.returncode}); see the log above"
    )


async def _wait_for_workers(client: SessionClient, children: list[Child]) -> None:
    pids = {c.proc.pid for c in children if c.proc is not None}
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        live = {w.pid for w in await client.workers()}
        if pids <= live:
            return
        dead = [c.exited() for c in children if c.exited() is not None]
        if dead or asyncio.get_running_loop().time() > deadline:
            raise StackStoppedError(
                f"{len(pids - live)} worker(s) did not start (exit codes {dead}); see the log above"
            )
        await asyncio.sleep(0.05)
