"""``praxis bus``: the bus's users and permissions, and its provisioning."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter, validators

from praxis.bus import asyncapi, placement
from praxis.bus.credentials import seed_file, write_server_config
from praxis.bus.partitions import MAX_PARTITIONS
from praxis.bus.permissions import Role
from praxis.cli.runtime import bus_connection, load_settings, needs_the_bus, runs

bus_app = App(name="bus")  # its help: praxis.cli.app


@bus_app.command(name="docs")
def bus_docs() -> int:
    """Print the bus contract as an AsyncAPI 3.0 document (JSON): every subject, what
    travels on it and who sends it, for services that publish on the bus themselves. The
    edge serves the same at /asyncapi.json."""
    print(json.dumps(asyncapi.document(load_settings()), indent=2))
    return 0


@bus_app.command(name="credentials")
def bus_credentials(
    folder: Annotated[Path, Parameter(name="DIR", help="Where to write seeds and auth.conf.")],
    /,
) -> int:
    """Make an nkey per role (admin, worker, edge, service) in DIR, and DIR/auth.conf: the
    users and permissions to include in your nats-server configuration. Seeds that exist
    are kept; give each process its own (PRAXIS_NATS_NKEY_SEED=DIR/worker.nk, ...)."""
    config = write_server_config(folder, load_settings())
    print(config)
    for role in Role:
        print(f"  {role.value}: PRAXIS_NATS_NKEY_SEED={seed_file(folder, role)}", file=sys.stderr)
    print(
        f"Add 'include {config.name}' to the server's configuration (beside it) and give each "
        "component its seed; admin provisions the bus ('praxis bus provision').",
        file=sys.stderr,
    )
    return 0


@bus_app.command(name="provision")
@runs("WARNING")
async def bus_provision(
    *,
    partitions: Annotated[
        int | None, Parameter(validator=validators.Number(gte=1, lte=MAX_PARTITIONS))
    ] = None,
) -> None:
    """Create the streams, the work consumers and the buckets if missing (admin
    credentials); report a difference from what this Praxis needs. Other components only
    check. In a cluster, the partitions' leaders are then spread over the nodes (as
    'praxis bus rebalance' does).

    Parameters
    ----------
    partitions
        Partition streams the bus should have (1-64): a new bus is made with this many
        (default 1, or PRAXIS_PARTITIONS); an existing one grows to it (never shrinks).
        Sessions stay where they are; new ones use every partition.
    """
    settings = load_settings()
    if partitions is not None:
        settings = settings.model_copy(update={"partitions": partitions})
    needs_the_bus(settings)
    async with bus_connection(settings, "praxis-provision", Role.ADMIN) as (bus, _):
        n = bus.partitions.count
        streams = ", ".join(bus.partitions.stream(k) for k in bus.partitions.all())
        print(
            f"{n} partition{'s' * (n > 1)} (stream{'s' * (n > 1)} {streams}, each with "
            f"consumer {settings.consumer}) and the buckets are ready"
        )
        for move in await placement.rebalance(bus):  # a cluster: leaders spread
            g = move.group
            print(f"partition {g.partition} {g.kind}: leader {g.leader} -> {move.to}")


@bus_app.command(name="rebalance")
@runs("WARNING")
async def bus_rebalance() -> None:
    """Spread the partitions' leaders over a cluster's nodes (admin credentials): partition
    k's stream, buckets and work consumer led by the k-th node. Each move is a leader
    election of that group alone; nothing is copied."""
    settings = load_settings()
    needs_the_bus(settings)
    async with bus_connection(settings, "praxis-rebalance", Role.ADMIN) as (bus, _):
        moves = await placement.rebalance(bus)
        for move in moves:
            g = move.group
            print(f"partition {g.partition} {g.kind}: leader {g.leader} -> {move.to}")
        if not moves:
            print("every partition's leaders are where they should be")
            return
        spread = placement.spread(await placement.groups(bus))
        print("leaders now: " + "; ".join(f"{n} {ps}" for n, ps in spread.items()))
