"""The Litestar app of the edge: REST, SSE and OpenAPI over one ``SessionClient``.

The edge keeps no session state: any number of edge processes can serve the same
sessions. ``create_app(settings, bus)`` uses a connection the caller manages (``praxis
edge`` does, with the embedded server when there is no ``PRAXIS_NATS_URL``);
``create_app(settings)`` connects to ``PRAXIS_NATS_URL`` itself, for ASGI servers run on
their own: ``uvicorn --factory praxis.edge.app:from_env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, cast

from litestar import HttpMethod, Litestar, MediaType, Request, Response, get, head
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.types import ASGIApp, Receive, Send
from litestar.types import Scope as ASGIScope
from pydantic import BaseModel

import praxis.edge.openai_compat
import praxis.edge.sessions
import praxis.schemas
import praxis.schemas.api
from praxis.bus import (
    Bus,
    NotConnectedError,
    Role,
    SessionClient,
    Settings,
    asyncapi,
    connect,
    metrics,
    tracing,
)
from praxis.edge import graphql, ide, problems
from praxis.edge.auth import Authenticator, caller_key
from praxis.edge.availability import available
from praxis.edge.guard import guarded
from praxis.edge.openai_compat import OpenAIResponses
from praxis.edge.sessions import AgentSessions, list_agents
from praxis.schemas import Interface
from praxis.schemas.api import Health, Problem
from praxis.schemas.ids import TOKEN_PATTERN, is_token_type

VERSION = "0.1.0"
STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    # The page's script and style are files of this origin; nothing inline, no frames.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


PAGE_FILES = {  # Litestar adds "; charset=utf-8" to text types itself
    "index.html": "text/html",
    "chat.js": "text/javascript",
    "chat.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


def _page(name: str) -> Response[bytes]:
    media = PAGE_FILES.get(name)
    if media is None:
        raise NotFoundException(f"no file {name[:40]!r} here")
    return Response((STATIC / name).read_bytes(), media_type=media, headers=PAGE_HEADERS)


@get("/", include_in_schema=False)
async def chat_page() -> Response[bytes]:
    """The chat page (edge/static): sessions, live replies, approvals, in a browser."""
    return _page("index.html")


@head(
    "/",
    include_in_schema=False,
    media_type=PAGE_FILES["index.html"],
    response_headers={**PAGE_HEADERS, "Content-Length": str(len(_page("index.html").content))},
)
async def chat_page_head() -> None:
    """``HEAD /``: the headers ``GET /`` sends, without the page (uptime checks use it)."""


@get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response[bytes]:
    """Browsers ask for it on every page: the page's icon (an SVG, which they all show)."""
    return _page("favicon.svg")


@get("/ui/{name:str}", include_in_schema=False)
async def page_file(name: str) -> Response[bytes]:
    """The chat page's script and style (only those: nothing else is served from disk)."""
    return _page(name)


@get("/healthz", tags=["health"], summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics of this edge",
    media_type=metrics.CONTENT_TYPE,
)
async def metrics_handler() -> Response[bytes]:
    return Response(metrics.edge_exposition(), media_type=metrics.CONTENT_TYPE)


@get("/asyncapi.json", tags=["health"], summary="The bus contract (AsyncAPI 3.0)")
async def asyncapi_handler(state: State) -> dict[str, Any]:
    """Every subject Praxis uses on NATS, what travels on it and who sends it: for services
    that publish commands or follow sessions on the bus themselves."""
    doc: dict[str, Any] | None = state.get("asyncapi")
    if doc is None:
        doc = state["asyncapi"] = asyncapi.document(state["settings"])
    return doc


@get(
    "/readyz",
    tags=["health"],
    summary="NATS is reachable and the stream is there",
    responses={503: ResponseSpec(Problem, media_type=problems.MEDIA_TYPE)},
)
async def readyz(state: State, request: Request[Any, Any, Any]) -> Response[Any]:
    bus: Bus = state.bus
    try:
        if not bus.nc.is_connected:
            raise ConnectionError("not connected to NATS")
        async with asyncio.timeout(bus.timeout):
            await bus.js.stream_info(bus.settings.stream)
    except Exception as e:  # anything here means: not ready
        found = problems.problem(503, f"not ready: {e or type(e).__name__}", "not-ready")
        return problems.respond(request, found)
    return Response(Health(status="ready"), media_type=MediaType.JSON)


def _traced(app: ASGIApp) -> ASGIApp:
    """Each request in the trace its caller sent (W3C ``traceparent``), when tracing is on:
    the commands it sends, and the worker's handling of them, join that trace."""

    async def middleware(scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not tracing.enabled():
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracing.continued(headers):
            await app(scope, receive, send)

    return middleware


def create_app(settings: Settings, bus: Bus | None = None) -> Litestar:
    """The edge app; without ``bus`` it connects to ``settings.nats_url`` while it runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            used = bus
            if used is None:
                if not settings.nats_url:
                    raise NotConnectedError(
                        "(unset)",
                        "set PRAXIS_NATS_URL, or run 'praxis edge' to use the embedded server",
                    )
                used = await stack.enter_async_context(
                    connect(settings, settings.nats_url, "praxis-edge", Role.EDGE)
                )
            app.state.bus = used
            app.state.client = SessionClient(used, Interface.API)
            app.state.auth = Authenticator(settings, used)
            yield

    # First the guard (the Host, the page a request comes from, JSON bodies), then the rest.
    middleware: list[Any] = [
        partial(guarded, cors_origins=settings.cors_origins),
        available,
        _traced,
    ]
    cors = (
        CORSConfig(
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "traceparent"],
        )
        if settings.cors_origins
        else None
    )
    if settings.auth == "on" and settings.rate_limit > 0:
        # Per caller (credential, or address without one); health and docs are not counted.
        limit = RateLimitConfig(
            rate_limit=("second", settings.rate_limit),
            identifier_for_request=_caller,
            exclude=["/healthz", "/readyz", "/metrics", "/asyncapi.json", "/schema", "^/$", "/ui/"],
        )
        middleware.append(limit.middleware)
    return Litestar(
        logging_config=None,  # logging is the process's (PRAXIS_LOG_FORMAT, the ids)
        route_handlers=[
            AgentSessions,
            list_agents,
            chat_page,
            chat_page_head,
            favicon,
            page_file,
            ide.vendor_file,
            OpenAIResponses,
            healthz,
            readyz,
            metrics_handler,
            asyncapi_handler,
            graphql.controller(settings.sse_keepalive),
        ],
        middleware=middleware,
        cors_config=cors,
        lifespan=[lifespan],
        on_startup=[finish_document],
        state=State({"settings": settings}),
        exception_handlers={Exception: problems.handle},
        request_max_body_size=settings.edge_max_body,
        openapi_config=OpenAPIConfig(
            title="Praxis",
            version=VERSION,
            description="Conversational agent sessions on NATS JetStream: create, talk, "
            "follow live (Server-Sent Events), suspend, resume, from any interface.",
            path="/schema",
            render_plugins=[ide.swagger()],
        ),
        debug=False,
    )


def _caller(request: Request[Any, Any, Any]) -> str:
    return caller_key(request.headers, request.client.host if request.client else "?")


def finish_document(app: Litestar) -> None:
    """What Litestar's OpenAPI document leaves out, added once at start-up."""
    _describe_models(app)
    praxis.edge.openai_compat.finish_document(app.openapi_schema.paths or {})
    _complete_operations(app)


def _describe_models(app: Litestar) -> None:
    """Give each model in the OpenAPI document its docstring, and say which take no other
    fields than theirs (Litestar leaves both out)."""
    known = {
        name: cls
        for module in (
            praxis.schemas,
            praxis.schemas.api,
            praxis.edge.sessions,
            praxis.edge.openai_compat,
        )
        for name, cls in vars(module).items()
        if inspect.isclass(cls) and issubclass(cls, BaseModel) and cls.__doc__
    }
    components = app.openapi_schema.components.schemas or {}
    for name, schema in components.items():
        cls = known.get(name)
        if cls is None:
            continue
        if cls.__doc__ and not schema.description:
            schema.description = inspect.cleandoc(cls.__doc__)
        if cls.model_config.get("extra") == "forbid":
            schema.additional_properties = False
        for field_name, info in cls.model_fields.items():
            prop = (schema.properties or {}).get(info.alias or field_name)
            if isinstance(prop, Schema) and is_token_type(info.annotation, info.metadata):
                prop.pattern = TOKEN_PATTERN


_EVERYWHERE = {
    "400": "A `Host` that is not the edge's own name, when it listens on loopback.",
    "403": "A request from a web page of another origin (see PRAXIS_CORS_ORIGINS).",
}
_WITH_A_BODY = {
    "413": "Request body over the limit (PRAXIS_EDGE_MAX_BODY).",
    "415": "A body (or a Content-Type) that is not JSON.",
}


def _complete_operations(app: Litestar) -> None:
    """What the edge answers that Litestar's document leaves out: the guard's refusals on
    every operation (edge/guard.py), the size and type refusals where there is a body, a
    body that may be left out (suspend's reason, say) as not required, and an SSE answer as
    the text stream it is (its `data:` lines are EventEnvelopes)."""
    for path, item in (app.openapi_schema.paths or {}).items():
        if path.startswith("/v1/"):
            continue  # the OpenAI routes: see praxis.edge.openai_compat.finish_document
        for method in ("get", "post", "delete"):
            op: Operation | None = getattr(item, method)
            if op is None:
                continue
            responses = op.responses = op.responses or {}
            extra = _EVERYWHERE | (_WITH_A_BODY if op.request_body is not None else {})
            for status, why in extra.items():
                responses.setdefault(status, _problem_response(why))
            if isinstance(op.request_body, RequestBody) and _body_optional(app, path, method):
                op.request_body.required = False
            for answer in responses.values():
                stream = getattr(answer, "content", None) or {}
                if "text/event-stream" in stream:
                    stream["text/event-stream"] = OpenAPIMediaType(schema=_SSE_EVENT)


_SSE_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    description="One message of the stream (as OpenAPI 3.2 describes a stream's items): "
    "`data` is an EventEnvelope as JSON (a Problem for the `error` event a stream may end "
    "with); `id` its cursor (none for token deltas and `command.accepted`); `event` its type.",
    properties={
        "event": Schema(type=OpenAPIType.STRING),
        "id": Schema(type=OpenAPIType.STRING, pattern="^[0-9]+$"),
        "data": Schema(
            type=OpenAPIType.STRING,
            content_media_type="application/json",
            content_schema=Schema(
                any_of=[
                    Reference(ref="#/components/schemas/EventEnvelope"),
                    Reference(ref="#/components/schemas/Problem"),
                ]
            ),
        ),
    },
    required=["data"],
)


def _problem_response(description: str) -> OpenAPIResponse:
    problem = Reference(ref="#/components/schemas/Problem")
    return OpenAPIResponse(
        description=description, content={problems.MEDIA_TYPE: OpenAPIMediaType(schema=problem)}
    )


def _body_optional(app: Litestar, path: str, method: str) -> bool:
    for template, handlers in app.route_handler_method_map.items():
        handler = handlers.get(cast(HttpMethod, method.upper()))
        if re.sub(r":\w+}", "}", template) == path and handler is not None:
            data = inspect.signature(handler.fn).parameters.get("data")
            return data is not None and data.default is None
    return False


def from_env() -> Litestar:
    """App factory for ASGI servers: settings from ``PRAXIS_*``."""
    return create_app(Settings())
