"""Praxis: conversational AI agent sessions on NATS JetStream.

The repository keeps its parts in top-level folders; installed, they are one package:
:mod:`praxis.schemas` (the wire and stored formats), :mod:`praxis.bus` (NATS JetStream and
the :class:`~praxis.bus.SessionClient`), :mod:`praxis.workers` (the stateless workers that
run agents), :mod:`praxis.edge` (REST, SSE and GraphQL) and :mod:`praxis.cli` (``praxis``).
"""
