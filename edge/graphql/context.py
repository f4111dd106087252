"""What every resolver gets: the caller's client and the rest of ``info.context``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from litestar.datastructures import State
from strawberry.dataloader import DataLoader
from strawberry.litestar import BaseContext

from praxis.bus import SessionClient, Settings
from praxis.edge.auth import open_stream
from praxis.schemas import (
    HistoryItem,
    SessionState,
)

HistoryKey = tuple[str, int, int | None]


class Context(BaseContext, kw_only=True):
    """What every resolver gets (``info.context``): the caller's client, the loader that
    batches history reads, the settings, the app's state; for a WebSocket, what its
    ``connection_init`` said."""

    client: SessionClient
    histories: DataLoader[HistoryKey, list[HistoryItem]]
    settings: Settings
    state: State
    connection_params: Any = None
    """A WebSocket's ``connection_init`` payload (Strawberry sets it)."""
    stream_key: str | None = None
    """Whose subscriptions a WebSocket's count against (its credentials)."""


# Registers the enum with Strawberry (the same class, given a GraphQL definition).
strawberry.enum(SessionState, description="Where a session is in its lifecycle.")


async def open_subscription(state: State, context: Context) -> Callable[[], None]:
    """Count a subscription against its caller (by the credentials it connected with)."""
    key = context.stream_key or "ws"
    return open_stream(state.auth, key)
