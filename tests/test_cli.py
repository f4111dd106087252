"""The praxis CLI as a subprocess: against a test server, and on its own (embedded NATS)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from praxis.bus import SessionClient, Settings
from praxis.bus.embedded import connections
from tests.conftest import (
    ROOT,
    InProcessWorker,
    WorkerProcess,
    env_for,
    fresh_env,
    live_workers,
    praxis,
    spawn_praxis,
)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    # With a URL the CLI only runs a worker of its own when told to.
    return env_for(settings, PRAXIS_INPROCESS_WORKER="always")


def session_of(stderr: str) -> str:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("Session created: "))
    return line.split(": ", 1)[1].strip()


def test_run_resume_list_show(env: dict[str, str]) -> None:
    run = praxis(
        env, "agent", "run", "hello-world", "--task-id", "task-cli", "--message", "Hi, I am Ada"
    )
    assert run.returncode == 0, run.stderr
    sid = session_of(run.stderr)
    assert (
        run.stdout.strip()
        == 'You said: "Hi, I am Ada". That is your first message in this session.'
    )

    again = praxis(env, "agent", "resume", sid, "--message", "What did I say?")
    assert again.returncode == 0, again.stderr
    assert "2nd message" in again.stdout and '"Hi, I am Ada"' in again.stdout
    assert "You: Hi, I am Ada" in again.stderr  # the last messages, first

    told = praxis(env, "agent", "run", "recall", "--message", "hi", "--instructions", "be brief")
    assert told.returncode == 0, told.stderr
    assert json.loads(told.stdout)["instructions"] == "be brief"
    alone = praxis(env, "agent", "resume", sid, "--instructions", "be brief")
    assert alone.returncode != 0 and "--instructions goes with --message" in alone.stderr

    listed = praxis(env, "agent", "list-sessions", "--task-id", "task-cli", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["session_id"], r["state"], r["agent"]) for r in rows] == [
        (sid, "ACTIVE", "hello-world")
    ]

    shown = praxis(env, "agent", "show-session", sid, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["session_id"], data["task_id"], data["agent"], data["state"]) == (
        sid,
        "task-cli",
        "hello-world",
        "ACTIVE",
    )
    assert [(h["role"], h["content"][:12]) for h in data["history"]] == [
        ("user", "Hi, I am Ada"),  # sent with the create: its first turn (no greeting)
        ("agent", 'You said: "H'),
        ("user", "What did I s"),
        ("agent", 'You said: "W'),
    ]

    quiet = praxis(env, "agent", "resume", sid, "--last", "0", "--message", "Hello again")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == f"Resuming session {sid} (hello-world)"  # no messages
    negative = praxis(env, "agent", "resume", sid, "--last", "-1")
    assert negative.returncode == 1 and "--last takes 0 or more" in negative.stderr


def test_interactive_chat_then_suspend_and_resume(env: dict[str, str]) -> None:
    chat = praxis(env, "agent", "run", "echo", stdin="hello there\nsecond line\n")
    assert chat.returncode == 0, chat.stderr
    sid = session_of(chat.stderr)
    assert "Agent: hello there" in chat.stdout and "Agent: second line" in chat.stdout
    assert f"praxis agent resume {sid}" in chat.stderr

    suspended = praxis(env, "agent", "suspend", sid)
    assert suspended.returncode == 0, suspended.stderr
    assert "SUSPENDED" in suspended.stdout
    twice = praxis(env, "agent", "suspend", sid)
    assert twice.returncode == 1
    assert twice.stderr.strip() == f"praxis: error: cannot suspend session '{sid}': it is SUSPENDED"

    resumed = praxis(env, "agent", "resume", sid, stdin="third\n")
    assert resumed.returncode == 0, resumed.stderr
    assert "You: second line" in resumed.stdout and "Agent: third" in resumed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["agent", "show-session", "no-such-session"],
            "praxis: error: unknown session 'no-such-session'",
        ),
        (["agent", "resume", "a.b"], "praxis: error: invalid session id 'a.b'"),
        (
            ["agent", "run", "nobody", "--message", "x"],
            "praxis: error: unknown agent 'nobody'; "
            "known agents: boom, crash, echo, hang, hello-world, recall, slow",
        ),
        (["agent", "list-sessions", "--state", "SLEEPY"], "praxis: error: unknown state 'SLEEPY'"),
        (["agent", "cleanup", "--older-than", "soon"], "praxis: error: invalid duration 'soon'"),
    ],
)
def test_errors_are_one_line_without_traceback(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = praxis(env, *args)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cleanup_dry_run_then_delete(env: dict[str, str]) -> None:
    run = praxis(env, "agent", "run", "echo", "--task-id", "task-old", "--message", "bye")
    sid = session_of(run.stderr)
    ended_only = praxis(env, "agent", "cleanup", "--older-than", "0s", "--dry-run")
    assert ended_only.returncode == 0, ended_only.stderr
    assert sid not in ended_only.stdout  # by default only ended sessions go
    dry = praxis(env, "agent", "cleanup", "--older-than", "0s", "--state", "any", "--dry-run")
    assert f"would purge {sid} (ACTIVE" in dry.stdout
    assert praxis(env, "agent", "show-session", sid).returncode == 0
    done = praxis(env, "agent", "cleanup", "--older-than", "0s", "--state", "ACTIVE")
    assert f"purged {sid}" in done.stdout
    gone = praxis(env, "agent", "show-session", sid)
    assert gone.returncode == 1 and "unknown session" in gone.stderr
    listed = json.loads(
        praxis(env, "agent", "list-sessions", "--task-id", "task-old", "--json").stdout
    )
    assert listed == []


def test_agents_and_workers(env: dict[str, str]) -> None:
    agents = praxis(env, "agents", "--json")
    names = {a["name"] for a in json.loads(agents.stdout)}
    assert {"hello-world", "echo", "slow", "boom"} <= names
    workers = praxis(env, "workers")
    assert workers.returncode == 0


async def test_status_shows_the_bus_the_work_the_workers_and_the_sessions(
    env: dict[str, str], client: SessionClient, worker: InProcessWorker
) -> None:
    # The module's server is shared: count what this test adds.
    before = json.loads((await asyncio.to_thread(praxis, env, "status", "--json")).stdout)
    record, receipt = await client.create("echo", task_id="task-status")
    await client.wait(receipt)
    await client.wait(await client.send(record.session_id, "hello"))
    ended, receipt = await client.create("echo", task_id="task-status")
    await client.wait(receipt)
    await client.complete(ended.session_id)
    ran = await asyncio.to_thread(praxis, env, "status", "--json")
    assert ran.returncode == 0, ran.stderr
    now = json.loads(ran.stdout)
    was, after = before["sessions"]["by_state"], now["sessions"]["by_state"]
    assert after["ACTIVE"] - was["ACTIVE"] == 1 and after["COMPLETED"] - was["COMPLETED"] == 1
    assert now["sessions"]["total"] - before["sessions"]["total"] == 2
    assert now["stream"]["messages"] > before["stream"]["messages"]
    assert now["nats"]["server_version"].startswith("2.")
    assert now["work_queue"]["waiting"] == 0
    assert worker.worker.worker_id in {w["worker_id"] for w in now["workers"]}
    assert set(now["buckets"]) >= {"praxis_sessions", "praxis_leases", "praxis_workers"}
    text = await asyncio.to_thread(praxis, env, "status")
    assert text.returncode == 0, text.stderr
    assert "commands waiting for a worker" in text.stdout
    assert worker.worker.worker_id in text.stdout


async def test_every_listing_prints_json_that_parses(
    env: dict[str, str], client: SessionClient, worker: InProcessWorker
) -> None:
    record, receipt = await client.create("echo", task_id="task-json")
    await client.wait(receipt)
    sid = record.session_id
    listings = {
        ("agent", "list-sessions", "--task-id", "task-json"): list,
        ("agent", "show-session", sid): dict,
        ("agents",): list,
        ("workers",): list,
        ("dead-letters",): list,
        ("keys", "list"): list,
        ("status",): dict,
    }
    for args, kind in listings.items():
        ran = await asyncio.to_thread(praxis, env, *args, "--json")
        assert ran.returncode == 0, (args, ran.stderr)
        assert isinstance(json.loads(ran.stdout), kind), args
    shown = json.loads(
        (await asyncio.to_thread(praxis, env, "agent", "show-session", sid, "--json")).stdout
    )
    assert shown["session_id"] == sid and shown["task_id"] == "task-json"


def test_shell_completion(tmp_path: Path) -> None:
    """The bash script completes commands and options when sourced in a real bash."""
    env = fresh_env(tmp_path)
    script = praxis(env, "completion", "bash")
    assert script.returncode == 0, script.stderr
    (tmp_path / "praxis.bash").write_text(script.stdout)

    def complete(*words: str) -> set[str]:
        line = " ".join(words)
        ran = subprocess.run(
            [
                "bash",
                "-c",
                f'source "{tmp_path / "praxis.bash"}"; COMP_WORDS=({line}); '
                f"COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; "
                '_praxis; printf "%s\\n" "${COMPREPLY[@]}"',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ran.returncode == 0, ran.stderr
        return set(ran.stdout.split())

    assert "status" in complete("praxis", "sta")
    assert {"run", "resume"} <= complete("praxis", "agent", "r")
    assert "--json" in complete("praxis", "status", "--j")
    for shell, first in (("zsh", "#compdef praxis"), ("fish", "# Fish completion for praxis")):
        other = praxis(env, "completion", shell)
        assert other.returncode == 0 and other.stdout.startswith(first), other.stderr
    bad = praxis(env, "completion", "tcsh")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_fresh_machine_embedded_nats(tmp_path: Path) -> None:
    """No PRAXIS_NATS_URL: the CLI starts its own nats-server and worker, and stops them."""
    env = fresh_env(tmp_path)
    first = praxis(env, "agent", "run", "hello-world", "--message", "Remember me")
    assert first.returncode == 0, first.stderr
    sid = session_of(first.stderr)
    assert not (tmp_path / "data" / "nats" / "server.json").exists(), "the server was stopped"
    assert (tmp_path / "data" / "nats" / "jetstream").is_dir()

    later = praxis(env, "agent", "resume", sid, "--message", "Do you remember?")
    assert later.returncode == 0, later.stderr
    assert '"Remember me"' in later.stdout and "2nd message" in later.stdout
    state = tmp_path / "data" / "nats" / "server.json"
    assert not state.exists()


def test_up_runs_the_stack_until_interrupted(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    up = spawn_praxis(env, "up", "--workers", "2", "--port", "0")
    try:
        assert up.stdout is not None
        banner = up.stdout.readline()
        assert (
            "Praxis is up: embedded NATS at nats://127.0.0.1:" in banner and "2 worker(s)" in banner
        ), banner
        url = re.search(r"HTTP API at (http://127\.0\.0\.1:\d+)", banner)
        assert url is not None, banner
        state = json.loads((tmp_path / "data" / "nats" / "server.json").read_text())
        run = praxis(env, "agent", "run", "echo", "--message", "through up")
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "through up"
        sid = session_of(run.stderr)
        r = httpx.post(f"{url[1]}/agent-sessions/{sid}/messages", json={"message": "and http"})
        assert r.status_code == 202, r.text
        assert connections(state["monitor_port"]) >= 3  # two workers and the edge stay on
    finally:
        up.send_signal(2)
        out, err = up.communicate(timeout=30)
    assert up.returncode == 0, err
    assert "Praxis stopped." in out
    assert not (tmp_path / "data" / "nats" / "server.json").exists()


def test_edge_alone_on_a_fresh_machine(tmp_path: Path) -> None:
    """No PRAXIS_NATS_URL, no worker: 'praxis edge' brings the embedded server and a worker."""
    edge = spawn_praxis(fresh_env(tmp_path), "edge", "--port", "0")
    try:
        assert edge.stdout is not None
        assert edge.stdout.readline().startswith("No dedicated worker is running")
        url = edge.stdout.readline().strip().removeprefix("Praxis edge on ")
        assert url.startswith("http://127.0.0.1:"), url
        with httpx.Client(base_url=url, timeout=30) as http:
            created = http.post("/agent-sessions/create", json={"agent_name": "hello-world"})
            assert created.status_code == 201, created.text
            sid = created.json()["session_id"]
            body = {"message": "Hello over HTTP", "stream": True}
            with http.stream("POST", f"/agent-sessions/{sid}/messages", json=body) as r:
                lines = list(r.iter_lines())
            assert "event: turn.completed" in lines
        told = praxis(fresh_env(tmp_path), "env")  # other shells learn where it is
        assert f"export PRAXIS_EDGE_URL={url}" in told.stdout.splitlines(), told
    finally:
        edge.send_signal(2)
        _, err = edge.communicate(timeout=30)
    assert edge.returncode == 0, err
    assert not (tmp_path / "data" / "nats" / "server.json").exists()  # the server stopped
    assert not (tmp_path / "data" / "edge.json").exists()


def test_the_edge_reports_its_url_in_a_ready_file(settings: Settings, tmp_path: Path) -> None:
    """``praxis edge --ready-file F``: once it listens, F holds its URL and pid, written
    whole (what ``praxis up`` reads instead of the edge's output)."""
    ready = tmp_path / "edge.json"
    args = ["edge", "--port", "0", "--ready-file", str(ready)]
    env = env_for(settings, PRAXIS_INPROCESS_WORKER="never")
    with spawn_praxis(env, *args) as proc:
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():  # waiting for the condition itself, bounded
                assert proc.poll() is None, "the edge exited"
                assert time.monotonic() < deadline, "no ready file"
                time.sleep(0.02)
            found = json.loads(ready.read_text())
            assert found["pid"] == proc.pid and found["url"].startswith("http://127.0.0.1:")
            assert httpx.get(f"{found['url']}/healthz", timeout=5).status_code == 200
            assert [p.name for p in tmp_path.iterdir()] == ["edge.json"]  # no partial file
        finally:
            proc.terminate()
            proc.wait(15)


def test_version_is_the_installed_one(env: dict[str, str]) -> None:
    from importlib.metadata import version

    done = praxis(env, "--version", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == version("praxis-sessions") != "0.0.0"


def test_a_closed_pipe_ends_quietly(env: dict[str, str]) -> None:
    """``praxis bus docs | head -1``: no "Broken pipe" message, the status of SIGPIPE."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "praxis.cli", "bus", "docs"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as head does after its line (here before any: always a closed pipe)
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141, err
    assert "Broken pipe" not in err and "Errno" not in err, err


def test_agents_used_by_name_only_are_listed_when_asked_for(env: dict[str, str]) -> None:
    listed = praxis(env, "agents", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {a["name"] for a in json.loads(listed.stdout)}
    assert "echo" in names and "synthetic" not in names
    every = praxis(env, "agents", "--json", "--all")
    assert "synthetic" in {a["name"] for a in json.loads(every.stdout)}
    assert "--no-json" not in praxis(env, "agents", "--help").stdout


@pytest.mark.parametrize("command", ["edge", "up"])
def test_a_port_in_use_is_one_line(tmp_path: Path, command: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = praxis(fresh_env(tmp_path), command, "--port", str(port), timeout=60)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if "warning" not in line]
    assert errors == [
        f"praxis: error: port {port} on 127.0.0.1 is in use: stop what listens there, "
        "or choose another with --port (or PRAXIS_EDGE_PORT)"
    ], done.stderr


def test_help_texts(env: dict[str, str]) -> None:
    top = praxis(env, "--help").stdout
    assert "praxis agent run hello-world" in top and "praxis up" in top, top
    run = praxis(env, "agent", "run", "--help").stdout
    assert all(f"{code} " in run for code in ("0", "1", "3", "130")) and "Exit status" in run
    edge = praxis(env, "edge", "--help").stdout
    assert "GraphQL" in edge and "chat page" in edge
    for args in (["bench"], ["agent", "cleanup"], ["keys", "create"], ["agent", "approve"]):
        shown = praxis(env, *args, "--help").stdout
        assert "--no-" not in shown, (args, shown)
    assert "--no-edge" in praxis(env, "up", "--help").stdout  # a twin that means something


def test_the_commands_own_worker_logs_to_a_file_not_beside_the_error(
    env: dict[str, str], settings: Settings
) -> None:
    """A turn that fails in the CLI's own worker: the user sees the one-line error, not
    the worker's timestamped log lines (they are in the data directory's log)."""
    done = praxis(env, "agent", "run", "boom", "--message", "go")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert not [ln for ln in lines if re.match(r"\d{4}-\d\d-\d\d ", ln)], done.stderr
    assert [ln for ln in lines if ln.startswith("praxis: error:")] == [lines[-2]]
    assert "the model fell over" in lines[-2]
    assert lines[-1].endswith(
        "stays open; continue it with: praxis agent resume " + session_of(done.stderr)
    )
    logged = (settings.data_dir / "logs" / "cli-worker.log").read_text()
    assert "the model fell over" in logged


SHOUT = """
from praxis.workers.agents import Agent, TurnContext, stream_words


class Shout(Agent):
    name = "shout"

    def respond(self, ctx: TurnContext):
        return stream_words((ctx.message or "").upper())
"""


def praxis_here(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``praxis`` command run from ``cwd`` (unlike ``python -m``, it does not
    put the current directory on the import path by itself)."""
    command = Path(sys.executable).with_name("praxis")
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(command), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_praxis_agents_takes_names_or_a_json_list_and_says_what_it_expects(
    tmp_path: Path,
) -> None:
    env = fresh_env(tmp_path)
    for given in ("tests.agents_for_tests:Drawl", '["tests.agents_for_tests:Drawl"]'):
        listed = praxis(env | {"PRAXIS_AGENTS": given}, "agents", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "drawl" in [a["name"] for a in json.loads(listed.stdout)]
    broken = praxis(env | {"PRAXIS_AGENTS": '["tests.agents_for_tests:Drawl"'}, "agents")
    assert broken.returncode == 1
    assert broken.stderr.startswith("praxis: error: PRAXIS_AGENTS: not a JSON list"), broken
    assert "names separated by commas" in broken.stderr and "Traceback" not in broken.stderr


def test_an_agent_whose_module_is_not_here_says_why(tmp_path: Path) -> None:
    env = fresh_env(tmp_path) | {"PRAXIS_AGENTS": "my_agents:Shout"}
    ran = praxis(env, "agent", "run", "shout", "--message", "hi")
    assert ran.returncode == 1
    assert "unknown agent 'shout'" in ran.stderr
    assert "PRAXIS_AGENTS my_agents:Shout: No module named 'my_agents'" in ran.stderr, ran


def test_praxis_agents_load_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "my_agents.py").write_text(SHOUT)
    env = fresh_env(tmp_path) | {"PRAXIS_AGENTS": '["my_agents:Shout"]'}
    listed = praxis_here(env, tmp_path, "agents", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "shout" in [a["name"] for a in json.loads(listed.stdout)]
    elsewhere = praxis_here(env, ROOT, "agents")  # not from any other directory
    assert elsewhere.returncode == 1 and "No module named 'my_agents'" in elsewhere.stderr


async def test_an_agent_added_after_the_workers_started_says_to_restart_them(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
    tmp_path: Path,
) -> None:
    worker_processes(1)  # started without 'shout'
    await live_workers(client, 1)
    (tmp_path / "my_agents.py").write_text(SHOUT)
    env = env_for(settings) | {"PRAXIS_AGENTS": '["my_agents:Shout"]'}
    listed = await asyncio.to_thread(praxis_here, env, tmp_path, "agents")
    assert "shout" in listed.stdout  # this installation defines it ...
    run = await asyncio.to_thread(
        praxis_here, env, tmp_path, "agent", "run", "shout", "--message", "hi"
    )
    assert run.returncode == 1  # ... but the running workers do not offer it
    assert run.stderr.count("\n") == 1, run.stderr
    assert "unknown agent 'shout'" in run.stderr
    assert "the running workers do not offer it" in run.stderr and "Restart them" in run.stderr
    other = await asyncio.to_thread(
        praxis_here, env, tmp_path, "agent", "run", "nope", "--message", "x"
    )
    assert other.returncode == 1 and "do not offer" not in other.stderr  # a plain unknown


HEAVY = ("litestar", "strawberry", "faststream", "pydantic_ai", "uvicorn", "opentelemetry.sdk")
LOADED = """
import contextlib, io, sys
from praxis.cli.app import main
sys.argv = ["praxis", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main()
print(" ".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize("args", [["--help"], ["agent", "--help"], ["agent", "run", "--help"]])
def test_help_imports_no_server_framework(args: list[str]) -> None:
    """Help is quick because it loads no edge, GraphQL, faststream or model code (about
    0.15 s for 'praxis --help' on the 2-core CI machine; measured, not timed here)."""
    ran = subprocess.run(
        [sys.executable, "-c", LOADED, *args], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    modules = ran.stdout.split()
    assert "praxis.cli.app" in modules  # (the check itself works)
    assert [m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY] == []


def test_a_worker_imports_no_edge() -> None:
    """``praxis worker`` loads no HTTP or GraphQL framework (1.5 s of its start-up)."""
    code = LOADED.replace("main()", "from praxis.cli import serve")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    modules = ran.stdout.split()
    assert "praxis.cli.serve" in modules and "praxis.workers.worker" in modules
    edge = ("litestar", "strawberry", "uvicorn", "praxis.edge")
    assert [m for m in modules if m.startswith(edge)] == []


def test_listing_sessions_imports_no_edge_or_models(env: dict[str, str]) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", LOADED, "agent", "list-sessions"],
        env=env | {"PRAXIS_INPROCESS_WORKER": "never"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    modules = ran.stdout.split()
    assert "praxis.cli.sessions" in modules  # (the listing ran)
    loaded = [m for m in modules if m.split(".")[0] in ("litestar", "strawberry", "pydantic_ai")]
    assert loaded == []
