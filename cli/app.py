"""``praxis``: the command line for users and operators (thin over ``bus``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter
from pydantic import ValidationError

from praxis.bus import (
    BusError,
    IllegalTransitionError,
    SessionClient,
    Settings,
    UnknownAgentError,
    connect,
)
from praxis.bus.embedded import EmbeddedServerError
from praxis.bus.permissions import Role
from praxis.bus.retention import ENDED, Outcome, candidates, sweep
from praxis.bus.transfer import (
    Conversation,
    LineError,
    dumps_line,
    export_session,
    import_conversation,
    parse_lines,
)
from praxis.cli import status
from praxis.cli.bench import bench_app
from praxis.cli.bus_admin import bus_app
from praxis.cli.chat import (
    WAITING,
    TurnError,
    WaitingForApproval,
    chat,
    check,
    decide_calls,
    one_turn,
    show_greeting,
    show_recent,
)
from praxis.cli.dead_letters import dead_app
from praxis.cli.keys import keys_app
from praxis.cli.render import call_text, history_lines, session_rows, worker_rows
from praxis.cli.runtime import bus_connection, resolve_url, runtime, sessions
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import run_coro as _run
from praxis.cli.runtime import setup_logging as _logging
from praxis.cli.term import ERROR, WARN, paint, progress, table
from praxis.edge.app import create_app
from praxis.edge.auth import is_loopback
from praxis.edge.server import serve
from praxis.schemas import TERMINAL, DoubleTexting, InvalidIdError, SessionState
from praxis.workers import Worker, install_signal_handlers, registry_for

app = App(
    name="praxis",
    help="Conversational agent sessions on NATS JetStream. "
    "Without PRAXIS_NATS_URL an embedded NATS server is used.",
)
agent_app = App(name="agent", help="Start, resume, inspect and clean up agent sessions.")
app.command(agent_app)
app.command(dead_app)
app.command(keys_app)
app.command(bus_app)
app.command(bench_app)
app.register_install_completion_command(help="Install shell completion for praxis.")

USER_ERRORS = (BusError, InvalidIdError, TurnError, EmbeddedServerError, ValueError, OSError)


def _report(e: BaseException) -> int:
    """A user error is one line on stderr and exit status 1, never a traceback."""
    if isinstance(e, ValidationError):
        first = e.errors()[0] if e.errors() else {"msg": str(e)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        text = f"{where + ': ' if where else ''}{first.get('msg')}"
    else:
        text = str(e)
    print(paint("praxis: error:", ERROR, sys.stderr), text, file=sys.stderr)
    code: int = getattr(e, "exit_code", 1)  # what the error says (praxis.bus.errors), else 1
    return code


def _state(value: str | None) -> SessionState | None:
    if value is None:
        return None
    try:
        return SessionState(value.upper())
    except ValueError:
        names = ", ".join(s.value for s in SessionState)
        raise ValueError(f"unknown state {value!r}; use one of {names}") from None


# -- agent sessions ----------------------------------------------------------------------


@agent_app.command(name="run")
def agent_run(
    agent: Annotated[str, Parameter(help="Agent name (see 'praxis agents').")],
    /,
    *,
    task_id: Annotated[
        str | None, Parameter(help="Task the session serves (default: new).")
    ] = None,
    message: Annotated[
        str | None, Parameter(help="Send one message, print the reply, exit.")
    ] = None,
    idle_timeout: Annotated[
        str | None,
        Parameter(help="Expire after this long without activity (30m, 12h, 7d; 'never')."),
    ] = None,
    max_lifetime: Annotated[
        str | None, Parameter(help="Expire this long after creation, active or not.")
    ] = None,
    double_texting: Annotated[
        DoubleTexting,
        Parameter(
            help="A message sent while the agent is still answering: waits (enqueue), is "
            "refused (reject), stops the reply (interrupt) or also discards it (rollback)."
        ),
    ] = "enqueue",
) -> int:
    """Start a session with an agent and talk to it."""
    _logging("WARNING")

    async def main() -> None:
        idle = parse_duration(idle_timeout).total_seconds() if idle_timeout else None
        life = parse_duration(max_lifetime).total_seconds() if max_lifetime else None
        async with sessions(_settings()) as client:
            record, receipt = await client.create(
                agent,
                task_id=task_id,
                idle_timeout=idle,
                max_lifetime=life,
                double_texting=double_texting,
            )
            print(f"Session created: {record.session_id}", file=sys.stderr)
            print(f"Task: {record.task_id}", file=sys.stderr)
            if message is not None:
                await client.wait(receipt)
                await one_turn(client, record.session_id, message)
                return
            await show_greeting(client, receipt)
            await chat(client, record.session_id)

    return _run(main())


@agent_app.command(name="resume")
def agent_resume(
    session_id: Annotated[str, Parameter(name="ID", help="Session id.")],
    /,
    *,
    message: Annotated[
        str | None, Parameter(help="Send one message, print the reply, exit.")
    ] = None,
    last: Annotated[int, Parameter(help="How many earlier messages to show.")] = 10,
) -> int:
    """Continue a session: show its last messages, then talk on."""
    _logging("WARNING")

    async def main() -> None:
        async with sessions(_settings()) as client:
            record = await client.get(session_id)
            if record.state in TERMINAL:
                raise ValueError(
                    f"session {session_id} is {record.state.value} and cannot be resumed"
                )
            if record.state is SessionState.SUSPENDED:
                try:
                    await client.resume(session_id)
                except IllegalTransitionError as e:
                    if e.state is not SessionState.ACTIVE:  # resumed meanwhile: fine
                        raise
            print(f"Resuming session {session_id} ({record.agent})", file=sys.stderr)
            await show_recent(client, session_id, last, err=message is not None)
            if message is not None:
                await one_turn(client, session_id, message)
            else:
                await chat(client, session_id)

    return _run(main())


@agent_app.command(name="approve")
def agent_approve(
    session_id: Annotated[str, Parameter(name="ID", help="Session id.")],
    call_ids: Annotated[
        list[str] | None,
        Parameter(name="CALL", help="Tool call id(s) (default: every call waiting)."),
    ] = None,
    /,
    *,
    deny: Annotated[bool, Parameter(help="Refuse instead: the tool does not run.")] = False,
    reason: Annotated[
        str | None, Parameter(help="Why (a denial's reason is told to the model).")
    ] = None,
) -> int:
    """Approve (or --deny) tool calls the agent waits on; print the rest of the turn.

    Exits 0 when the turn completes, 1 when it fails, 3 when it waits again."""
    _logging("WARNING")

    async def main() -> None:
        async with sessions(_settings()) as client:
            outcome = await decide_calls(
                client, session_id, list(call_ids or []), approve=not deny, reason=reason
            )
            check(outcome, session_id)

    return _run(main())


@agent_app.command(name="list-sessions")
def agent_list_sessions(
    *,
    state: Annotated[
        str | None, Parameter(help="CREATED, ACTIVE, SUSPENDED, COMPLETED, FAILED or EXPIRED.")
    ] = None,
    agent: Annotated[str | None, Parameter(help="Only sessions of this agent.")] = None,
    task_id: Annotated[str | None, Parameter(help="Only sessions of this task.")] = None,
    limit: Annotated[int, Parameter(help="At most this many (newest first).")] = 100,
    json_: Annotated[bool, Parameter(name="--json", help="Print JSON.")] = False,
) -> int:
    """List sessions, newest first."""
    _logging("WARNING")

    async def main() -> None:
        async with sessions(_settings(), with_worker=False) as client:
            page = await client.list(state=_state(state), agent=agent, task_id=task_id, limit=limit)
            if json_:
                print(json.dumps([r.model_dump(mode="json") for r in page.items], indent=2))
            elif page.items:
                table(session_rows(page.items))
            else:
                print("No sessions.", file=sys.stderr)

    return _run(main())


@agent_app.command(name="show-session")
def agent_show_session(
    session_id: Annotated[str, Parameter(name="ID", help="Session id.")],
    /,
    *,
    json_: Annotated[bool, Parameter(name="--json", help="Print JSON.")] = False,
) -> int:
    """Show a session's record and its whole history."""
    _logging("WARNING")

    async def main() -> None:
        async with sessions(_settings(), with_worker=False) as client:
            record = await client.get(session_id)
            history = await client.history(session_id)
            if json_:
                data = record.model_dump(mode="json")
                data["history"] = [h.model_dump(mode="json") for h in history]
                print(json.dumps(data, indent=2))
                return
            c = record.counters
            print(f"Session:  {record.session_id}")
            print(f"Task:     {record.task_id}")
            print(f"Agent:    {record.agent}")
            print(f"State:    {record.state.value}")
            print(f"Created:  {record.created_at.isoformat()} (from {record.created_by.value})")
            print(f"Updated:  {record.updated_at.isoformat()}")
            print(f"Turns:    {c.turns} completed, {c.failed_turns} failed")
            if record.expires_at is not None:
                print(f"Expires:  {record.expires_at.isoformat()} unless there is activity")
            if record.metadata:
                print(f"Metadata: {json.dumps(record.metadata)}")
            for call in record.waiting_for:
                waiting = f"{call_text(call)} (call {call.call_id}) for approval"
                print(f"Waiting:  {paint(waiting, WARN, sys.stdout)}")
            print()
            for line in history_lines(history, sys.stdout):
                print(line)

    return _run(main())


def _lifecycle(session_id: str, action: str) -> int:
    _logging("WARNING")

    async def main() -> None:
        async with sessions(_settings()) as client:
            method = getattr(client, action)
            record = await method(session_id)
            print(f"Session {session_id} is {record.state.value}")

    return _run(main())


@agent_app.command(name="suspend")
def agent_suspend(session_id: Annotated[str, Parameter(name="ID")], /) -> int:
    """Suspend a session; 'praxis agent resume ID' continues it."""
    return _lifecycle(session_id, "suspend")


@agent_app.command(name="complete")
def agent_complete(session_id: Annotated[str, Parameter(name="ID")], /) -> int:
    """Mark a session completed (it takes no more messages)."""
    return _lifecycle(session_id, "complete")


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    if text.strip() in ("0", "never"):
        return timedelta(0)
    found = _DURATION.match(text.strip())
    if not found:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h, d or w (e.g. 7d)")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


@agent_app.command(name="cleanup")
def agent_cleanup(
    *,
    older_than: Annotated[
        str, Parameter(help="Unchanged for at least this long (30m, 12h, 7d, 2w; 0 for any).")
    ] = "7d",
    state: Annotated[
        str,
        Parameter(
            help="Which sessions: 'ended' (completed, failed or expired), a state, or 'any'."
        ),
    ] = "ended",
    export: Annotated[
        Path | None,
        Parameter(help="Write each session to DIR/ID.jsonl (the import format) before purging."),
    ] = None,
    dry_run: Annotated[bool, Parameter(help="Only list what would be purged.")] = False,
    json_: Annotated[bool, Parameter(name="--json", help="Print JSON.")] = False,
) -> int:
    """Purge old sessions: their commands, events, snapshot, timer, record, lease and dead
    letters, so that nothing of them remains on the bus.

    By default only sessions that ended at least 7 days ago; sessions a worker is on are
    skipped. Workers do the same on their own (PRAXIS_SESSION_RETENTION)."""
    _logging("WARNING")

    async def main() -> None:
        age = parse_duration(older_than)
        if state.lower() == "ended":
            states: frozenset[SessionState] = ENDED
        elif state.lower() == "any":
            states = frozenset(SessionState)
        else:
            picked = _state(state)
            assert picked is not None
            states = frozenset({picked})
        async with runtime(_settings(), with_worker=False) as rt:
            before = datetime.now(UTC) - age
            out: list[dict[str, Any]] = []
            done = 0
            chosen = await candidates(rt.client, before=before, states=states)
            doing = "Checking" if dry_run else "Purging"
            with progress(f"{doing} {len(chosen)} session(s)", len(chosen)) as advance:
                async for o in sweep(rt.client, chosen, export_dir=export, dry_run=dry_run):
                    advance(1)
                    done += o.action != "skipped"
                    if json_:
                        out.append(_cleanup_row(o))
                    else:
                        _print_cleanup(o)
            if json_:
                print(json.dumps(out, indent=2))
            verb = "would be purged" if dry_run else "purged"
            print(f"{done} session(s) {verb}", file=sys.stderr)

    return _run(main())


def _cleanup_row(o: Outcome) -> dict[str, Any]:
    r = o.record
    return {
        "session_id": r.session_id,
        "task_id": r.task_id,
        "state": r.state.value,
        "updated_at": r.updated_at.isoformat(),
        "action": o.action,
        "reason": o.reason or None,
        "exported": str(o.exported) if o.exported else None,
    }


def _print_cleanup(o: Outcome) -> None:
    r = o.record
    if o.action == "skipped":
        print(f"skipped {r.session_id}: {o.reason}", file=sys.stderr)
        return
    print(
        f"{o.action} {r.session_id} ({r.state.value}, updated {r.updated_at.isoformat()})"
        + (f" -> {o.exported}" if o.exported else "")
    )


@agent_app.command(name="import")
def agent_import(
    file: Annotated[
        str,
        Parameter(
            name="FILE",
            help="JSON lines, one conversation each ('-': stdin).",
            allow_leading_hyphen=True,
        ),
    ],
    /,
    *,
    agent: Annotated[str | None, Parameter(help="Agent for lines that name none.")] = None,
    task_id: Annotated[str | None, Parameter(help="Task for lines that name none.")] = None,
    skip_unknown: Annotated[
        bool,
        Parameter(
            help="Skip (and report) lines whose agent no worker offers, instead of importing "
            "nothing."
        ),
    ] = False,
) -> int:
    """Import conversations (OpenAI chat-format messages) as sessions that can be resumed,
    or restore sessions from their export (same ids, owner, state, times and counters).

    Every line is checked first: if any is bad, each bad one is reported with its line
    number and nothing is imported. A line whose session can still take messages must
    name an agent a worker offers (ended sessions are restored whatever their agent)."""
    _logging("WARNING")
    if file == "-":
        text = sys.stdin.read()
    else:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    good, bad = parse_lines(text.splitlines())
    for err in bad:
        print(f"praxis: error: {file}: {err}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} bad line(s): nothing imported", file=sys.stderr)
        return 1

    async def main() -> None:
        async with runtime(_settings(), with_worker=False) as rt:
            known = set(await rt.client.known_agents())
            known = known or set(registry_for(_settings()).names())
            chosen = _importable(good, agent, known, skip_unknown)
            with progress(f"Importing {len(chosen)} conversation(s)", len(chosen)) as advance:
                for _, conv in chosen:
                    record = await import_conversation(
                        rt.client, conv, agent=agent, task_id=task_id
                    )
                    messages = record.counters.user_messages + record.counters.agent_messages
                    print(f"{record.session_id}\t{record.task_id}\t{messages} messages")
                    advance(1)
            skipped = len(good) - len(chosen)
            print(
                f"{len(chosen)} conversation(s) imported"
                + (f", {skipped} skipped" if skipped else ""),
                file=sys.stderr,
            )

    return _run(main())


def _importable(
    lines: list[tuple[int, Conversation]], agent: str | None, known: set[str], skip: bool
) -> list[tuple[int, Conversation]]:
    """The lines to import; raises for the first line that cannot be (unless ``skip``, for
    an unknown agent: that line is reported on stderr and left out)."""
    out: list[tuple[int, Conversation]] = []
    for number, conv in lines:
        name = conv.agent or agent
        if name is None:
            raise LineError(number, "no agent: give --agent or an 'agent' in the line")
        if name in known or not conv.needs_agent:
            out.append((number, conv))
            continue
        if not skip:
            unknown = UnknownAgentError(name, sorted(known))
            raise LineError(number, f"{unknown} (--skip-unknown skips the line)")
        print(f"skipped line {number}: unknown agent {name!r}", file=sys.stderr)
    return out


@agent_app.command(name="export")
def agent_export(
    session_ids: Annotated[list[str], Parameter(name="ID", help="Session id(s).")],
    /,
) -> int:
    """Write sessions as JSON lines in the import format (one per line, on stdout)."""
    _logging("WARNING")

    async def main() -> None:
        async with runtime(_settings(), with_worker=False) as rt:
            for sid in session_ids:
                print(dumps_line(await export_session(rt.client, sid)))

    return _run(main())


# -- operators ---------------------------------------------------------------------------


@app.command(name="agents")
def agents_cmd(
    *, json_: Annotated[bool, Parameter(name="--json", help="Print JSON.")] = False
) -> int:
    """List the agents this installation offers; definitions that cannot be used are
    reported (file, field, why) on stderr, and the exit status is then 1."""
    _logging("CRITICAL")  # the errors are printed below, once
    registry = registry_for(_settings())
    infos = registry.infos()
    if json_:
        print(json.dumps([i.model_dump() for i in infos], indent=2))
    else:
        table(
            [["AGENT", "DESCRIPTION", "FROM"]] + [[i.name, i.description, i.source] for i in infos]
        )
    for err in registry.errors:
        print(f"praxis: could not load agent: {err}", file=sys.stderr)
    return 1 if registry.errors else 0


@app.command(name="workers")
def workers_cmd(
    *, json_: Annotated[bool, Parameter(name="--json", help="Print JSON.")] = False
) -> int:
    """List the live workers (by their heartbeats)."""
    _logging("WARNING")

    async def main() -> None:
        async with runtime(_settings(), with_worker=False) as rt:
            found = await rt.client.workers()
            if json_:
                print(json.dumps([w.model_dump(mode="json") for w in found], indent=2))
            elif found:
                table(worker_rows(found))
            else:
                print("No live workers.", file=sys.stderr)

    return _run(main())


@app.command(name="completion")
def completion_cmd(
    shell: Annotated[
        Literal["bash", "zsh", "fish"],
        Parameter(help="The shell to complete in."),
    ] = "bash",
    /,
) -> int:
    """Print a shell completion script for praxis: for example
    'eval "$(praxis completion bash)"' in ~/.bashrc ('praxis --install-completion' installs
    it for the current shell)."""
    print(app.generate_completion(prog_name="praxis", shell=shell))
    return 0


@app.command(name="status")
def status_cmd(
    *, json_: Annotated[bool, Parameter(name="--json", help="Print JSON.")] = False
) -> int:
    """The NATS server, the stream and its work queue (commands waiting for a worker), the
    buckets, the live workers and the sessions by state."""
    _logging("WARNING")

    async def main() -> None:
        async with runtime(_settings(), with_worker=False) as rt:
            status.show(await status.gather(rt.bus, rt.client), json_)

    return _run(main())


@app.command(name="worker")
def worker_cmd() -> int:
    """Run a stateless worker until SIGTERM or Ctrl-C (then drain)."""
    _logging("INFO")

    async def main() -> None:
        settings = _settings()
        async with bus_connection(settings, "praxis-worker", Role.WORKER) as (bus, _):
            stop = asyncio.Event()
            install_signal_handlers(stop)
            await Worker(bus, registry_for(settings)).run(stop)

    return _run(main())


HostOption = Annotated[
    str | None, Parameter(help="Address to listen on (default PRAXIS_EDGE_HOST, 127.0.0.1).")
]
PortOption = Annotated[
    int | None, Parameter(help="Port to listen on, 0 for any free one (default 8000).")
]


@app.command(name="edge")
def edge_cmd(*, host: HostOption = None, port: PortOption = None) -> int:
    """Serve the HTTP API (REST, SSE; OpenAPI at /schema) until SIGTERM or Ctrl-C.

    Without PRAXIS_NATS_URL it uses the embedded server and, unless a dedicated worker is
    running, a worker in its own process (PRAXIS_INPROCESS_WORKER=never to turn it off).
    """
    _logging("WARNING")

    async def main() -> None:
        settings = _settings()
        bind = host or settings.edge_host
        if settings.auth == "off":
            if not is_loopback(bind):
                raise ValueError(
                    f"refusing to serve the edge on {bind} without authentication: set "
                    "PRAXIS_AUTH=on (with keys from 'praxis keys create', or PRAXIS_JWT_*), "
                    "or bind to 127.0.0.1"
                )
            print(
                "praxis: warning: the edge runs without authentication (PRAXIS_AUTH=off): "
                "anyone who can reach this machine's loopback address can use every session",
                file=sys.stderr,
                flush=True,
            )
        stop = asyncio.Event()
        install_signal_handlers(stop)
        async with runtime(settings, name="praxis-edge", role=Role.EDGE) as rt:
            if rt.worker is not None:
                print("No dedicated worker is running: this edge runs one itself.", flush=True)
            app = create_app(settings, rt.bus)
            await serve(app, bind, settings.edge_port if port is None else port, stop)

    return _run(main())


def _metrics_port(settings: Settings, i: int) -> dict[str, str]:
    """Worker ``i`` of several serves its metrics on the port after worker ``i - 1``'s."""
    port = settings.metrics_port
    return {"PRAXIS_METRICS_PORT": str(port + i)} if port else {}


@app.command(name="up")
def up_cmd(
    *,
    workers: Annotated[int, Parameter(help="Worker processes to run.")] = 1,
    host: HostOption = None,
    port: PortOption = None,
    edge: Annotated[bool, Parameter(help="Run the HTTP edge too.", negative="--no-edge")] = True,
) -> int:
    """Run the local stack in the foreground until Ctrl-C: NATS (unless PRAXIS_NATS_URL),
    workers and the HTTP edge."""
    _logging("INFO")

    async def main() -> None:
        settings = _settings()
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
                where = f"embedded NATS at {url} (data in {settings.data_dir})" if embedded else url
                print(
                    f"Praxis is up: {where}; {workers} worker(s)"
                    + (f"; HTTP API at {edge_url} (docs at {edge_url}/schema)" if edge_url else "")
                    + ". Ctrl-C to stop.",
                    flush=True,
                )
                await stop.wait()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                await asyncio.to_thread(p.wait)
            if embedded is not None:
                await asyncio.to_thread(embedded.release, frozenset(), True)
            print("Praxis stopped.", flush=True)

    return _run(main())


def _start_edge(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``praxis edge``; return it and its URL once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "praxis.cli", "edge", *args], env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    for raw in proc.stdout:  # it prints one line when it listens (logs go to stderr)
        line = raw.decode().strip()
        if line.startswith("Praxis edge on "):
            return proc, line.removeprefix("Praxis edge on ")
    proc.wait()
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


def main() -> None:
    try:
        result = app(sys.argv[1:])
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
    except WaitingForApproval as e:
        print(f"praxis: {e}", file=sys.stderr)
        sys.exit(WAITING)
    except (ValidationError, *USER_ERRORS) as e:
        sys.exit(_report(e))
    sys.exit(result if isinstance(result, int) else 0)
