"""The CLI at a terminal (a real pty): colours, rich tables and progress bars there, and
plain text in pipes and with NO_COLOR, so that scripts get what they parse."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from praxis.bus import Settings
from tests.conftest import env_for, praxis
from tests.terminal import praxis_tty

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    out = env_for(settings)
    for name in ("NO_COLOR", "FORCE_COLOR"):
        out.pop(name, None)
    return out


async def test_a_chat_at_a_terminal_is_in_colour(env: dict[str, str]) -> None:
    chat = await asyncio.to_thread(
        praxis_tty, env, "agent", "run", "echo", "--task-id", "task-tty",
        stdin="hello in colour\n\x04", whole=True,
    )  # fmt: skip
    assert chat.returncode == 0, chat.text
    assert "\x1b[1;36mAgent: \x1b[0m" in chat.tty  # the agent's label, bold cyan
    assert "\x1b[1;32mYou: \x1b[0m" in chat.tty  # the prompt, bold green
    assert "Agent: hello in colour" in chat.text

    listed = await asyncio.to_thread(
        praxis_tty, env, "agent", "list-sessions", "--task-id", "task-tty", whole=True
    )
    assert listed.returncode == 0, listed.text
    assert "\x1b[1m" in listed.tty and "─" in listed.text  # a bold header over a rule
    assert "task-tty" in listed.text and "echo" in listed.text

    plain = await asyncio.to_thread(
        praxis_tty, {**env, "NO_COLOR": "1"}, "agent", "list-sessions", "--task-id", "task-tty",
        whole=True,
    )  # fmt: skip
    assert "\x1b[" not in plain.tty and "─" not in plain.tty
    assert plain.text.split()[:3] == ["SESSION", "TASK", "AGENT"]

    piped = await asyncio.to_thread(praxis, env, "agent", "list-sessions", "--task-id", "task-tty")
    assert "\x1b[" not in piped.stdout and piped.stdout.split()[:3] == ["SESSION", "TASK", "AGENT"]

    failed = await asyncio.to_thread(praxis_tty, env, "agent", "show-session", "nobody")
    assert failed.returncode == 1
    assert "\x1b[1;31mpraxis: error:\x1b[0m" in failed.tty and "unknown session" in failed.text


async def test_import_and_cleanup_show_progress_on_a_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    lines = [
        {"task_id": "task-bar", "messages": [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]}
        for i in range(3)
    ]  # fmt: skip
    file = tmp_path / "three.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    imported = await asyncio.to_thread(
        praxis_tty, env, "agent", "import", str(file), "--agent", "echo"
    )
    assert imported.returncode == 0, imported.text
    assert "Importing 3 conversation(s)" in imported.text and "3/3" in imported.text
    assert len(imported.stdout.splitlines()) == 3  # stdout, a pipe, has only the results
    sids = [line.split("\t")[0] for line in imported.stdout.splitlines()]

    dry = await asyncio.to_thread(
        praxis_tty, env, "agent", "cleanup", "--older-than", "0", "--state", "any", "--dry-run"
    )
    assert dry.returncode == 0, dry.text
    assert "Checking" in dry.text and all(f"would purge {s}" in dry.stdout for s in sids)
    checked = int(dry.text.split("Checking ", 1)[1].split()[0])
    assert checked >= 3 and f"{checked}/{checked}" in dry.text


def _chat_until_prompt_then_ctrl_c(env: dict[str, str]) -> tuple[int, str, float]:
    """A chat at a terminal: wait for its prompt, press Ctrl-C (SIGINT, as the terminal
    sends it), and return its exit status, what it printed and how long it took to end."""
    import contextlib
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT, as_a_shell_starts_it

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "praxis.cli", "agent", "run", "echo"],
        env={"TERM": "xterm-256color", **env},
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        # As a shell starts a foreground command: Ctrl-C at its default. A child inherits
        # an ignored SIGINT, and this process may have come to ignore it (a library's
        # signal handling in an earlier test); Python then leaves it ignored.
        preexec_fn=as_a_shell_starts_it,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while b"You: " not in seen and time.monotonic() < deadline:
        seen += os.read(master, 65536)
    assert b"You: " in seen, seen
    pressed = time.monotonic()
    proc.send_signal(signal.SIGINT)
    # Keep reading while it ends: a terminal's buffer is small, and a process whose
    # output nobody reads blocks on its next write instead of exiting.
    status: int | None = None
    while status is None and time.monotonic() < pressed + 30:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):  # gone: its end of the terminal is closed
                seen += os.read(master, 65536)
        status = proc.poll()
    if status is None:
        proc.kill()
        raise AssertionError(f"still running 30 s after Ctrl-C: {seen.decode(errors='replace')}")
    took = time.monotonic() - pressed
    try:
        while chunk := os.read(master, 65536):
            seen += chunk
    except OSError:  # the process is gone: its end of the terminal is closed
        pass
    os.close(master)
    return status, seen.decode(errors="replace"), took


async def test_ctrl_c_at_the_chat_prompt_ends_the_chat_at_once_with_the_hint(
    env: dict[str, str],
) -> None:
    status, out, took = await asyncio.to_thread(_chat_until_prompt_then_ctrl_c, env)
    assert status == 130, out
    assert "continue it with: praxis agent resume ses_" in out, out
    # It ended with no Enter typed (before, it waited for one: proc.wait above timed out).
    assert took < 30
