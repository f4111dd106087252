"""compose.yaml, run: every service's command as a local process against a loopback 3-node
NATS cluster built from the file's own settings (no container engine on our machines; see
tests/compose_local.py for what is translated and how). Then a session through the edge, the
CLI service reading it back, and a turn after losing a NATS node."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.compose_local import ROOT, LocalCompose, dockerfile_entrypoint, load

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    local = LocalCompose(tmp_path_factory.mktemp("compose"))
    try:
        local.up(timeout=120)
        local.healthy("worker")
        local.healthy("edge")
        yield local
    finally:
        local.down()


def cli(stack: LocalCompose, *args: str) -> Any:
    """``docker compose run --rm cli ARGS... --json``, parsed."""
    done = stack.run("cli", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def turn(http: httpx.AsyncClient, url: str, message: str) -> list[str]:
    """Send a message with its stream; return the kinds of events, checking the reply."""
    kinds: list[str] = []
    body = {"message": message, "stream": True}
    async with aconnect_sse(http, "POST", url, json=body) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            raise AssertionError(f"{source.response.status_code}: {source.response.text}")
        async for sse in source.aiter_sse():
            kinds.append(sse.event)
            if sse.event == "agent.message":
                assert json.loads(sse.data)["data"]["content"] == message
            if sse.event == "turn.completed":
                break
    return kinds


def test_the_file_is_what_the_readme_promises() -> None:
    compose = load()
    services = compose["services"]
    nats = [s for s in services.values() if str(s.get("image", "")).startswith("nats:")]
    assert len(nats) == 3, "a 3-node NATS cluster"
    for node in nats:
        assert "--cluster" in node["command"] and "--routes" in node["command"]
        assert node["healthcheck"]["test"] and any(":/data" in v for v in node["volumes"])
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["edge"]["environment"]["PRAXIS_AUTH"] == "on"
    for name in ("worker", "edge", "provision"):
        assert services[name]["environment"]["PRAXIS_REPLICAS"] == "3"
    assert {"worker", "edge"} <= {n for n, s in services.items() if "healthcheck" in s}
    assert dockerfile_entrypoint() == ["praxis"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


async def test_a_session_through_the_compose_stack(stack: LocalCompose) -> None:
    status = cli(stack, "status")
    assert status["stream"]["replicas"] == 3
    assert sorted(status["stream"]["replicas_current"] + [status["stream"]["leader"]]) == [
        "nats1",
        "nats2",
        "nats3",
    ]
    assert len(status["workers"]) == 3
    partitions = status["partitions"]  # one led by each node
    assert sorted(p["leader"] for p in partitions) == ["nats1", "nats2", "nats3"], partitions
    assert status["leaders"]["to_move"] == 0

    key = cli(stack, "keys", "create", "--principal", "compose", "--admin")["key"]
    edge = stack.url("edge", 8000)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=edge, headers=headers, timeout=60) as http:
        anonymous = await http.post("/agent-sessions/list", json={}, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        r = await http.post(
            "/agent-sessions/create", json={"agent_name": "echo", "task_id": "compose-task"}
        )
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        kinds = await turn(http, f"/agent-sessions/{sid}/messages", "hello, cluster")
        assert kinds[:2] == ["command.accepted", "user.message"], kinds
        assert kinds[-1] == "turn.completed", kinds

        shown = cli(stack, "agent", "show-session", sid)
        assert shown["task_id"] == "compose-task", shown
        assert [h["content"] for h in shown["history"]] == ["hello, cluster"] * 2

        # The leader of the session's partition lost (its process killed, as a container
        # would be): its stream and buckets are replicated, so the next turn still works,
        # once the other two have elected a leader (4-9 s; the edge keeps trying meanwhile).
        partition = int(sid.rpartition("-p")[2])  # an id Praxis made names its partition
        leader = cli(stack, "status")["partitions"][partition]["leader"]
        node = stack.replicas[leader][0].process
        assert node is not None
        node.send_signal(signal.SIGKILL)
        node.wait()
        kinds = await turn(http, f"/agent-sessions/{sid}/messages", "still here?")
        assert kinds[-1] == "turn.completed", kinds
        history = (await http.get(f"/agent-sessions/{sid}/history")).json()["items"]
        assert [i["content"] for i in history] == ["hello, cluster"] * 2 + ["still here?"] * 2


def test_volumes_hold_the_credentials_and_each_node_its_data(stack: LocalCompose) -> None:
    volumes = Path(stack.home) / "volumes"
    assert (volumes / "credentials" / "auth.conf").is_file()
    for role in ("admin", "worker", "edge", "service"):
        assert (volumes / "credentials" / f"{role}.nk").is_file()
    for i in (1, 2, 3):
        assert (volumes / f"nats{i}-data" / "jetstream").is_dir()


def test_the_image_build_context_installs_everything(tmp_path: Path) -> None:
    """What the Dockerfile copies is enough to install Praxis with its chat page: the COPY
    lines are followed into a folder, and a wheel is built from it as ``pip install .``
    would."""
    context = tmp_path / "src"
    context.mkdir()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, dest = line.split()[1:]
            for source in sources:
                target = context / (source if dest.endswith("/") else dest)
                if (ROOT / source).is_dir():
                    shutil.copytree(  # links stay links, as Docker copies them
                        ROOT / source,
                        target,
                        symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"),
                    )
                else:
                    shutil.copy(ROOT / source, target)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("praxis_sessions-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "praxis = praxis.cli.app:main" in z.read(entry_points).decode()
    for name in ("index.html", "chat.js", "chat.css", "favicon.svg"):
        assert f"praxis/edge/static/{name}" in names
    for package in ("schemas", "bus", "workers", "edge", "cli"):
        assert f"praxis/{package}/__init__.py" in names
    # One import name in site-packages: praxis (and its .dist-info), nothing generic.
    assert {n.split("/")[0] for n in names} == {"praxis", "praxis_sessions-0.1.0.dist-info"}
    # Installed from the wheel (its dependencies from this environment), outside the
    # checkout: the parts import as praxis.<part>, the bare names do not.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-t", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    probe = (
        "import importlib.util as u, praxis.cli.app, praxis.edge.app, praxis.workers.worker;"
        "print(praxis.cli.app.__file__);"
        "print([n for n in ('schemas','bus','workers','edge','cli') if u.find_spec(n)])"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    where, bare = ran.stdout.splitlines()
    assert where.startswith(str(site / "praxis" / "cli")) and bare == "[]"
