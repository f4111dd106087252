"""Every error the edge answers with, in one place: ``application/problem+json`` (RFC 9457).

:func:`problem_for` answers an error with what it says of itself (``http_status``,
``problem_type``, ``problem_fields()``: see ``praxis.bus.errors``); REST answers the problem as is
and GraphQL takes its ``code`` (the same codes in both). Anything unexpected is logged here
with its traceback and answered 500 without one.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol, runtime_checkable

import nats.errors
from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    ValidationException,
)
from pydantic import ValidationError

from praxis.schemas.api import FieldError, Problem

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


@runtime_checkable
class Answerable(Protocol):
    """An error that says how it is answered (``bus`` errors, the edge's own, invalid ids)."""

    http_status: int
    problem_type: str


def problem_for(exc: BaseException) -> Problem:
    """The problem an error is answered with: what the error says of itself (its status,
    type and fields); 500 for anything that says nothing."""
    if isinstance(exc, RecursionError):  # the JSON decoders' answer to deep nesting
        return problem(400, "malformed request: JSON nested too deeply", "too-deep")
    if isinstance(exc, ValidationError):
        return problem(422, "invalid input", "validation", errors=_field_errors(exc))
    if isinstance(exc, Answerable):
        fields: dict[str, Any] = getattr(exc, "problem_fields", dict)()
        return problem(exc.http_status, str(exc), exc.problem_type, **fields)
    if isinstance(exc, nats.errors.Error):  # lost or slow while the request was on its way
        return problem(
            503,
            f"the bus did not answer ({type(exc).__name__}: {exc}); try again shortly",
            "bus-unavailable",
        )
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
        found, headers = _http_problem(exc), dict(exc.headers or {})
    else:
        retry_after = getattr(exc, "retry_after", None)  # a limit says when to try again
        found = problem_for(exc)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if request.url.path.startswith("/v1/"):
        return openai_error(found, exc, headers)
    return respond(request, found, headers or None)


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_body(
    found: Problem, param: str | None = None, code: str | None = None
) -> tuple[int, dict[str, Any]]:
    """A problem as the OpenAI API says errors: its status (an invalid field is 400 there,
    not 422) and ``{"error": {message, type, param, code}}``."""
    status = 400 if found.status == 422 else found.status
    fields = found.errors or []
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    error = {
        "message": found.detail,
        "type": kind,
        "param": param or (_param(fields[0].field) if fields else None),
        "code": code or found.code.lower(),
    }
    return status, {"error": error}


def _param(field: str) -> str:
    """A field's path without pydantic's names of union branches (``input.constrained-str``
    is ``input``)."""
    kept = [p for p in field.split(".") if p.isdigit() or re.fullmatch(r"[A-Za-z_]\w*", p)]
    return ".".join(p for p in kept if p not in ("str", "int", "list", "dict")) or field


def openai_error(found: Problem, exc: BaseException, headers: dict[str, str]) -> Response[Any]:
    """An error of the ``/v1`` (OpenAI) routes, in the shape and with the statuses the
    OpenAI SDKs map to their exception classes."""
    status, body = openai_body(found, getattr(exc, "param", None), getattr(exc, "code", None))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="praxis"'
    if status == 429 and "Retry-After" not in headers:
        headers["Retry-After"] = "1"
    return Response(content=body, status_code=status, headers=headers or None)
