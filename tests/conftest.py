"""Fixtures: a real nats-server on a free loopback port, workers in-process and as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.errors import NoRespondersError

from praxis.bus import Bus, Receipt, SessionClient, Settings, connect, subjects
from praxis.bus.credentials import Credentials, seed_file, write_server_config
from praxis.bus.embedded import NatsServer
from praxis.bus.permissions import Role
from praxis.bus.state import read_events
from praxis.schemas import Event, Interface, SessionRecord
from praxis.workers import Worker, registry_for
from tests.agents_for_tests import TEST_AGENTS
from tests.fake_models import FakeModelServer

ROOT = Path(__file__).resolve().parent.parent

# Short times so that takeovers happen within a test; the same values go to subprocesses.
FAST = {
    "lease_ttl": 2.0,
    "ack_wait": 2.0,
    "heartbeat_interval": 0.5,
    "command_timeout": 20.0,
    "drain_grace": 2.0,
    "linger": 2.0,
}


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


# The users of each test server (url -> the folder of their seeds): components log in as
# their role, so every test also shows that each role's permissions are enough for its job.
AUTH_DIRS: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def _sigint_kept() -> Iterator[None]:
    """A test that leaves this process with another SIGINT handler (a library that ignores
    it, say) or with SIGINT blocked is named in the warnings, and both are put back:
    children started later would inherit an ignored or blocked SIGINT, and Ctrl-C tests of
    them would hang."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after != before:
        signal.signal(signal.SIGINT, before)
        warnings.warn(f"the test left SIGINT handled by {after!r}; put back", stacklevel=1)
    if signal.SIGINT in signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}):
        warnings.warn("the test left SIGINT blocked; unblocked", stacklevel=1)


def as_a_shell_starts_it() -> None:
    """A child's SIGINT at its default and not blocked (both are inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_nats(home: Path, *, provision: bool = True, partitions: int = 1) -> NatsServer:
    """A nats-server with a user per role, as the embedded one has; clients that give no
    credentials are admins (tests and raw nats-py clients). ``provision``: as 'praxis bus
    provision' would (the other roles only check), with ``partitions``."""
    auth = home / "auth"
    config = write_server_config(auth, make_settings("", home), default=Role.ADMIN)
    server = NatsServer(home / "jetstream", log_file=home / "nats.log", config=config).start()
    AUTH_DIRS[server.url] = auth

    async def provisioned() -> None:
        made = make_settings(server.url, home, partitions=partitions)
        async with connect(made, server.url, "test-provision"):
            pass

    if provision:
        try:
            asyncio.run(provisioned())
        except BaseException:
            server.stop()  # not left running for the rest of the session
            raise
    return server


def credentials(url: str | None, role: Role) -> Credentials:
    """How a component of ``role`` logs in to the test server at ``url``."""
    auth = AUTH_DIRS.get(url or "")
    return Credentials(nkey_seed=seed_file(auth, role)) if auth else Credentials()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``partitions(1, 3)`` runs on a bus of each of those partitions."""
    marker = metafunc.definition.get_closest_marker("partitions")
    if marker is not None and "nats" in metafunc.fixturenames:
        counts = list(marker.args)
        ids = [f"p{n}" for n in counts]
        metafunc.parametrize("nats", counts, indirect=True, ids=ids, scope="module")


@pytest.fixture(scope="module")
def nats(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[NatsServer]:
    """The module's server; its bus has one partition, or as many as the module's
    ``partitions`` marker gives (each in turn)."""
    partitions = getattr(request, "param", 1)
    server = start_nats(tmp_path_factory.mktemp("nats"), partitions=partitions)
    yield server
    server.stop()
    AUTH_DIRS.pop(server.url, None)


def make_settings(url: str, data_dir: Path, **over: Any) -> Settings:
    over.setdefault("agents_dir", data_dir / "agents")  # none, unless a test writes some
    return Settings(
        nats_url=url, data_dir=data_dir, agents=TEST_AGENTS.split(","), **{**FAST, **over}
    )


@pytest.fixture
def settings(nats: NatsServer, tmp_path: Path) -> Settings:
    return make_settings(nats.url, tmp_path)


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    assert settings.nats_url
    async with connect(settings, settings.nats_url, "test-client") as b:
        yield b


@pytest.fixture
async def client(bus: Bus) -> SessionClient:
    return SessionClient(bus, Interface.API)


class InProcessWorker:
    def __init__(self, worker: Worker, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.worker, self.stop_event, self.task = worker, stop, task

    async def stop(self) -> None:
        self.stop_event.set()
        await self.task


@pytest.fixture
async def start_worker(
    settings: Settings,
) -> AsyncIterator[Callable[..., Awaitable[InProcessWorker]]]:
    """Start a worker in this process (``start(**settings)``: with some settings changed)."""
    started: list[tuple[InProcessWorker, Any]] = []

    async def start(**over: Any) -> InProcessWorker:
        assert settings.nats_url
        creds = credentials(settings.nats_url, Role.WORKER)
        mine = settings.model_copy(update=over) if over else settings
        cm = connect(mine, settings.nats_url, "test-worker", Role.WORKER, creds)
        bus = await cm.__aenter__()
        worker = Worker(bus, registry_for(settings))
        await worker.heartbeat()
        stop = asyncio.Event()
        handle = InProcessWorker(worker, stop, asyncio.create_task(worker.run(stop)))
        started.append((handle, cm))
        return handle

    yield start
    for handle, cm in reversed(started):
        if not handle.task.done():
            await handle.stop()
        await cm.__aexit__(None, None, None)


@pytest.fixture
async def worker(start_worker: Callable[[], Awaitable[InProcessWorker]]) -> InProcessWorker:
    return await start_worker()


def env_for(settings: Settings, role: Role | None = None, **extra: str) -> dict[str, str]:
    """The environment of a Praxis process on the test server, logged in as ``role``
    (``None``: without credentials, an admin)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
    seed = credentials(settings.nats_url, role).nkey_seed if role else None
    if seed is not None:
        env["PRAXIS_NATS_NKEY_SEED"] = str(seed)
    env.update(
        {
            "PRAXIS_NATS_URL": settings.nats_url or "",
            "PRAXIS_DATA_DIR": str(settings.data_dir),
            "PRAXIS_AGENTS": json.dumps(settings.agents),
            "PRAXIS_AGENTS_DIR": str(settings.agents_dir),
            "PRAXIS_LEASE_TTL": str(settings.lease_ttl),
            "PRAXIS_ACK_WAIT": str(settings.ack_wait),
            "PRAXIS_HEARTBEAT_INTERVAL": str(settings.heartbeat_interval),
            "PRAXIS_COMMAND_TIMEOUT": str(settings.command_timeout),
            "PRAXIS_DRAIN_GRACE": str(settings.drain_grace),
            "PRAXIS_LINGER": str(settings.linger),
            "PRAXIS_REPLICAS": str(settings.replicas),
            "PRAXIS_TURN_TIMEOUT": str(settings.turn_timeout),
            "PRAXIS_TURN_ATTEMPTS": str(settings.turn_attempts),
            "PRAXIS_COMMAND_ATTEMPTS": str(settings.command_attempts),
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    @property
    def pid(self) -> int:
        return self.proc.pid


@pytest.fixture
def worker_processes(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., list[WorkerProcess]]]:
    procs: list[WorkerProcess] = []

    def spawn(n: int, **env: str) -> list[WorkerProcess]:
        out = []
        for _ in range(n):
            log = tmp_path / f"worker-{len(procs)}.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "praxis.cli", "worker"],
                    env=env_for(settings, Role.WORKER, **env),
                    cwd=ROOT,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            procs.append(WorkerProcess(proc, log))
            out.append(procs[-1])
        return out

    yield spawn
    for p in procs:
        if p.proc.poll() is None:
            p.proc.terminate()
    for p in procs:
        try:
            p.proc.wait(15)
        except subprocess.TimeoutExpired:
            p.proc.kill()


async def live_workers(client: SessionClient, n: int) -> None:
    async def enough() -> bool:
        return len(await client.workers()) >= n

    await eventually(enough, 20, f"{n} live workers")


async def streaming(client: SessionClient, session_id: str, at_least: int = 1) -> bool:
    """True once the owner's snapshot of the turn in flight has ``at_least`` pieces."""
    try:
        resp = await client.bus.nc.request(subjects.snapshot(session_id), b"", timeout=1)
    except NoRespondersError:
        return False
    return bool(resp.data) and json.loads(resp.data)["index"] >= at_least


async def slow_turn_streaming(
    client: SessionClient, *, pieces: int, delay: float, at_least: int = 1
) -> tuple[SessionRecord, Receipt]:
    """A session of the slow agent whose first turn has streamed ``at_least`` pieces."""
    record, receipt = await client.create("slow", metadata={"pieces": pieces, "delay": delay})
    await client.wait(receipt)
    sent = await client.send(record.session_id, "go")
    await eventually(
        lambda: streaming(client, record.session_id, at_least), what="the turn to stream"
    )
    return record, sent


class EdgeProcess:
    """``praxis edge --port 0`` as a process; ``url`` once it listens."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> EdgeProcess:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "praxis.cli", "edge", "--port", "0"],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for raw in self.proc.stdout:  # it prints one line once it listens
            line = raw.decode().strip()
            if line.startswith("Praxis edge on "):
                self.url = line.removeprefix("Praxis edge on ")
                return self
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"the edge did not start: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> EdgeProcess:
        self.stop()
        return self.start()


def edge_env(settings: Settings, **extra: str) -> dict[str, str]:
    defaults = {"PRAXIS_INPROCESS_WORKER": "never", "PRAXIS_SSE_KEEPALIVE": "0.5"}
    return env_for(settings, Role.EDGE, **{**defaults, **extra})


@pytest.fixture(scope="module")
def edge(nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    """One edge process for a test module (it keeps no state: tests share it)."""
    home = tmp_path_factory.mktemp("edge")
    proc = EdgeProcess(edge_env(make_settings(nats.url, home)), home / "edge.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def start_edge(settings: Settings, tmp_path: Path) -> Iterator[Callable[[], EdgeProcess]]:
    """Edge processes of one test's own (to restart or kill)."""
    started: list[EdgeProcess] = []

    def start() -> EdgeProcess:
        started.append(EdgeProcess(edge_env(settings), tmp_path / f"edge-{len(started)}.log"))
        return started[-1].start()

    yield start
    for e in started:
        e.stop()


@pytest.fixture
def secured_edge(settings: Settings, tmp_path: Path) -> Iterator[EdgeProcess]:
    """An edge process of the test's own with authentication on (PRAXIS_AUTH=on)."""
    proc = EdgeProcess(edge_env(settings, PRAXIS_AUTH="on"), tmp_path / "edge.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def models() -> Iterator[FakeModelServer]:
    """Fake OpenAI and Anthropic servers on loopback ports, one per test module."""
    server = FakeModelServer().start()
    yield server
    server.stop()


def praxis(
    env: dict[str, str], *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "praxis.cli", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_praxis(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """Start a long-running CLI command (edge, up) with its output piped, and SIGINT at its
    default as a shell starts a command (a child inherits an ignored SIGINT, and some
    library in a long test run leaves this process ignoring it: Ctrl-C would do nothing)."""
    return subprocess.Popen(
        [sys.executable, "-m", "praxis.cli", *args],
        env=env | {"PYTHONFAULTHANDLER": "1"},  # SIGABRT prints its threads' stacks
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_a_shell_starts_it,
    )


def ended(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout=...)`` of a process :func:`spawn_praxis` started; one that
    has not ended by then is aborted, and the failure shows where its threads were."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"not ended within {timeout} s:\n{out}\n{err}") from None


def fresh_env(tmp_path: Path) -> dict[str, str]:
    """A machine with no Praxis settings: no NATS URL, its own data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
    env.update({"PRAXIS_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)})
    return env


async def live_subscribers(nats: NatsServer, session_id: str) -> int:
    """How many subscriptions on the server listen to the session's live subject."""
    url = f"http://127.0.0.1:{nats.monitor_port}/connz?subs=1&limit=1024"
    async with httpx.AsyncClient(timeout=5) as http:
        conns = (await http.get(url)).json().get("connections") or []
    return sum(c.get("subscriptions_list", []).count(f"live.{session_id}") for c in conns)


async def settled_session(client: SessionClient, agent: str = "echo", **kw: Any) -> str:
    """A new session that a worker has finished starting: nothing more comes on its own."""
    record, receipt = await client.create(agent, **kw)
    await client.wait(receipt)
    return record.session_id


def live_count_is(
    nats: NatsServer, session_id: str, expected: int
) -> Callable[[], Awaitable[bool]]:
    """For eventually(): True once ``expected`` subscriptions listen to the session live."""

    async def check() -> bool:
        return await live_subscribers(nats, session_id) == expected

    return check


async def remnants(client: SessionClient, session_id: str) -> dict[str, list[str]]:
    """Every subject in every stream on the server (the KV buckets' included) that names
    the session, purge markers too: what a purge must leave empty."""
    js, found = client.bus.js, {}
    for stream in await js.streams_info():
        name = stream.config.name or ""
        info = await js.stream_info(name, subjects_filter=">")
        named = [s for s in (info.state.subjects or {}) if session_id in s.split(".")]
        if named:
            found[name] = sorted(named)
    return found


async def stored_events(client: SessionClient, session_id: str) -> list[Event]:
    """Every stored event of the session, in order (read from the stream)."""
    return [e for _, e in await read_events(client.bus, session_id, after=0)]
