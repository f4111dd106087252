"""What the REST controllers and the GraphQL resolvers share: the caller's client and
the paging of session lists. Both import it; neither imports the other."""

from __future__ import annotations

from collections.abc import Mapping

from litestar.datastructures import State

from praxis.bus import Page, SessionClient
from praxis.schemas.api import ListSessionsRequest


async def scoped_client(state: State, headers: Mapping[str, str]) -> SessionClient:
    """The client for a caller, by its request's credentials (see :mod:`praxis.edge.auth`):
    it sees and changes only what the caller may."""
    client: SessionClient = state.client
    scope = await state.auth.scope(headers)
    return client if scope is None else client.scoped(scope, actor=scope.owner.principal)


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
