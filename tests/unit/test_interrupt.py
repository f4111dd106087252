"""Ctrl-C ends a CLI command even when its first cancellation is lost (as Python 3.11's
``asyncio.wait_for`` can lose one): the command runner cancels it again. A child process
of its own, as a user's terminal runs it; no server."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, as_a_shell_starts_it

# A command that drops its first cancellation, as ``asyncio.wait_for`` does in Python 3.11
# when the cancellation arrives as its future completes, and then waits on.
SWALLOWS = textwrap.dedent(
    """
    import asyncio, sys
    from praxis.cli.runtime import run_coro

    async def command():
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("lost", flush=True)  # the cancellation dropped
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("cancelled again", flush=True)
            raise
        return 0

    try:
        sys.exit(run_coro(command()))
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def start(script: str, recancel: float = 5.0) -> subprocess.Popen[str]:
    setting = f"import praxis.cli.runtime as r; r._RECANCEL = {recancel}\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", setting + script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=as_a_shell_starts_it,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_a_lost_cancellation_is_repeated_and_the_command_ends_as_interrupted() -> None:
    proc = start(SWALLOWS)
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert out.splitlines() == ["lost", "cancelled again"]


def test_a_second_ctrl_c_ends_the_command_at_once() -> None:
    proc = start(SWALLOWS, recancel=600)  # the runner would not cancel it again in time
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None and proc.stdout.readline() == "lost\n"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130


def test_a_command_that_ends_returns_its_status() -> None:
    proc = start(
        "from praxis.cli.runtime import run_coro\n"
        "async def command():\n"
        "    print('ready', flush=True)\n"
        "    return 3\n"
        "raise SystemExit(run_coro(command()))\n"
    )
    proc.communicate(timeout=20)
    assert proc.returncode == 3
