"""Information commands: ``praxis agents``, ``praxis workers``, ``praxis status``,
``praxis env``."""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Annotated, Literal

from cyclopts import Parameter

from praxis.cli import status
from praxis.cli.common import AllFlag, JsonFlag, running_edge
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
    ours = os.environ.get(ENV_MARK) is not None  # set by an earlier 'praxis env': replaced
    if settings.nats_url and not ours:
        raise ValueError(
            "PRAXIS_NATS_URL is already set in this shell, not by 'praxis env': its programs "
            f"use that server. To use the local stack instead, first run: unset {' '.join(SET)}"
        )
    found = running_server(settings)
    if found is None:
        raise ValueError(
            f"no local stack is running for {settings.data_dir}: start one with 'praxis up' "
            "(in another shell), then run this again"
        )
    lines = {"PRAXIS_NATS_URL": found.url, ENV_MARK: str(settings.data_dir)}
    seed = found.credentials(Role(role)).nkey_seed
    if seed is not None:
        lines["PRAXIS_NATS_NKEY_SEED"] = str(seed)
    edge = running_edge(settings)
    if edge is not None:
        lines["PRAXIS_EDGE_URL"] = edge
    if ours and set(SET) - set(lines):  # what an earlier one set and no longer holds
        print("unset " + " ".join(sorted(set(SET) - set(lines))))
    for name, value in lines.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


ENV_MARK = "PRAXIS_ENV_DATA_DIR"
"""Exported by ``praxis env`` beside what it sets: that it set them (for the data
directory named), so that running it again replaces them."""
SET = ("PRAXIS_NATS_URL", "PRAXIS_NATS_NKEY_SEED", "PRAXIS_EDGE_URL", ENV_MARK)
