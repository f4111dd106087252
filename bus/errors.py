"""The errors of the bus package, each carrying the decisions it drives.

Two roots under :class:`BusError`: :class:`TransientError` (the bus could not do it now:
tried again, never the command's fault) and :class:`RefusalError` (refused for what was
asked: never tried again). Every error names its HTTP status and problem type
(``http_status``, ``problem_type``), the extra fields of its problem
(:meth:`BusError.problem_fields`) and the CLI's exit status: the edge and the CLI read
them, with no table of cases of their own.
"""

from __future__ import annotations

from typing import Any

from praxis.schemas import InvalidIdError, SessionState


class BusError(Exception):
    """Root of everything ``bus`` raises on purpose."""

    http_status = 500
    problem_type = "bus-error"
    transient = False
    """Whether the same thing may work if tried again (the worker retries it)."""
    exit_code = 1

    def problem_fields(self) -> dict[str, Any]:
        """What a problem answer says beside the message (the current state, say)."""
        return {}


class TransientError(BusError):
    """The bus could not do it now (unreachable, a leader change, a lease or fence lost to
    another owner): tried again, never counted against the command."""

    http_status = 503
    problem_type = "bus-unavailable"
    transient = True


class RefusalError(BusError):
    """Refused for what was asked (an unknown session, a state that does not allow it, bad
    input, a limit): asking again gets the same answer."""

    http_status = 400


class NotConnectedError(TransientError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach NATS at {url}: {reason}")
        self.url = url


class ProvisioningError(BusError):
    """The stream, buckets or consumer Praxis needs cannot be set up as they are."""

    http_status = 503
    problem_type = "bus-unavailable"


class ProvisioningMismatchError(ProvisioningError):
    """An existing stream, bucket or consumer differs from what Praxis needs."""

    def __init__(self, kind: str, name: str, differences: dict[str, tuple[object, object]]) -> None:
        diff = "; ".join(
            f"{k}: is {have!r}, needs {want!r}" for k, (have, want) in differences.items()
        )
        super().__init__(
            f"{kind} {name!r} exists with a different configuration ({diff}); "
            "Praxis does not rewrite it: change or remove it yourself, or point Praxis "
            "at other names through PRAXIS_* settings"
        )
        self.kind = kind
        self.name = name
        self.differences = differences


class SessionNotFoundError(RefusalError):
    http_status = 404
    problem_type = "session-not-found"

    def __init__(self, session_id: str, why: str = "") -> None:
        super().__init__(f"unknown session {session_id!r}" + (f": {why}" if why else ""))
        self.session_id = session_id


class SessionExistsError(RefusalError):
    http_status = 409
    problem_type = "session-exists"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id


class UnknownAgentError(RefusalError):
    http_status = 422
    problem_type = "unknown-agent"

    def __init__(self, agent: str, known: list[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown agent {agent!r}; known agents: {names}")
        self.agent = agent
        self.known = sorted(known)

    def problem_fields(self) -> dict[str, Any]:
        return {"errors": [{"field": "agent_name", "message": str(self)}]}


class IllegalTransitionError(RefusalError):
    """The command is not allowed in the session's current state."""

    http_status = 409
    problem_type = "illegal-transition"

    def __init__(self, session_id: str, action: str, state: SessionState, reason: str = "") -> None:
        msg = reason or f"cannot {action} session {session_id!r}: it is {state.value}"
        super().__init__(msg)
        self.session_id = session_id
        self.action = action
        self.state = state

    def problem_fields(self) -> dict[str, Any]:
        return {"state": self.state}


class ToolCallNotWaitingError(RefusalError):
    """An approval or denial for a tool call the session is not waiting on."""

    http_status = 409
    problem_type = "tool-call-not-waiting"

    def __init__(self, session_id: str, call_id: str, waiting: list[str]) -> None:
        listed = ", ".join(waiting) if waiting else "none"
        super().__init__(
            f"session {session_id!r} has no tool call {call_id!r} waiting for approval "
            f"(waiting: {listed})"
        )
        self.session_id = session_id
        self.call_id = call_id
        self.waiting = waiting

    def problem_fields(self) -> dict[str, Any]:
        return {"waiting": self.waiting}


class QuotaExceededError(RefusalError):
    """An owner has as many live sessions as it may (``PRAXIS_MAX_SESSIONS_PER_OWNER``)."""

    http_status = 429
    problem_type = "quota-exceeded"
    retry_after = 60

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(
            f"{owner} has {limit} sessions that have not ended, the most allowed: complete "
            "some first"
        )
        self.limit = limit


class CommandTimeoutError(BusError):
    """A command was not answered in time. With a ``cursor`` it is stored, and will be
    answered once a worker takes it: follow the session's events after ``cursor``."""

    http_status = 504
    problem_type = "command-timeout"

    def __init__(
        self,
        session_id: str,
        command_id: str,
        seconds: float,
        *,
        cursor: int | None = None,
        live_workers: int | None = None,
    ) -> None:
        if cursor is None:  # a request that is not stored (a purge)
            msg = (
                f"no worker answered the {command_id} request for session {session_id!r} "
                f"within {seconds:g}s: is a worker running? (praxis workers)"
            )
        else:
            if live_workers == 0:
                why = (
                    "no worker is running (praxis workers lists none); it is answered once "
                    "one starts"
                )
            elif live_workers is None:
                why = "the workers could not be asked whether they are running"
            else:
                why = (
                    f"{live_workers} live worker(s) have not taken it yet (more workers, or a "
                    "higher PRAXIS_WORKER_CONCURRENCY, take more at once); it is still queued"
                )
            msg = (
                f"command {command_id} for session {session_id!r} is stored but not answered "
                f"after {seconds:.0f}s: {why}. Follow the session's events after cursor "
                f"{cursor} for its outcome; do not send it again without its command id"
            )
        super().__init__(msg)
        self.session_id = session_id
        self.command_id = command_id
        self.cursor = cursor
        self.live_workers = live_workers
        if cursor is not None:
            self.problem_type = "command-not-answered-yet"

    def problem_fields(self) -> dict[str, Any]:
        if self.cursor is None:
            return {}
        return {"command_id": self.command_id, "cursor": self.cursor}


class CommandIdReusedError(RefusalError):
    """A command id this session has already stored for a different command: a command
    id is an idempotency key, so the second command is not stored."""

    http_status = 409
    problem_type = "command-id-reused"

    def __init__(self, session_id: str, command_id: str) -> None:
        super().__init__(
            f"command id {command_id!r} was already used in session {session_id!r} for a "
            "different command; a command id may only be repeated to retry the same command"
        )
        self.session_id = session_id
        self.command_id = command_id


class FenceRejectedError(TransientError):
    """An append was refused because the session moved on: the writer is no longer its owner."""

    http_status = 409
    problem_type = "fence-rejected"

    def __init__(self, session_id: str, expected: int, detail: str) -> None:
        super().__init__(
            f"append to session {session_id!r} refused "
            f"(expected last sequence {expected}): {detail}"
        )
        self.session_id = session_id
        self.expected = expected


class MessageTooLargeError(RefusalError):
    http_status = 413
    problem_type = "too-large"

    def __init__(self, size: int, limit: int | None) -> None:
        bound = f"the limit of {limit} bytes" if limit else "the stream's message size limit"
        super().__init__(f"message of {size} bytes exceeds {bound}")
        self.size = size
        self.limit = limit


MESSAGE_TOO_LARGE = 10054
"""JetStream's error code for a message over the stream's ``max_msg_size``."""


def check_size(payload: bytes, headers: dict[str, str], limit: int) -> None:
    """Raise :class:`MessageTooLargeError` if the message with its headers is over ``limit``:
    JetStream counts the headers against the stream's ``max_msg_size`` too."""
    size = len(payload)
    if headers:
        size += 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())  # NATS/1.0 block
    if size > limit:
        raise MessageTooLargeError(size, limit)


class InvalidCursorError(RefusalError, ValueError):
    """A paging or event cursor that does not come from us or points past the end."""

    problem_type = "invalid-cursor"


class DeadLetterNotFoundError(RefusalError):
    http_status = 404
    problem_type = "dead-letter-not-found"

    def __init__(self, letter_id: str) -> None:
        super().__init__(f"no dead letter {letter_id!r} (see 'praxis dead-letters')")
        self.letter_id = letter_id


class AlreadyReplayedError(RefusalError):
    http_status = 409
    problem_type = "already-replayed"

    def __init__(self, letter_id: str, command_id: str | None) -> None:
        super().__init__(f"dead letter {letter_id!r} was already replayed as {command_id}")
        self.letter_id = letter_id
        self.command_id = command_id


class CommandDeadLetteredError(BusError):
    """The command kept failing on the workers and was parked as a dead letter."""

    http_status = 500
    problem_type = "command-dead-lettered"

    def __init__(self, session_id: str, letter_id: str, reason: str) -> None:
        super().__init__(
            f"the command to session {session_id!r} kept failing and was parked as dead "
            f"letter {letter_id} ({reason})"
        )
        self.session_id = session_id
        self.letter_id = letter_id


class PublishError(TransientError):
    """JetStream did not store a publish, after retries."""


class StreamEndedError(TransientError):
    """A follower was ended by its process (an edge that is stopping): what it followed
    goes on, and is followed again from the last cursor it delivered."""

    problem_type = "stream-ended"

    def __init__(self, session_id: str, cursor: int, why: str) -> None:
        super().__init__(
            f"{why}: the stream of session {session_id!r} ended; the session goes on: "
            f"follow it again after cursor {cursor} (Last-Event-ID), here once it is back "
            "or through another edge"
        )
        self.session_id = session_id
        self.cursor = cursor

    def problem_fields(self) -> dict[str, Any]:
        return {"cursor": self.cursor}


__all__ = [
    "AlreadyReplayedError",
    "BusError",
    "CommandDeadLetteredError",
    "CommandIdReusedError",
    "CommandTimeoutError",
    "DeadLetterNotFoundError",
    "FenceRejectedError",
    "IllegalTransitionError",
    "InvalidCursorError",
    "InvalidIdError",
    "MessageTooLargeError",
    "NotConnectedError",
    "ProvisioningError",
    "ProvisioningMismatchError",
    "PublishError",
    "RefusalError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StreamEndedError",
    "TransientError",
    "UnknownAgentError",
]
