"""``praxis keys``: API keys for the edge (create, list, revoke); kept hashed on the bus."""

from __future__ import annotations

import json
import sys
from typing import Annotated

from cyclopts import App, Parameter

from praxis.bus import keys as api_keys
from praxis.cli.common import JsonFlag
from praxis.cli.runtime import load_settings, runs, runtime
from praxis.cli.term import table

keys_app = App(name="keys")  # its help: praxis.cli.app


@keys_app.command(name="create")
@runs("WARNING")
async def keys_create(
    *,
    principal: Annotated[str, Parameter(help="Who the key is for (the sessions' owner).")],
    tenant: Annotated[str, Parameter(help="The principal's tenant.")] = "default",
    admin: Annotated[bool, Parameter(help="May see and drive every session.")] = False,
    name: Annotated[str | None, Parameter(help="A note to tell keys apart.")] = None,
    json_: JsonFlag = False,
) -> None:
    """Make a key and print it (once: only its hash is kept)."""
    async with runtime(load_settings(), with_worker=False) as rt:
        record, key = await api_keys.create_key(rt.bus, principal, tenant, admin=admin, name=name)
        if json_:
            data = record.model_dump(mode="json", exclude={"hash"})
            print(json.dumps({**data, "key": key}, indent=2))
            return
        print(key)
        print(
            f"API key {record.key_id} for {principal} ({tenant}"
            f"{', admin' if admin else ''}): shown once, keep it now",
            file=sys.stderr,
        )


@keys_app.command(name="list")
@runs("WARNING")
async def keys_list(*, json_: JsonFlag = False) -> None:
    """The keys (never the keys themselves): id, principal, tenant, admin, state."""
    async with runtime(load_settings(), with_worker=False) as rt:
        found = await api_keys.list_keys(rt.bus)
        if json_:
            rows = [k.model_dump(mode="json", exclude={"hash"}) for k in found]
            print(json.dumps(rows, indent=2))
        elif found:
            table(
                [["KEY", "PRINCIPAL", "TENANT", "ADMIN", "CREATED", "STATE", "NAME"]]
                + [
                    [
                        k.key_id,
                        k.principal,
                        k.tenant,
                        "yes" if k.admin else "",
                        k.created_at.strftime("%Y-%m-%d %H:%M"),
                        "revoked" if k.revoked_at else "active",
                        k.name or "",
                    ]
                    for k in found
                ]
            )
        else:
            print("No API keys.", file=sys.stderr)


@keys_app.command(name="revoke")
@runs("WARNING")
async def keys_revoke(
    key_id: Annotated[str, Parameter(name="ID", help="Key id (key_...).")], /
) -> None:
    """Revoke a key: the edge refuses it within seconds."""
    async with runtime(load_settings(), with_worker=False) as rt:
        record = await api_keys.revoke_key(rt.bus, key_id)
        print(f"revoked {record.key_id} ({record.principal}, {record.tenant})")
