"""Identifiers that become NATS subject tokens, and how to make new ones.

Every id that ends up inside a subject (session ids, task ids, agent names, worker ids)
is a single token of ``[A-Za-z0-9_-]`` with a bounded length: a ``.``, ``*``, ``>`` or
white space in an id would let a caller address other sessions' subjects.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated, Any, get_args

from pydantic import AfterValidator

MAX_TOKEN_LENGTH = 128
TOKEN_PATTERN = rf"^[A-Za-z0-9_-]{{1,{MAX_TOKEN_LENGTH}}}$"
"""A subject token, as a JSON Schema pattern (for API documents)."""
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class InvalidIdError(ValueError):
    """A value that must be a subject token is not one (answered 400, naming the field)."""

    http_status = 400
    problem_type = "invalid-id"

    def __init__(self, kind: str, value: object) -> None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "...'"
        super().__init__(
            f"invalid {kind} {shown}: use 1-{MAX_TOKEN_LENGTH} characters "
            "from A-Z, a-z, 0-9, '_' and '-'"
        )
        self.kind = kind
        self.value = value

    def problem_fields(self) -> dict[str, object]:
        return {"errors": [{"field": self.kind.replace(" ", "_"), "message": str(self)}]}


def is_token(value: object) -> bool:
    """True when ``value`` can be used as one subject token."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TOKEN_LENGTH
        and _TOKEN.fullmatch(value) is not None
    )


def check_token(value: str, kind: str = "id") -> str:
    """Return ``value`` unchanged, or raise :class:`InvalidIdError`."""
    if not is_token(value):
        raise InvalidIdError(kind, value)
    return value


def _session_token(value: str) -> str:
    return check_token(value, "session id")


def _task_token(value: str) -> str:
    return check_token(value, "task id")


def _agent_token(value: str) -> str:
    return check_token(value, "agent name")


def _command_token(value: str) -> str:
    return check_token(value, "command id")


_TOKEN_CHECKS = {_session_token, _task_token, _agent_token, _command_token}


def is_token_type(annotation: object, metadata: list[Any] | None = None) -> bool:
    """True when a field's type is one of the ids below (optional or not)."""
    found = list(metadata or [])
    for arg in get_args(annotation):
        if arg is not None:
            found.extend(getattr(arg, "__metadata__", ()))
    found.extend(getattr(annotation, "__metadata__", ()))
    return any(isinstance(m, AfterValidator) and m.func in _TOKEN_CHECKS for m in found)


SessionId = Annotated[str, AfterValidator(_session_token)]
TaskId = Annotated[str, AfterValidator(_task_token)]
AgentName = Annotated[str, AfterValidator(_agent_token)]
CommandId = Annotated[str, AfterValidator(_command_token)]


def new_id(prefix: str) -> str:
    """A time-ordered random id such as ``ses_0192f3a4b5c6d7e8f9a0b1c2``.

    12 hex digits of milliseconds then 12 random hex digits: ids sort by creation time and
    48 random bits make a collision within one millisecond negligible.
    """
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"
