"""Mounting at ``/graphql``: the per-operation context (the caller's client, from its
headers, or over a WebSocket from its ``connection_init``) and the Litestar controller."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from cross_web import HTTPException as StrawberryHTTPException
from litestar.datastructures import State
from litestar.types import Scope as AsgiScope
from strawberry.dataloader import DataLoader
from strawberry.exceptions import ConnectionRejectionError
from strawberry.litestar import make_graphql_controller
from strawberry.types.unset import UNSET, UnsetType

from praxis.bus import Scope as BusScope
from praxis.bus import SessionClient
from praxis.edge.auth import UnauthenticatedError, caller_key, token_from_payload
from praxis.edge.graphql.context import Context, HistoryKey
from praxis.edge.graphql.errors import graphql_error
from praxis.edge.graphql.operations import schema
from praxis.edge.ide import graphiql_html
from praxis.edge.shared import scoped_client
from praxis.schemas import (
    HistoryItem,
    Interface,
    Owner,
)

# -- mounting ----------------------------------------------------------------------------


def histories(client: SessionClient) -> DataLoader[HistoryKey, list[HistoryItem]]:
    """History of many sessions in one request's batch: read together, not row by row."""

    async def load(keys: list[HistoryKey]) -> list[list[HistoryItem] | BaseException]:
        pages = await asyncio.gather(
            *(
                client.history(sid, before=before, limit=first, more=True)
                for sid, first, before in keys
            ),
            return_exceptions=True,
        )
        return [graphql_error(p) if isinstance(p, BaseException) else p[0] for p in pages]

    return DataLoader(load_fn=load)


async def _context(state: State, scope: AsgiScope) -> Context:
    """Per operation: the caller's client, from its headers over HTTP. A WebSocket
    authenticates in its connection_init payload instead (see ``on_ws_connect``)."""
    if str(scope["type"]) == "websocket":
        client: SessionClient = state.client.via(Interface.GRAPHQL)
        if state.auth.on:
            client = client.scoped(_NOBODY)  # until connection_init says who it is
    else:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = (await scoped_client(state, headers)).via(Interface.GRAPHQL)
    return Context(client=client, histories=histories(client), settings=state.settings, state=state)


_ACK = cast(UnsetType, UNSET)  # connection_ack without a payload
_NOBODY = BusScope(Owner(principal="-", tenant="-"))
"""A WebSocket that has not authenticated yet sees nothing."""


async def _on_ws_connect(context: Context) -> UnsetType | dict[str, object] | None:
    """A subscription's credentials, from its connection_init payload (``Authorization``:
    ``Bearer <key or JWT>``, or ``api_key``)."""
    assert context.websocket is not None
    state: State = context.websocket.app.state
    if not state.auth.on:
        return _ACK
    token = token_from_payload(context.connection_params)
    if token is None:
        raise ConnectionRejectionError({"message": "credentials needed in connection_init"})
    try:
        scope = await state.auth.scope_of(token)
    except UnauthenticatedError as e:
        raise ConnectionRejectionError({"message": str(e)}) from None
    client = state.client.via(Interface.GRAPHQL).scoped(scope, actor=scope.owner.principal)
    context.client = client
    context.histories = histories(client)
    context.stream_key = caller_key({"authorization": f"Bearer {token}"}, "")
    return _ACK


def controller(keep_alive: float) -> type:
    """The Litestar controller serving ``/graphql`` (HTTP, both WebSocket protocols)."""
    served = make_graphql_controller(
        schema,
        path="/graphql",
        context_getter=_context,
        keep_alive=True,
        keep_alive_interval=keep_alive,
    )

    class GraphQL(served):  # type: ignore[valid-type,misc]
        def parse_json(self, data: str | bytes) -> Any:
            """Strawberry takes any JSON value and fails (500) on one that is not an
            object: refuse those, and JSON nested too deeply to parse, with a 400."""
            try:
                parsed = super().parse_json(data)
            except RecursionError:
                raise StrawberryHTTPException(400, "JSON nested too deeply") from None
            items = parsed if isinstance(parsed, list) else [parsed]
            if not all(isinstance(item, dict) for item in items):
                raise StrawberryHTTPException(400, "the request body must be a JSON object")
            return parsed

        @property
        def graphql_ide_html(self) -> str:
            return graphiql_html()  # its scripts from the package, not a CDN

        async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
            return await _on_ws_connect(context)

    GraphQL.include_in_schema = False  # GraphQL documents itself (introspection, the SDL)
    return GraphQL
