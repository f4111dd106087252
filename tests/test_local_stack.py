"""Issue 33: ``praxis up`` in real use. One stack per data directory; its nats-server
started again when it dies; a stop that is quiet and complete however many times Ctrl-C is
pressed (streams told where to continue, the turn finished, no process left); the edge's
503 while the bus is unreachable; a stable port and ``praxis env`` across restarts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from praxis.bus.embedded import NatsServer, ensure_server
from tests.conftest import (
    ROOT,
    EdgeProcess,
    edge_env,
    eventually,
    fresh_env,
    make_settings,
    praxis,
    spawn_praxis,
    start_nats,
)

DRAWL = '["tests.agents_for_tests:Drawl"]'


@dataclass
class Up:
    proc: subprocess.Popen[str]
    banner: str
    nats_url: str
    edge_url: str

    def interrupt(self, times: int = 1) -> tuple[str, str]:
        """Ctrl-C at its terminal (to its process group), ``times`` times; its output."""
        for i in range(times):
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGINT)
            if i + 1 < times:
                time.sleep(0.2)  # presses of a key, not one signal
        out, err = self.proc.communicate(timeout=60)
        return self.banner + out, err


def start_up(env: dict[str, str], *args: str) -> Up:
    """``praxis up`` as from a terminal: in a process group of its own (Ctrl-C reaches the
    group); returned once its banner says it is up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "praxis.cli", "up", "--port", "0", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    banner = proc.stdout.readline()
    nats = re.search(r"(nats://127\.0\.0\.1:\d+)", banner)
    edge = re.search(r"HTTP API at (http://127\.0\.0\.1:\d+)", banner)
    if nats is None or edge is None:
        proc.kill()
        raise AssertionError(f"up did not start: {banner} {proc.communicate()}")
    return Up(proc, banner, nats[1], edge[1])


@pytest.fixture
def up_env(tmp_path: Path) -> dict[str, str]:
    return fresh_env(tmp_path) | {"PRAXIS_AGENTS": DRAWL}


@pytest.fixture
def up(up_env: dict[str, str]) -> Iterator[Up]:
    stack = start_up(up_env)
    yield stack
    if stack.proc.poll() is None:
        stack.interrupt()


def server_state(data: Path) -> dict[str, object]:
    return dict(json.loads((data / "nats" / "server.json").read_text()))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def in_shell(up_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A praxis command in another shell, after ``eval "$(praxis env)"``."""
    exports = praxis(up_env, "env")
    assert exports.returncode == 0, exports.stderr
    shell = dict(up_env)
    for line in exports.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        shell[name] = value.strip("'")
    return praxis(shell, *args)


def test_a_second_up_on_the_same_data_directory_refuses_and_leaves_the_first_running(
    up: Up, up_env: dict[str, str]
) -> None:
    second = praxis(up_env, "up", "--port", "0", timeout=60)
    assert second.returncode == 1, second
    line = second.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"PID {up.proc.pid}" in line and up.nats_url in line and up.edge_url in line, line
    assert "Traceback" not in line

    ran = in_shell(up_env, "agent", "run", "echo", "--message", "still up")
    assert ran.returncode == 0 and ran.stdout.strip() == "still up", ran
    assert httpx.get(f"{up.edge_url}/readyz", timeout=5).status_code == 200


def test_up_starts_its_nats_server_again_when_it_dies(up: Up, up_env: dict[str, str]) -> None:
    data = Path(up_env["PRAXIS_DATA_DIR"])
    ran = in_shell(up_env, "agent", "run", "echo", "--message", "before")
    assert ran.returncode == 0, ran
    sid = ran.stderr.split("Session created: ")[1].split()[0]
    first = server_state(data)
    os.kill(int(str(first["pid"])), signal.SIGKILL)

    def restarted() -> bool:
        try:
            now = server_state(data)
        except OSError:
            return False
        return now["pid"] != first["pid"] and alive(int(str(now["pid"])))

    async def answered() -> bool:
        return (
            await asyncio.to_thread(restarted)
            and (await asyncio.to_thread(httpx.get, f"{up.edge_url}/readyz", timeout=5)).status_code
            == 200
        )

    asyncio.run(eventually(answered, 30, "the nats-server started again"))
    assert server_state(data)["url"] == first["url"] == up.nats_url  # the same address
    again = in_shell(up_env, "agent", "resume", sid, "--message", "after")
    assert again.returncode == 0 and again.stdout.strip() == "after", again
    _, err = up.interrupt()
    assert "started it again at " + up.nats_url in err, err
    assert "Traceback" not in err


def test_ctrl_c_on_up_while_a_reply_streams_is_quiet_and_complete(
    up: Up, up_env: dict[str, str]
) -> None:
    """Ctrl-C pressed three times while a reply streams through the edge: the CLI
    following it is told it ended and how to continue; the worker finishes the turn; up
    stops quietly; nothing is left running."""
    data = Path(up_env["PRAXIS_DATA_DIR"])
    nats_pid = int(str(server_state(data)["pid"]))
    children = [p for p in children_of(up.proc.pid) if p != nats_pid]
    assert len(children) == 2, children  # a worker and the edge
    shell = up_env | {"PRAXIS_EDGE_URL": up.edge_url, "PRAXIS_NATS_URL": "nats://127.0.0.1:1"}
    chat = spawn_praxis(shell, "agent", "run", "drawl", "--message", "go")
    assert chat.stdout is not None
    assert chat.stdout.read(3) == "w0 "  # the reply streams
    out, err = up.interrupt(times=3)
    _, told = chat.communicate(timeout=30)

    assert up.proc.returncode == 0, err
    assert "Traceback" not in err + out and "CancelledError" not in err, err
    # up took the Ctrl-C alone (once) and stopped its worker once (the edge logs warnings).
    assert err.count("received SIGINT") == 1 and err.count("received SIGTERM") == 1, err
    assert out.count("Still stopping") == 1, out
    assert out.rstrip().endswith("Praxis stopped."), out
    assert not [p for p in [nats_pid, *children] if alive(p)], "a process was left running"
    assert not (data / "nats" / "server.json").exists()

    assert chat.returncode == 1, told
    sid = told.split("Session created: ")[1].split()[0]
    assert "the edge is stopping" in told, told
    assert told.rstrip().splitlines()[-1].endswith(f"praxis agent resume {sid}"), told
    shown = praxis(up_env, "agent", "show-session", sid, "--json")
    history = json.loads(shown.stdout)["history"]
    assert history[-1]["content"].split() == [f"w{i}" for i in range(40)], history  # finished


def test_up_stops_its_children_when_it_is_killed(up: Up, up_env: dict[str, str]) -> None:
    nats_pid = int(str(server_state(Path(up_env["PRAXIS_DATA_DIR"]))["pid"]))
    children = [p for p in children_of(up.proc.pid) if p != nats_pid]
    assert len(children) == 2, children
    up.proc.kill()
    up.proc.wait()

    async def gone() -> bool:
        return not [p for p in children if alive(p)]

    asyncio.run(eventually(gone, 30, "the children of a killed 'up' to stop"))
    again = start_up(up_env)  # the data directory is free again, its server adopted
    try:
        assert again.nats_url == up.nats_url
    finally:
        again.interrupt()


def test_the_embedded_server_keeps_its_port_across_restarts(tmp_path: Path) -> None:
    settings = make_settings("", tmp_path)
    first = ensure_server(settings)
    first.release(force=True)
    again = ensure_server(settings)
    try:
        assert again.url == first.url and again.pid != first.pid
    finally:
        again.release(force=True)
    taken = NatsServer(tmp_path / "squatter", port=int(first.url.rsplit(":", 1)[1])).start()
    try:
        other = ensure_server(settings)  # its port is taken now: another one
        other.release(force=True)
        assert other.url != first.url
    finally:
        taken.stop()


def test_praxis_env_replaces_what_it_set_itself(up: Up, up_env: dict[str, str]) -> None:
    first = praxis(up_env, "env")
    assert first.returncode == 0, first.stderr
    shell = dict(up_env)
    for line in first.stdout.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            shell[name] = value.strip("'")
    again = praxis(shell, "env", "--role", "service")
    assert again.returncode == 0, again.stderr
    assert f"export PRAXIS_NATS_URL={up.nats_url}" in again.stdout
    assert "service.nk" in again.stdout
    theirs = praxis(up_env | {"PRAXIS_NATS_URL": "nats://elsewhere:4222"}, "env")
    assert theirs.returncode == 1
    assert "unset PRAXIS_NATS_URL" in theirs.stderr, theirs.stderr


async def test_the_edge_answers_503_at_once_while_the_bus_is_unreachable(
    tmp_path: Path,
) -> None:
    server = await asyncio.to_thread(start_nats, tmp_path / "nats")
    settings = make_settings(server.url, tmp_path)
    edge = await asyncio.to_thread(EdgeProcess(edge_env(settings), tmp_path / "edge.log").start)
    try:
        async with httpx.AsyncClient(base_url=edge.url, timeout=3) as http:
            assert (await http.get("/agent-sessions/nobody")).status_code == 404
            await asyncio.to_thread(server.stop)

            async def unavailable() -> bool:
                return (await http.get("/agent-sessions/nobody")).status_code == 503

            await eventually(unavailable, 10, "503 from the edge")
            # "At once": well within the bus's request timeout (5 s), and each in its shape.
            rest = await http.post("/agent-sessions/create", json={"agent_name": "echo"})
            assert rest.status_code == 503, rest.text
            assert rest.json()["code"] == "UNAVAILABLE" and "unreachable" in rest.json()["detail"]
            openai = await http.get("/v1/models")
            assert openai.status_code == 503 and openai.json()["error"]["type"] == "server_error"
            graphql = await http.post("/graphql", json={"query": "{ agents { name } }"})
            assert graphql.status_code == 503
            assert graphql.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
            assert (await http.get("/healthz")).status_code == 200  # the process is up
            assert (await http.get("/readyz")).status_code == 503

            await asyncio.to_thread(server.start)

            async def back() -> bool:
                return (await http.get("/agent-sessions/nobody")).status_code == 404

            await eventually(back, 20, "the edge to answer again")
        assert "Traceback" not in edge.log.read_text()
    finally:
        edge.stop()
        server.stop()
