"""``praxis``: the command line for users and operators (thin over ``bus``).

This module is the table of contents: the root app, each command's name and the module
that implements it, and ``main``, where every error becomes one line and its exit code.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from cyclopts import App, Parameter
from pydantic import ValidationError

from praxis import installed_version
from praxis.cli import cleanup, info, serve, sessions, stack, transfer
from praxis.cli.bench import bench_app
from praxis.cli.bus_admin import bus_app
from praxis.cli.chat import WAITING, WaitingForApproval
from praxis.cli.common import USER_ERRORS, parse_duration, report
from praxis.cli.dead_letters import dead_app
from praxis.cli.keys import keys_app

__all__ = ["app", "main", "parse_duration"]

app = App(
    name="praxis",
    version=installed_version(),
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

agent_app.command(sessions.agent_run, name="run")
agent_app.command(sessions.agent_resume, name="resume")
agent_app.command(sessions.agent_approve, name="approve")
agent_app.command(sessions.agent_list_sessions, name="list-sessions")
agent_app.command(sessions.agent_show_session, name="show-session")
agent_app.command(sessions.agent_suspend, name="suspend")
agent_app.command(sessions.agent_complete, name="complete")
agent_app.command(cleanup.agent_cleanup, name="cleanup")
agent_app.command(transfer.agent_import, name="import")
agent_app.command(transfer.agent_export, name="export")
app.command(info.agents_cmd, name="agents")
app.command(info.workers_cmd, name="workers")
app.command(info.status_cmd, name="status")
app.command(serve.worker_cmd, name="worker")
app.command(serve.edge_cmd, name="edge")
app.command(stack.up_cmd, name="up")


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
    except WaitingForApproval as e:
        print(f"praxis: {e}", file=sys.stderr)
        sys.exit(WAITING)
    except (ValidationError, *USER_ERRORS) as e:
        sys.exit(report(e))
    sys.exit(result if isinstance(result, int) else 0)


def _pipe_closed() -> None:
    """The reader of our output went away (``praxis bus docs | head -1``): end quietly, as
    Unix tools do (status 141, as if killed by SIGPIPE), with nothing flushed at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + 13)
