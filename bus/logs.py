"""Logging with the session and task a line is about: every record carries ``session_id``
and ``task_id`` (``None`` where there is none), taken from context variables that the
worker sets for each session it runs and the session client for each session it is asked
about; ``PRAXIS_LOG_FORMAT=json`` writes one JSON object per line."""

from __future__ import annotations

import contextvars
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "praxis_session_id", default=None
)
task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("praxis_task_id", default=None)

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"


def about(session: str | None, task: str | None = None) -> None:
    """The session (and task) what follows in this task is about."""
    session_id.set(session)
    task_id.set(task)


class Ids(logging.Filter):
    """Adds ``session_id`` and ``task_id`` to every record (and ``ids``, for text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sid = getattr(record, "session_id", None) or session_id.get()
        tid = getattr(record, "task_id", None) or task_id.get()
        record.session_id, record.task_id = sid, tid
        parts = [f"session={sid}" if sid else "", f"task={tid}" if tid else ""]
        shown = " ".join(p for p in parts if p)
        record.ids = f" [{shown}]" if shown else ""
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, session and task ids,
    and the exception's traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "session_id": getattr(record, "session_id", None),
            "task_id": getattr(record, "task_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``), ids on every line."""
    if fmt not in FORMATS:
        raise ValueError(f"PRAXIS_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler()
    handler.addFilter(Ids())
    handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def say(text: str, logger: str = "praxis") -> None:
    """A line for the person running a server (where it listens, that it stopped) on
    stdout: as is, or with ``PRAXIS_LOG_FORMAT=json`` as a JSON log line (level INFO, shown
    whatever the log level), so that a log collector reading the output gets JSON only."""
    if os.environ.get("PRAXIS_LOG_FORMAT", "text").strip().lower() == "json":
        record = logging.LogRecord(logger, logging.INFO, __file__, 0, text, None, None)
        text = JsonLines().format(record)
    print(text, flush=True)
