"""What the REST controllers (``/agent-sessions``, ``/v1``) and the GraphQL resolvers
share: the caller's client, the controllers' dependencies and the paging of session
lists. They import it; none imports another."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from praxis.bus import Page, SessionClient, Settings
from praxis.schemas.api import ListSessionsRequest


async def scoped_client(state: State, headers: Mapping[str, str]) -> SessionClient:
    """The client for a caller, by its request's credentials (see :mod:`praxis.edge.auth`):
    it sees and changes only what the caller may."""
    client: SessionClient = state.client
    scope = await state.auth.scope(headers)
    return client if scope is None else client.scoped(scope, actor=scope.owner.principal)


async def request_client(request: Request[Any, Any, Any]) -> SessionClient:
    """The client for this request's caller."""
    return await scoped_client(request.app.state, request.headers)


def edge_settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


DEPENDENCIES = {
    "client": Provide(request_client),
    "settings": Provide(edge_settings, sync_to_thread=False),
}
"""A controller's ``client`` (the caller's) and ``settings``."""


async def list_page(client: SessionClient, request: ListSessionsRequest) -> Page:
    """One page of sessions for a list request (REST's body; GraphQL's filter and paging)."""
    return await client.list_sessions(
        state=request.state,
        agent=request.agent_name,
        task_id=request.task_id,
        created_after=request.created_after,
        created_before=request.created_before,
        limit=request.limit,
        cursor=request.cursor,
    )
