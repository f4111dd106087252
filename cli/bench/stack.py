"""What a benchmark runs against: a deployment given by URL, or one it starts itself (its
own nats-server on a free loopback port, worker processes, an edge process), and the raw
JetStream responder that measures the floor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nats.js.api import StorageType, StreamConfig

from praxis.bus import Bus, SessionClient, Settings, connect
from praxis.bus.credentials import Credentials
from praxis.bus.embedded import NatsServer, free_port
from praxis.bus.errors import BusError
from praxis.cli.bench import server as bench_server
from praxis.schemas import WorkerInfo

RAW_STREAM = "PRAXIS_BENCH_RAW"
RAW_IN, RAW_OUT = "praxis_bench_raw.in", "praxis_bench_raw.out"

# The floor: a JetStream publish consumed by one durable consumer in another process, which
# publishes the reply to JetStream and acks; no Praxis code. Started as its own process.
# The best such loop: nats-py runs a subscription's callbacks one at a time, so each
# message is handed to a task (the reply published, its PubAck awaited, then the ack) and
# the next delivery is not held up; a responder that awaited in its callback would handle
# one message at a time and understate JetStream about 3x under load.
RESPONDER = f"""
import asyncio, json, os, sys, nats, uvloop
from nats.js.api import ConsumerConfig
async def main(url, options):
    nc = await nats.connect(url, **json.loads(options))
    js = nc.jetstream()
    tasks = set()
    async def handle(msg):
        await js.publish("{RAW_OUT}." + msg.subject.split(".")[-1], msg.data)
        await msg.ack()
    async def on(msg):
        task = asyncio.create_task(handle(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await js.subscribe(
        "{RAW_IN}.*", durable="raw", manual_ack=True, cb=on, stream="{RAW_STREAM}",
        config=ConsumerConfig(max_ack_pending=100_000), pending_msgs_limit=1_000_000,
    )
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main(sys.argv[1], sys.argv[2]))
"""


TUNING = frozenset(
    f"PRAXIS_{name}"
    for name in (
        "WORKER_CONCURRENCY", "GROUP_COMMIT", "NATS_SYNC", "CHECKPOINT_EVERY", "LINGER",
        "STATE_CACHE",
    )
)  # fmt: skip
"""Settings a benchmark of its own deployment passes on to the processes it starts."""


class BenchError(BusError):
    """A benchmark that cannot run as asked."""


@dataclass
class Stack:
    """A running deployment and handles on it."""

    url: str
    settings: Settings
    bus: Bus
    client: SessionClient
    env: dict[str, str]
    own: bool
    """Started by the benchmark (so it may start and stop workers)."""
    edge_url: str | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[int] = field(default_factory=list)

    async def set_workers(self, n: int) -> None:
        """Run exactly ``n`` worker processes of our own, all live before this returns."""
        if not self.own:
            raise BenchError("only a deployment the benchmark starts can change its workers")
        while len(self.workers) > n:
            proc = self.workers.pop()
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
        while len(self.workers) < n:
            self.workers.append(
                subprocess.Popen(  # noqa: ASYNC220 - started between measurements
                    [sys.executable, "-m", "praxis.cli", "worker"],
                    env=self.env,
                    stderr=self.log(f"worker-{len(self.workers) + 1}"),
                )
            )
        await self.wait_workers(n)

    async def concurrency_at_least(self, n: int) -> bool:
        """Our workers run ``n`` sessions at once (started again with
        ``PRAXIS_WORKER_CONCURRENCY`` = ``n`` if their setting is lower, unless the caller
        chose it): a scenario of ``n`` concurrent turns measures them, not a queue in front
        of them. Whether they were started again."""
        key = "PRAXIS_WORKER_CONCURRENCY"
        if key in self.env or n <= Settings.model_fields["worker_concurrency"].default:
            return False
        self.env[key] = str(n)
        count = len(self.workers)
        await self.set_workers(0)
        await self.set_workers(count)
        return True

    server_pid: int | None = None
    """Our own nats-server's process (``None``: a deployment given by URL)."""
    nodes: dict[str, int] = field(default_factory=dict)
    """Our own cluster's nodes by name, and their processes (more than one: a cluster)."""
    monitor_port: int | None = None
    """Our own nats-server's monitoring port (``None``: a deployment given by URL)."""
    monitor_ports: list[int] = field(default_factory=list)
    """Every node's (a cluster's: the server's figures are their sums)."""
    edge_pid: int | None = None
    """Our own edge's process (``None``: none started, or a deployment's own)."""
    responder_pid: int | None = None

    def cpu_seconds(self) -> CpuSeconds | None:
        """CPU time used so far by our workers, our nats-server and this process (``None``:
        not ours, or not readable on this system): where a load's work goes."""
        if not self.own:
            return None
        try:
            nodes = self.node_cpu()
            return {
                "workers": sum(_cpu_of(p.pid) for p in self.workers),
                "server": sum(nodes.values()) if nodes else _cpu_of(self.server_pid or 0),
                "responder": _cpu_of(self.responder_pid) if self.responder_pid else 0.0,
                "client": _cpu_of(os.getpid()),
            }
        except OSError:
            return None

    def node_cpu(self) -> CpuSeconds:
        """CPU seconds so far of each of our nats-servers, by node name."""
        return {name: _cpu_of(pid) for name, pid in self.nodes.items()}

    async def server_counts(self, work: bool = True) -> bench_server.Counts | None:
        """The server's totals so far (:mod:`.server`); ``work``: with the deliveries of
        the work queue's consumer."""
        consumer = self.settings.consumer if work else ""
        parts = self.bus.partitions
        streams = [parts.stream(k) for k in parts.all()]
        found = await bench_server.counts(self.monitor_port, self.bus.js, streams, consumer)
        for port in self.monitor_ports[1:]:  # a cluster: what every node did
            other = await bench_server.counts(port)
            if found is not None and other is not None:
                found = {k: v + other.get(k, 0) for k, v in found.items()}
        return found

    def log(self, name: str) -> int:
        """A log file for one of our processes (kept with the run's data if it logs errors)."""
        folder = Path(self.env["PRAXIS_DATA_DIR"]) / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._logs.append(fd)
        return fd

    def worker_rss(self) -> int | None:
        """The resident memory of our worker processes in bytes (``None``: not ours, or
        not readable on this system)."""
        total = 0
        for proc in self.workers:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return None
            kb = next(
                (ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")), None
            )
            if kb is None:
                return None
            total += int(kb) * 1024
        return total if self.workers else None

    async def wait_workers(self, n: int, timeout: float = 60) -> None:
        pids = {p.pid for p in self.workers}
        async with asyncio.timeout(timeout):
            while True:
                live = await self.client.workers()
                started = len(live) >= n and (not pids or pids <= {w.pid for w in live})
                if started and _shared(live, self.bus.partitions.count):
                    return
                await asyncio.sleep(0.05)

    async def start_edge(self) -> str:
        if self.edge_url is None:
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [sys.executable, "-m", "praxis.cli", "edge", "--port", "0"],
                env={**self.env, "PRAXIS_INPROCESS_WORKER": "never"},
                stdout=subprocess.PIPE,
                stderr=self.log("edge"),
            )
            self.others.append(proc)
            self.edge_pid = proc.pid
            assert proc.stdout is not None
            line = (await asyncio.to_thread(proc.stdout.readline)).decode().strip()
            if not line.startswith("Praxis edge on "):
                raise BenchError(f"the edge did not start: {line!r}")
            self.edge_url = line.removeprefix("Praxis edge on ")
        return self.edge_url

    async def start_responder(self) -> None:
        """The raw loop's other side (and its stream, made anew)."""
        with contextlib.suppress(Exception):
            await self.bus.js.delete_stream(RAW_STREAM)
        await self.bus.js.add_stream(
            StreamConfig(
                name=RAW_STREAM, subjects=[f"{RAW_IN}.*", f"{RAW_OUT}.*"], storage=StorageType.FILE
            )
        )
        options = json.dumps(Credentials.from_settings(self.settings).options())
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-c", RESPONDER, self.url, options],
            stdout=subprocess.PIPE,
            env=self.env,
        )
        self.others.append(proc)
        self.responder_pid = proc.pid
        assert proc.stdout is not None
        await asyncio.to_thread(proc.stdout.readline)

    async def close(self) -> None:
        for proc in [*self.others, *self.workers]:
            proc.terminate()
        for proc in [*self.others, *self.workers]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 30)
        for fd in self._logs:
            os.close(fd)
        if not self.own:
            with contextlib.suppress(Exception):
                await self.bus.js.delete_stream(RAW_STREAM)


CpuSeconds = dict[str, float]


def _shared(live: list[WorkerInfo], partitions: int) -> bool:
    """Whether the workers that share the partitions out have each taken their own (with
    one partition, or one worker, there is nothing to share): a load measured before would
    measure the change of hands."""
    sharing = [w.partitions for w in live if w.sharing and w.dedicated]
    if partitions < 2 or len(sharing) < 2:
        return True
    taken = sorted(k for mine in sharing for k in mine)
    return taken == list(range(partitions)) or len(sharing) > partitions


def cpu_ms_per_turn(
    before: CpuSeconds | None, after: CpuSeconds | None, turns: int
) -> dict[str, dict[str, float]]:
    """``{"cpu_ms_per_turn": {group: ms}}``: what a turn cost where, between two readings
    of :meth:`Stack.cpu_seconds` (nothing if either is missing or there were no turns)."""
    if not before or not after or not turns:
        return {}
    return {"cpu_ms_per_turn": {k: (after[k] - before[k]) * 1000 / turns for k in after}}


def _cpu_of(pid: int) -> float:
    """User and system CPU seconds of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def deployment(
    settings: Settings,
    nats_url: str | None,
    edge_url: str | None,
    *,
    nodes: int = 1,
    partitions: int | None = None,
) -> AsyncIterator[Stack]:
    """The deployment at ``nats_url`` (and ``edge_url``), or one of our own: ``nodes``
    nats-servers (a loopback cluster, R3, if more than one) and a bus of ``partitions``."""
    servers: dict[str, NatsServer] = {}
    clean = False
    home = Path(tempfile.mkdtemp(prefix="praxis-bench-"))
    env = dict(os.environ)
    if nats_url is None:
        config = None
        if settings.nats_sync == "always":  # every write on disk before it is acknowledged
            config = home / "sync.conf"
            config.write_text('{"jetstream": {"sync_interval": "always"}}\n')
        servers = await asyncio.to_thread(_servers, home, nodes, config)
        nats_url = ",".join(server.url for server in servers.values())
        # Its own deployment: none of the caller's bus settings, only the tuning ones.
        env = {k: v for k, v in env.items() if not k.startswith("PRAXIS_") or k in TUNING}
        replicas = min(3, nodes)
        settings = Settings(
            nats_url=nats_url, data_dir=home, replicas=replicas, partitions=partitions
        )
        env["PRAXIS_REPLICAS"] = str(replicas)
    server = next(iter(servers.values()), None)
    env |= {"PRAXIS_NATS_URL": nats_url, "PRAXIS_DATA_DIR": str(home)}
    print(f"  data and logs of this run: {home} (removed after a clean run)", file=sys.stderr)
    try:
        async with connect(settings, nats_url, "praxis-bench") as bus:
            stack = Stack(
                nats_url, settings, bus, SessionClient(bus), env, server is not None, edge_url
            )
            if server is not None and server.process is not None:
                stack.server_pid = server.process.pid
                stack.monitor_port = server.monitor_port
                stack.monitor_ports = [s.monitor_port for s in servers.values()]
                stack.nodes = {n: s.process.pid for n, s in servers.items() if s.process}
            try:
                yield stack
            finally:
                await stack.close()
    except BaseException:
        print(f"  the run's data and logs are kept in {home}", file=sys.stderr, flush=True)
        raise
    else:
        clean = True
    finally:
        for each in servers.values():
            await asyncio.to_thread(each.stop)
    if clean:
        await asyncio.to_thread(_clean_up, home)


def _servers(home: Path, n: int, config: Path | None) -> dict[str, NatsServer]:
    """``n`` nats-servers on loopback, routed to each other if more than one, by name."""
    if n == 1:
        return {"n0": NatsServer(home / "js", log_file=home / "nats.log", config=config).start()}
    routes = [free_port() for _ in range(n)]
    found: dict[str, NatsServer] = {}
    for i, port in enumerate(routes):
        others = ",".join(f"nats://127.0.0.1:{p}" for p in routes if p != port)
        args = (
            *("--server_name", f"n{i}", "--cluster_name", "praxis-bench"),
            *("--cluster", f"nats://127.0.0.1:{port}", "--routes", others),
        )
        node = NatsServer(
            home / "js" / f"n{i}", log_file=home / f"nats-n{i}.log", config=config, extra_args=args
        )
        node.port, node.monitor_port = free_port(), free_port()
        found[f"n{i}"] = node
    with ThreadPoolExecutor(n) as pool:  # all at once: none is ready before a quorum is up
        list(pool.map(lambda node: node.start(30), found.values()))
    deadline = time.monotonic() + 30
    while not all(_meta_leader(node) for node in found.values()):  # JetStream is clustered
        if time.monotonic() > deadline:
            raise BenchError("the benchmark's cluster elected no JetStream meta leader")
        time.sleep(0.1)
    return found


def _meta_leader(node: NatsServer) -> str | None:
    try:
        jsz = bench_server.monitor(node.monitor_port, "/jsz")
    except (OSError, ValueError):
        return None
    leader = jsz.get("meta_cluster", {}).get("leader")
    return str(leader) if leader else None


_ERRORS = re.compile(r" (ERROR|CRITICAL) |^Traceback", re.M)


def _clean_up(home: Path) -> None:
    """After a good run: nothing left, unless its processes logged errors: then their
    logs are kept, and said where."""
    logs = [p for p in (home / "logs").glob("*.log") if p.is_file()]
    if not any(_ERRORS.search(p.read_text(errors="replace")) for p in logs):
        shutil.rmtree(home, ignore_errors=True)
        return
    shutil.rmtree(home / "js", ignore_errors=True)  # the stream of a large run takes room
    print(f"  its processes logged errors: see {home / 'logs'}", file=sys.stderr, flush=True)
