"""``praxis``: the command line for users and operators (thin over ``bus``).

This module is the table of contents: the root app, each command's name and the module
that implements it, and ``main``, where every error becomes one line and its exit code.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from cyclopts import App, Parameter

from praxis import installed_version

__all__ = ["app", "main"]

# Commands are registered by import path: a command's module (and what it needs: the bus,
# the edge, GraphQL, ...) is imported only when that command runs, so that --help and the
# light commands start fast. Each gives its short help here (the listing needs no import).
app = App(
    name="praxis",
    version=installed_version(),
    # A flag has no --no- twin unless it says so (--no-edge, --no-wait): most mean nothing.
    default_parameter=Parameter(negative=""),
    help="Conversational agent sessions on NATS JetStream. "
    "Without PRAXIS_NATS_URL an embedded NATS server is used.\n\n"
    "Two examples to start with:\n\n"
    "* `praxis agent run hello-world` starts a session with an agent and chats with it\n"
    "* `praxis up` runs NATS, a worker and the HTTP edge (REST, GraphQL, a chat page)\n",
)
agent_app = App(name="agent", help="Start, resume, inspect and clean up agent sessions.")
app.command(agent_app)
app.command(
    "praxis.cli.dead_letters:dead_app",
    name="dead-letters",
    help="Commands parked after failing repeatedly: list, show, replay or drop them.",
)
app.command(
    "praxis.cli.keys:keys_app",
    name="keys",
    help="API keys for the edge (PRAXIS_AUTH=on): create, list, revoke.",
)
app.command(
    "praxis.cli.bus_admin:bus_app",
    name="bus",
    help="The NATS side: users and permissions, provisioning, the bus contract.",
)
app.command(
    "praxis.cli.bench:bench_app",
    name="bench",
    help="Measure Praxis against the raw JetStream floor, in one run.",
)
app.register_install_completion_command(help="Install shell completion for praxis.")

# name: (where it is, its help: the first paragraph is its line in the listing)
_AGENT = {
    "run": (
        "praxis.cli.sessions:agent_run",
        "Start a session with an agent and talk to it.\n\n"
        "Exit status: 0 done; 1 an error (one line on stderr: unknown agent, the turn failed,"
        " the bus unreachable, ...); 3 the turn waits for a tool call's approval (the line "
        "says how to approve); 130 interrupted (Ctrl-C: the session stays open, the line says"
        " how to resume it).",
    ),
    "resume": (
        "praxis.cli.sessions:agent_resume",
        "Continue a session: show its last messages, then talk on.",
    ),
    "approve": (
        "praxis.cli.sessions:agent_approve",
        "Approve (or --deny) tool calls the agent waits on; print the rest of the turn.\n\n"
        "Exits 0 when the turn completes, 1 when it fails, 3 when it waits again.",
    ),
    "list-sessions": (
        "praxis.cli.sessions:agent_list_sessions",
        "List sessions, newest first.",
    ),
    "show-session": (
        "praxis.cli.sessions:agent_show_session",
        "Show a session's record and its whole history.",
    ),
    "suspend": (
        "praxis.cli.sessions:agent_suspend",
        "Suspend a session; 'praxis agent resume ID' continues it.",
    ),
    "complete": (
        "praxis.cli.sessions:agent_complete",
        "Mark a session completed (it takes no more messages).",
    ),
    "cleanup": (
        "praxis.cli.cleanup:agent_cleanup",
        "Purge old sessions: their commands, events, snapshot, timer, record, lease and dead "
        "letters, so that nothing of them remains on the bus.\n\n"
        "By default only sessions that ended at least 7 days ago; sessions a worker is on are"
        " skipped. Workers do the same on their own (PRAXIS_SESSION_RETENTION).",
    ),
    "import": (
        "praxis.cli.transfer:agent_import",
        "Import conversations (OpenAI chat-format messages) as sessions that can be resumed, "
        "or restore sessions from their export (same ids, owner, state, times and counters).\n\n"
        "Every line is checked first: if any is bad, each bad one is reported with its line "
        "number and nothing is imported. A line whose session can still take messages must "
        "name an agent a worker offers (ended sessions are restored whatever their agent).",
    ),
    "export": (
        "praxis.cli.transfer:agent_export",
        "Write sessions as JSON lines in the import format (one per line, on stdout).",
    ),
}
_TOP = {
    "agents": (
        "praxis.cli.info:agents_cmd",
        "List the agents this installation offers; definitions that cannot be used are "
        "reported (file, field, why) on stderr, and the exit status is then 1.",
    ),
    "env": (
        "praxis.cli.info:env_cmd",
        "Print the shell lines that point programs at the running local stack: its NATS "
        "URL, a seed to log in with, and the edge's URL. In another shell: "
        'eval "$(praxis env)"; then Settings() in Python (and every praxis command) uses it.',
    ),
    "workers": (
        "praxis.cli.info:workers_cmd",
        "List the live workers (by their heartbeats).",
    ),
    "status": (
        "praxis.cli.info:status_cmd",
        "The NATS server, the stream and its work queue (commands waiting for a worker), the "
        "buckets, the live workers and the sessions by state.",
    ),
    "worker": (
        "praxis.cli.serve:worker_cmd",
        "Run a stateless worker until SIGTERM or Ctrl-C (then drain).",
    ),
    "edge": (
        "praxis.cli.serve:edge_cmd",
        "Serve the HTTP edge until SIGTERM or Ctrl-C: REST and SSE (OpenAPI at /schema), "
        "GraphQL at /graphql (GraphiQL in a browser), and the chat page at /.\n\n"
        "Without PRAXIS_NATS_URL it uses the embedded server and, unless a dedicated worker "
        "is running, a worker in its own process (PRAXIS_INPROCESS_WORKER=never to turn it "
        "off).",
    ),
    "up": (
        "praxis.cli.stack:up_cmd",
        "Run the local stack in the foreground until Ctrl-C: NATS (unless PRAXIS_NATS_URL), "
        "workers and the HTTP edge.",
    ),
}
for _name, (_path, _help) in _AGENT.items():
    agent_app.command(_path, name=_name, help=_help)
for _name, (_path, _help) in _TOP.items():
    app.command(_path, name=_name, help=_help)


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


def main() -> None:
    try:
        result = app(sys.argv[1:])
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
    except BrokenPipeError:
        _pipe_closed()
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        sys.exit(_failed(e))
    sys.exit(result if isinstance(result, int) else 0)


def _failed(e: Exception) -> int:
    """The exit status of a command that raised ``e`` (imported here, not at start-up: a
    command that fails has time)."""
    from pydantic import ValidationError

    from praxis.cli.chat import WAITING, WaitingForApproval
    from praxis.cli.common import USER_ERRORS, report

    if isinstance(e, WaitingForApproval):
        print(f"praxis: {e}", file=sys.stderr)
        return WAITING
    if isinstance(e, (ValidationError, *USER_ERRORS)):
        return report(e)
    raise e


def _pipe_closed() -> None:
    """The reader of our output went away (``praxis bus docs | head -1``): end quietly, as
    Unix tools do (status 141, as if killed by SIGPIPE), with nothing flushed at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + 13)
