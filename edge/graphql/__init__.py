"""GraphQL at ``/graphql``: the REST operations over the same ``SessionClient``.

Queries, mutations and a live subscription (both WebSocket protocols), GraphiQL in the
browser. Types are made from the API models of :mod:`praxis.schemas.api`; errors carry the same
codes as REST problems (``extensions.code``), mapped in :mod:`praxis.edge.problems`. The SDL is
kept in ``schemas/agent_session.graphql`` (``python -m praxis.edge.graphql`` prints it; a test
keeps the two equal).
"""

from praxis.edge.graphql.errors import graphql_error
from praxis.edge.graphql.mounting import controller
from praxis.edge.graphql.operations import schema

__all__ = ["controller", "graphql_error", "schema"]
