"""What every command shares: how an error is reported (one line, the error's own exit
code), the options declared once, and parsing durations and states."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from datetime import timedelta
from typing import Annotated

from cyclopts import Parameter
from pydantic import ValidationError

from praxis.bus import BusError, Settings, UnknownAgentError
from praxis.bus.embedded import EmbeddedServerError
from praxis.cli.chat import TurnError
from praxis.cli.term import ERROR, paint
from praxis.schemas import InvalidIdError, SessionState

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Print JSON.")]
AllFlag = Annotated[
    bool,
    Parameter(
        name="--all",
        negative="",
        help="Also the agents used by name only (the benchmark's synthetic).",
    ),
]
"""``--json``: print JSON instead of text (every command that prints data takes it)."""

USER_ERRORS = (BusError, InvalidIdError, TurnError, EmbeddedServerError, ValueError, OSError)


EDGE_FILE = "edge.json"
"""In the data directory while its edge runs ('praxis up''s, or a 'praxis edge' on its
embedded server): ``{"url": ..., "pid": ...}`` (for 'praxis env')."""


def running_edge(settings: Settings) -> str | None:
    """The URL of the data directory's edge, if it is still running."""
    try:
        found = json.loads((settings.data_dir / EDGE_FILE).read_text())
        url, pid = found["url"], int(found["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None


def warn(text: str) -> None:
    """A warning for the person running a server command: a plain line, or a JSON log line
    with ``PRAXIS_LOG_FORMAT=json`` (so that every line of its stderr parses)."""
    if os.environ.get("PRAXIS_LOG_FORMAT", "text").strip().lower() == "json":
        logging.getLogger("praxis.cli").warning(text)
    else:
        print(f"praxis: warning: {text}", file=sys.stderr, flush=True)


def report(e: BaseException) -> int:
    """A user error is one line on stderr, never a traceback (unless PRAXIS_LOG_LEVEL is DEBUG,
    then before it); the exit status is the error's own ``exit_code`` (see
    :mod:`praxis.bus.errors`), 1 unless it says otherwise."""
    if isinstance(e, ValidationError):
        first = e.errors()[0] if e.errors() else {"msg": str(e)}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if e.title == "Settings" and where:  # a variable of the environment: its name
            where = f"PRAXIS_{where.split('.')[0].upper()}"
        msg = str(first.get("msg")).removeprefix("Value error, ")
        text = f"{where + ': ' if where else ''}{msg}"
    else:
        text = str(e)
    if isinstance(e, UnknownAgentError):
        text += _defined_here(e.agent)
    if os.environ.get("PRAXIS_LOG_LEVEL", "").strip().upper() == "DEBUG":
        traceback.print_exception(e, file=sys.stderr)  # where it came from, when asked
    print(paint("praxis: error:", ERROR, sys.stderr), text, file=sys.stderr)
    for note in getattr(e, "__notes__", ()):  # what to do next (the session to resume)
        print(note, file=sys.stderr)
    code: int = getattr(e, "exit_code", 1)  # what the error says (praxis.bus.errors), else 1
    return code


def _defined_here(agent: str) -> str:
    """Why an agent this installation defines can still be unknown: the running workers
    loaded their agents when they started, before it was added."""
    from praxis.workers.agents.registry import registry_for  # only on this error

    logging.disable(logging.ERROR)  # a broken definition is 'praxis agents'' to report
    try:
        local = registry_for(Settings())
    except Exception:  # only a hint: the error itself is already said
        return ""
    finally:
        logging.disable(logging.NOTSET)
    if local.get(agent) is None:
        if not local.errors:
            return ""
        return (
            ". Agents that could not be loaded here: "
            + "; ".join(local.errors)
            + " (see 'praxis agents'; a module of PRAXIS_AGENTS is looked for in the current"
            " folder)"
        )
    return (
        f". {agent!r} is defined here, but the running workers do not offer it: workers load"
        " their agents when they start. Restart them to pick it up (stop 'praxis up' with"
        " Ctrl-C and start it again, or restart your 'praxis worker' processes)"
    )


def parse_state(value: str | None) -> SessionState | None:
    if value is None:
        return None
    try:
        return SessionState(value.upper())
    except ValueError:
        names = ", ".join(s.value for s in SessionState)
        raise ValueError(f"unknown state {value!r}; use one of {names}") from None


_DURATION = re.compile(r"^(\d+)([smhdw])$")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    if text.strip() in ("0", "never"):
        return timedelta(0)
    found = _DURATION.match(text.strip())
    if not found:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h, d or w (e.g. 7d)")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])
