"""The client of sessions on the bus: :class:`SessionClient` and what it returns."""

from praxis.bus.client.base import Page, Receipt, Scope
from praxis.bus.client.reading import list_cursor
from praxis.bus.client.session_client import SessionClient

__all__ = ["Page", "Receipt", "Scope", "SessionClient", "list_cursor"]
