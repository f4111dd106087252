"""The bus contract: an AsyncAPI 3.0 document valid against the specification's own JSON
Schema (tests/data/asyncapi-3.0.0.schema.json, from @asyncapi/specs 6.11.1, Apache-2.0,
minified), listing every subject the code uses with its payloads; served by the edge and
printed by 'praxis bus docs'."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any, get_args

import httpx
import jsonschema

from praxis.bus import Settings, subjects
from praxis.bus.asyncapi import document
from praxis.schemas import Command, Event
from tests.conftest import EdgeProcess, env_for, praxis

SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"


def _addresses(doc: dict[str, Any]) -> list[re.Pattern[str]]:
    """Each channel's address as a pattern: a parameter matches one subject token, an
    inbox the tokens after ``_INBOX.``."""

    def pattern(address: str) -> re.Pattern[str]:
        escaped = re.escape(address).replace(r"\{inbox\}", "[A-Za-z0-9_.-]+")
        return re.compile(re.sub(r"\\\{\w+\\\}", "[A-Za-z0-9_-]+", escaped))

    return [pattern(c["address"]) for c in doc["channels"].values()]


def test_the_document_is_valid_asyncapi_and_lists_every_subject(settings: Settings) -> None:
    doc = document(settings)
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert [e.message for e in validator.iter_errors(doc)] == []
    broken = json.loads(json.dumps(doc))
    broken["operations"]["commands"]["action"] = "shout"
    assert list(validator.iter_errors(broken)), "the validation checks something"

    sid = "ses_0123abc"
    used = [
        subjects.inputs(sid, 0),
        subjects.events(sid, 0),
        subjects.checkpoint(sid, 0),
        subjects.timer(sid, 0),
        subjects.inputs(sid, 2),
        subjects.events(sid, 2),
        subjects.live(sid),
        subjects.snapshot(sid),
        subjects.PURGE_REQUESTS,
        f"$KV.{settings.sessions_bucket}.{sid}",
        f"$KV.{settings.workers_bucket}.wrk_1",
        f"$KV.{settings.dead_letters_bucket}.dl_1",
        "_INBOX.abc.def",  # outcomes and answers
    ]
    patterns = _addresses(doc)
    assert [s for s in used if not any(p.fullmatch(s) for p in patterns)] == []
    for channel in doc["channels"].values():  # every parameter in an address is described
        assert set(re.findall(r"\{(\w+)\}", channel["address"])) == set(
            channel.get("parameters", {})
        )

    schemas = doc["components"]["schemas"]
    for union in (Command, Event):  # every command and event kind has its schema
        kinds = get_args(get_args(union)[0])
        assert [k.__name__ for k in kinds if k.__name__ not in schemas] == []
    actions = {name: op["action"] for name, op in doc["operations"].items()}
    assert actions["commands"] == "receive" and actions["events"] == "send"


async def test_the_edge_serves_it_and_the_cli_prints_it(
    edge: EdgeProcess, settings: Settings
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(f"{edge.url}/asyncapi.json")  # no key needed, like /schema
    assert r.status_code == 200, r.text
    served = r.json()
    printed = await asyncio.to_thread(praxis, env_for(settings), "bus", "docs")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == served
    assert served["channels"]["commands"]["address"] == "sess.{session_id}.in"


def test_the_committed_document_is_the_generated_one() -> None:
    """schemas/asyncapi.json, which the documentation links, is 'praxis bus docs'."""
    committed = json.loads((SCHEMA.parent.parent.parent / "schemas" / "asyncapi.json").read_text())
    assert committed == document(Settings(nats_url=None)), (
        "run: praxis bus docs > schemas/asyncapi.json"
    )
