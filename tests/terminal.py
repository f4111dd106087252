"""Run the CLI with a real pseudo-terminal (pty) on its stderr, or on all three streams, to
see what a person at a terminal sees: colours, rich tables, progress bars."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass

from tests.conftest import ROOT

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass
class TtyRun:
    returncode: int
    stdout: str
    """What went to stdout when it was a pipe (empty when it was the terminal)."""
    tty: str
    """Everything written to the terminal, escape sequences included."""

    @property
    def text(self) -> str:
        """The terminal's output without escape sequences."""
        return ANSI.sub("", self.tty).replace("\r", "")


def praxis_tty(
    env: dict[str, str], *args: str, stdin: str = "", whole: bool = False, timeout: float = 120
) -> TtyRun:
    """``praxis ARGS`` with stderr on a terminal of 120 columns (and stdin and stdout too if
    ``whole``; ``stdin`` is then typed at it)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    env = {"TERM": "xterm-256color", **env}
    pipe = None if whole else subprocess.PIPE
    proc = subprocess.Popen(
        [sys.executable, "-m", "praxis.cli", *args],
        env=env,
        cwd=ROOT,
        stdin=slave if whole else subprocess.PIPE,
        stdout=slave if whole else pipe,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal's other end is closed: the process is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if whole:
        os.write(master, stdin.encode())
        out = ""
        proc.wait(timeout)
    else:
        out, _ = proc.communicate(stdin.encode(), timeout=timeout)
        out = out.decode()
    reader.join(10)
    os.close(master)
    return TtyRun(proc.returncode, out, b"".join(chunks).decode(errors="replace"))
