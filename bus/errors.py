"""The errors of the bus package; the edge and the CLI map them in one place each."""

from __future__ import annotations

from schemas import InvalidIdError, SessionState


class BusError(Exception):
    """Root of everything ``bus`` raises on purpose."""


class NotConnectedError(BusError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach NATS at {url}: {reason}")
        self.url = url


class ProvisioningError(BusError):
    """The stream, buckets or consumer Praxis needs cannot be set up as they are."""


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


class SessionNotFoundError(BusError):
    def __init__(self, session_id: str, why: str = "") -> None:
        super().__init__(f"unknown session {session_id!r}" + (f": {why}" if why else ""))
        self.session_id = session_id


class SessionExistsError(BusError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id


class UnknownAgentError(BusError):
    def __init__(self, agent: str, known: list[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown agent {agent!r}; known agents: {names}")
        self.agent = agent
        self.known = sorted(known)


class IllegalTransitionError(BusError):
    """The command is not allowed in the session's current state."""

    def __init__(self, session_id: str, action: str, state: SessionState, reason: str = "") -> None:
        msg = reason or f"cannot {action} session {session_id!r}: it is {state.value}"
        super().__init__(msg)
        self.session_id = session_id
        self.action = action
        self.state = state


class ToolCallNotWaitingError(BusError):
    """An approval or denial for a tool call the session is not waiting on."""

    def __init__(self, session_id: str, call_id: str, waiting: list[str]) -> None:
        listed = ", ".join(waiting) if waiting else "none"
        super().__init__(
            f"session {session_id!r} has no tool call {call_id!r} waiting for approval "
            f"(waiting: {listed})"
        )
        self.session_id = session_id
        self.call_id = call_id
        self.waiting = waiting


class QuotaExceededError(BusError):
    """An owner has as many live sessions as it may (``PRAXIS_MAX_SESSIONS_PER_OWNER``)."""

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(
            f"{owner} has {limit} sessions that have not ended, the most allowed: complete "
            "some first"
        )
        self.limit = limit


class CommandTimeoutError(BusError):
    """A command was not answered in time. With a ``cursor`` it is stored, and will be
    answered once a worker takes it: follow the session's events after ``cursor``."""

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


class CommandIdReusedError(BusError):
    """A command id this session has already stored for a different command: a command
    id is an idempotency key, so the second command is not stored."""

    def __init__(self, session_id: str, command_id: str) -> None:
        super().__init__(
            f"command id {command_id!r} was already used in session {session_id!r} for a "
            "different command; a command id may only be repeated to retry the same command"
        )
        self.session_id = session_id
        self.command_id = command_id


class FenceRejectedError(BusError):
    """An append was refused because the session moved on: the writer is no longer its owner."""

    def __init__(self, session_id: str, expected: int, detail: str) -> None:
        super().__init__(
            f"append to session {session_id!r} refused "
            f"(expected last sequence {expected}): {detail}"
        )
        self.session_id = session_id
        self.expected = expected


class MessageTooLargeError(BusError):
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


class InvalidCursorError(BusError, ValueError):
    """A paging or event cursor that does not come from us or points past the end."""


class DeadLetterNotFoundError(BusError):
    def __init__(self, letter_id: str) -> None:
        super().__init__(f"no dead letter {letter_id!r} (see 'praxis dead-letters')")
        self.letter_id = letter_id


class AlreadyReplayedError(BusError):
    def __init__(self, letter_id: str, command_id: str | None) -> None:
        super().__init__(f"dead letter {letter_id!r} was already replayed as {command_id}")
        self.letter_id = letter_id
        self.command_id = command_id


class CommandDeadLetteredError(BusError):
    """The command kept failing on the workers and was parked as a dead letter."""

    def __init__(self, session_id: str, letter_id: str, reason: str) -> None:
        super().__init__(
            f"the command to session {session_id!r} kept failing and was parked as dead "
            f"letter {letter_id} ({reason})"
        )
        self.session_id = session_id
        self.letter_id = letter_id


class PublishError(BusError):
    """JetStream did not store a publish, after retries."""


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
    "SessionExistsError",
    "SessionNotFoundError",
    "UnknownAgentError",
]
