"""Every error the edge answers with, in one place: ``application/problem+json`` (RFC 9457).

:func:`problem_for` maps what ``bus`` and ``schemas`` raise to a :class:`Problem`; REST
answers it as is and GraphQL takes its ``code`` (the same codes in both). Anything
unexpected is logged here with its traceback and answered 500 without one.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    ValidationException,
)
from pydantic import ValidationError

from bus.errors import (
    AlreadyReplayedError,
    BusError,
    CommandDeadLetteredError,
    CommandIdReusedError,
    CommandTimeoutError,
    DeadLetterNotFoundError,
    IllegalTransitionError,
    InvalidCursorError,
    MessageTooLargeError,
    NotConnectedError,
    ProvisioningError,
    PublishError,
    QuotaExceededError,
    SessionExistsError,
    SessionNotFoundError,
    ToolCallNotWaitingError,
    UnknownAgentError,
)
from edge.auth import LimitError, UnauthenticatedError
from schemas import InvalidIdError
from schemas.api import FieldError, Problem

log = logging.getLogger("praxis.edge")

MEDIA_TYPE = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    429: "Too many requests",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    500: "Internal error",
    503: "Unavailable",
    504: "Timed out",
}
_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "BAD_REQUEST",
    409: "CONFLICT",
    429: "RATE_LIMITED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "BAD_USER_INPUT",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "TIMEOUT",
}


def problem(status: int, detail: str, kind: str, **extra: Any) -> Problem:
    return Problem(
        type=f"urn:praxis:problem:{kind}",
        title=_TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        code=_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL"),
        **extra,
    )


def problem_for(exc: BaseException) -> Problem:  # noqa: C901 - one flat table of cases
    """The problem an error is answered with (500 for anything not known here)."""
    if isinstance(exc, UnauthenticatedError):
        return problem(401, str(exc), "unauthenticated")
    if isinstance(exc, RecursionError):  # the JSON decoders' answer to deep nesting
        return problem(400, "malformed request: JSON nested too deeply", "too-deep")
    if isinstance(exc, LimitError):
        return problem(429, str(exc), exc.kind)
    if isinstance(exc, QuotaExceededError):
        return problem(429, str(exc), "quota-exceeded")
    if isinstance(exc, SessionNotFoundError):
        return problem(404, str(exc), "session-not-found")
    if isinstance(exc, IllegalTransitionError):
        return problem(409, str(exc), "illegal-transition", state=exc.state)
    if isinstance(exc, SessionExistsError):
        return problem(409, str(exc), "session-exists")
    if isinstance(exc, CommandIdReusedError):
        return problem(409, str(exc), "command-id-reused")
    if isinstance(exc, UnknownAgentError):
        errors = [FieldError(field="agent_name", message=str(exc))]
        return problem(422, str(exc), "unknown-agent", errors=errors)
    if isinstance(exc, InvalidIdError):
        return problem(
            400,
            str(exc),
            "invalid-id",
            errors=[FieldError(field=exc.kind.replace(" ", "_"), message=str(exc))],
        )
    if isinstance(exc, InvalidCursorError):
        return problem(400, str(exc), "invalid-cursor")
    if isinstance(exc, MessageTooLargeError):
        return problem(413, str(exc), "too-large")
    if isinstance(exc, CommandTimeoutError):
        if exc.cursor is None:
            return problem(504, str(exc), "command-timeout")
        stored = {"command_id": exc.command_id, "cursor": exc.cursor}
        return problem(504, str(exc), "command-not-answered-yet", **stored)
    if isinstance(exc, CommandDeadLetteredError):
        return problem(500, str(exc), "command-dead-lettered")
    if isinstance(exc, DeadLetterNotFoundError):
        return problem(404, str(exc), "dead-letter-not-found")
    if isinstance(exc, ToolCallNotWaitingError):
        return problem(409, str(exc), "tool-call-not-waiting", waiting=exc.waiting)
    if isinstance(exc, AlreadyReplayedError):
        return problem(409, str(exc), "already-replayed")
    if isinstance(exc, NotConnectedError | PublishError | ProvisioningError):
        return problem(503, str(exc), "bus-unavailable")
    if isinstance(exc, ValidationError):
        return problem(422, "invalid input", "validation", errors=_field_errors(exc))
    if isinstance(exc, BusError):
        return problem(400, str(exc), "bus-error")
    log.error("unexpected error", exc_info=exc)
    return problem(500, "an internal error occurred; it has been logged", "internal")


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(
            field=".".join(str(p) for p in e.get("loc", ())) or "body",
            message=e.get("msg", "invalid"),
        )
        for e in exc.errors()
    ]


def _http_problem(exc: HTTPException) -> Problem:
    """Litestar's own errors: routing, body parsing and validation."""
    if isinstance(exc, ValidationException):
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            errors = _field_errors(cause)
        else:  # query and path parameters: Litestar's own list of {message, key}
            errors = [
                FieldError(field=str(e.get("key") or "body"), message=str(e.get("message")))
                for e in (exc.extra if isinstance(exc.extra, list) else [])
                if isinstance(e, dict)
            ]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or str(exc.detail)
        return problem(422, detail, "validation", errors=errors)
    if isinstance(exc, NotFoundException):
        return problem(404, "no such resource", "no-route")
    status = exc.status_code
    if status == 429:
        return problem(429, "too many requests: slow down (see Retry-After)", "rate-limited")
    if status == 413:
        return problem(413, "request body too large", "too-large")
    if isinstance(exc, ClientException) and status == 400:
        return problem(400, f"malformed request: {exc.detail}", "malformed")
    if status >= 500:
        log.error("server error", exc_info=exc)
        return problem(status, "an internal error occurred; it has been logged", "internal")
    return problem(status, str(exc.detail), "http")


def respond(
    request: Request[Any, Any, Any], found: Problem, extra: dict[str, str] | None = None
) -> Response[Any]:
    found.instance = request.url.path
    headers = dict(extra or {})
    if found.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="praxis"'
    if found.status == 429 and "Retry-After" not in headers:
        reset = headers.get("RateLimit-Reset", "1")
        headers["Retry-After"] = str(max(1, int(reset) if reset.isdigit() else 1))
    return Response(
        content=found.model_dump(mode="json", exclude_none=True),
        status_code=found.status,
        media_type=MEDIA_TYPE,
        headers=headers or None,
    )


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The one exception handler of the edge."""
    if isinstance(exc, HTTPException):
        return respond(request, _http_problem(exc), dict(exc.headers or {}))
    if isinstance(exc, LimitError):
        return respond(request, problem_for(exc), {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, QuotaExceededError):
        return respond(request, problem_for(exc), {"Retry-After": "60"})
    return respond(request, problem_for(exc))
