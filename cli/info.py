"""Information commands: ``praxis agents``, ``praxis workers``, ``praxis status``,
``praxis env``."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Annotated, Literal

from cyclopts import Parameter

from praxis.bus import Settings
from praxis.cli import status
from praxis.cli.common import EDGE_FILE, AllFlag, JsonFlag
from praxis.cli.render import worker_rows
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import runs, runtime
from praxis.cli.runtime import setup_logging as _logging
from praxis.cli.term import table
from praxis.workers import registry_for


def agents_cmd(*, json_: JsonFlag = False, all_: AllFlag = False) -> int:
    """The ``praxis agents`` command (its help text: :mod:`praxis.cli.app`)."""
    _logging("CRITICAL")  # the errors are printed below, once
    registry = registry_for(_settings())
    infos = [i for i in registry.infos() if all_ or i.listed]
    if json_:
        print(json.dumps([i.model_dump() for i in infos], indent=2))
    else:
        table(
            [["AGENT", "DESCRIPTION", "FROM"]] + [[i.name, i.description, i.source] for i in infos]
        )
    for err in registry.errors:
        print(f"praxis: could not load agent: {err}", file=sys.stderr)
    return 1 if registry.errors else 0


@runs("WARNING")
async def workers_cmd(*, json_: JsonFlag = False) -> None:
    """The ``praxis workers`` command (its help text: :mod:`praxis.cli.app`)."""
    async with runtime(_settings(), with_worker=False) as rt:
        found = await rt.client.workers()
        if json_:
            print(json.dumps([w.model_dump(mode="json") for w in found], indent=2))
        elif found:
            table(worker_rows(found))
        else:
            print("No live workers.", file=sys.stderr)


@runs("WARNING")
async def status_cmd(*, json_: JsonFlag = False) -> None:
    """The ``praxis status`` command (its help text: :mod:`praxis.cli.app`)."""
    async with runtime(_settings(), with_worker=False) as rt:
        status.show(await status.gather(rt.bus, rt.client), json_)


def env_cmd(
    *,
    role: Annotated[
        Literal["admin", "service"],
        Parameter(help="Whose credentials: admin (everything) or service (drive sessions)."),
    ] = "admin",
) -> int:
    """The ``praxis env`` command (its help text: :mod:`praxis.cli.app`)."""
    from praxis.bus.embedded import running_server
    from praxis.bus.permissions import Role

    settings = _settings()
    if settings.nats_url:
        raise ValueError(
            "PRAXIS_NATS_URL is already set in this shell: its programs use that server"
        )
    found = running_server(settings)
    if found is None:
        raise ValueError(
            f"no local stack is running for {settings.data_dir}: start one with 'praxis up' "
            "(in another shell), then run this again"
        )
    print(f"export PRAXIS_NATS_URL={shlex.quote(found.url)}")
    seed = found.credentials(Role(role)).nkey_seed
    if seed is not None:
        print(f"export PRAXIS_NATS_NKEY_SEED={shlex.quote(str(seed))}")
    edge = _edge_url(settings)
    if edge is not None:
        print(f"export PRAXIS_EDGE_URL={shlex.quote(edge)}")
    return 0


def _edge_url(settings: Settings) -> str | None:
    """The URL 'praxis up' wrote for its edge, if that edge is still up."""
    try:
        url = json.loads((settings.data_dir / EDGE_FILE).read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None
