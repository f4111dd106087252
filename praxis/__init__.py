"""Praxis: conversational AI agent sessions on NATS JetStream.

The repository keeps its parts in top-level folders; installed, they are one package:
:mod:`praxis.schemas` (the wire and stored formats), :mod:`praxis.bus` (NATS JetStream and
the :class:`~praxis.bus.SessionClient`), :mod:`praxis.workers` (the stateless workers that
run agents), :mod:`praxis.edge` (REST, SSE and GraphQL) and :mod:`praxis.cli` (``praxis``).
"""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "praxis-sessions"
"""The name Praxis is installed under (``pip install praxis-sessions``); the command and
the import package are ``praxis``."""


def installed_version() -> str:
    """The installed version of Praxis (``0+unknown`` when run from files not installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


def install_hint(extra: str) -> str:
    """How to install an optional extra, from the index and from a checkout."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (from a checkout: pip install -e '.[{extra}]')"
