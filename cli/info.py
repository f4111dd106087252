"""Information commands: ``praxis agents``, ``praxis workers``, ``praxis status``."""

from __future__ import annotations

import json
import sys

from praxis.cli import status
from praxis.cli.common import AllFlag, JsonFlag
from praxis.cli.render import worker_rows
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import runs, runtime
from praxis.cli.runtime import setup_logging as _logging
from praxis.cli.term import table
from praxis.workers import registry_for


def agents_cmd(*, json_: JsonFlag = False, all_: AllFlag = False) -> int:
    """List the agents this installation offers; definitions that cannot be used are
    reported (file, field, why) on stderr, and the exit status is then 1."""
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
    """List the live workers (by their heartbeats)."""
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
    """The NATS server, the stream and its work queue (commands waiting for a worker), the
    buckets, the live workers and the sessions by state."""
    async with runtime(_settings(), with_worker=False) as rt:
        status.show(await status.gather(rt.bus, rt.client), json_)
