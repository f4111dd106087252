"""Errors as GraphQL reports them: the same codes as REST problems (``extensions.code``,
from :mod:`praxis.edge.problems`), internal errors masked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import nats.errors
import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionContext

from praxis.bus import BusError
from praxis.edge import problems
from praxis.schemas import (
    InvalidIdError,
    check_token,
)
from praxis.schemas.api import (
    MAX_PAGE,
)

log = logging.getLogger("praxis.edge.graphql")
T = TypeVar("T")

# -- errors ------------------------------------------------------------------------------

_GRAPHQL_CODES = {"BAD_REQUEST": "BAD_USER_INPUT", "PAYLOAD_TOO_LARGE": "BAD_USER_INPUT"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def graphql_error(exc: BaseException) -> GraphQLError:
    """The GraphQL face of a REST problem: the same code, the state, the field."""
    found = problems.problem_for(exc)
    extensions: dict[str, Any] = {"code": _GRAPHQL_CODES.get(found.code, found.code)}
    if found.state is not None:
        extensions["state"] = found.state.value
    if found.errors:
        extensions["field"] = camel(found.errors[0].field.replace(" ", "_"))
    return GraphQLError(found.detail, extensions=extensions, original_error=None)


async def call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except (BusError, InvalidIdError, ValidationError, nats.errors.Error) as e:
        raise graphql_error(e) from e


def check_id(value: str, kind: str) -> str:
    try:
        return check_token(value, kind)
    except InvalidIdError as e:
        raise graphql_error(e) from e


class MaskedErrors(MaskErrors):
    """Strawberry's MaskErrors; what it hides leaves with the code INTERNAL."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked


class Schema(strawberry.Schema):
    """Every error leaves with an ``extensions.code``, and the caller's own mistakes (an
    unknown session, a bad query) are not logged as server errors: unexpected ones are
    logged where they are masked."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if not (error.extensions or {}).get("code"):
                parse = isinstance(error, GraphQLSyntaxError)
                code = "GRAPHQL_PARSE_FAILED" if parse else "GRAPHQL_VALIDATION_FAILED"
                error.extensions = {**(error.extensions or {}), "code": code}


def check_page(first: int) -> None:
    if not 1 <= first <= MAX_PAGE:
        raise GraphQLError(
            f"first must be 1-{MAX_PAGE}", extensions={"code": "BAD_USER_INPUT", "field": "first"}
        )


def should_mask(error: GraphQLError) -> bool:
    """Hide what was not raised on purpose (it is logged), never a user's own mistake."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | InvalidOperationTypeError):
        return False  # e.g. a mutation over the legacy graphql-ws protocol: the caller's
    log.error("unexpected error in a GraphQL resolver", exc_info=original)
    return True
