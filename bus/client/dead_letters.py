"""Dead letters: commands parked after failing repeatedly, listed, replayed (under a new
command id derived from the letter's, so that a replay repeated after a crash runs once)
or dropped."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from nats.js.errors import KeyNotFoundError

from praxis.bus import direct, subjects
from praxis.bus.client import commands, reading
from praxis.bus.client.base import ClientState, Receipt
from praxis.bus.errors import AlreadyReplayedError, DeadLetterNotFoundError
from praxis.schemas import DeadLetter, check_token, decode_command


async def letters(
    c: ClientState, session_id: str | None, include_replayed: bool
) -> list[DeadLetter]:
    bucket = c.bus.settings.dead_letters_bucket
    keys = f"{check_token(session_id, 'session id')}.*" if session_id else ">"
    msgs = await direct.read_subject(
        c.bus.nc,
        subjects.kv_stream(bucket),
        subjects.kv_key(bucket, keys),
        after=0,
        timeout=c.bus.timeout,
    )
    found = [
        DeadLetter.model_validate_json(m.data)
        for m in msgs
        if m.data and "KV-Operation" not in m.headers
    ]
    return [
        x
        for x in sorted(found, key=lambda x: (x.parked_at, x.id))
        if include_replayed or x.status == "parked"
    ]


async def letter(c: ClientState, letter_id: str) -> DeadLetter:
    sid, _, seq = letter_id.rpartition(".")
    if not seq.isdigit():
        raise DeadLetterNotFoundError(letter_id)
    check_token(sid, "session id")
    try:
        entry = await c.bus.dead_letters.get(letter_id)
    except KeyNotFoundError:
        raise DeadLetterNotFoundError(letter_id) from None
    if not entry.value:
        raise DeadLetterNotFoundError(letter_id)
    return DeadLetter.model_validate_json(entry.value)


async def replay(c: ClientState, letter_id: str) -> tuple[DeadLetter, Receipt]:
    parked = await letter(c, letter_id)
    if parked.status == "replayed":
        raise AlreadyReplayedError(letter_id, parked.replayed_as)
    _, tail = await reading.head(c, parked.session_id)
    command_id = "cmd_r" + hashlib.sha256(letter_id.encode()).hexdigest()[:24]
    original = decode_command(json.dumps(parked.command))
    cmd = original.model_copy(
        update={"command_id": command_id, "interface": c.interface, "issued_at": datetime.now(UTC)}
    )
    await commands.store(c, cmd)
    now = datetime.now(UTC)
    done = parked.model_copy(
        update={"status": "replayed", "replayed_as": command_id, "replayed_at": now}
    )
    await c.bus.dead_letters.put(letter_id, done.model_dump_json().encode())
    return done, Receipt(parked.session_id, command_id, tail)


async def drop(c: ClientState, letter_id: str) -> DeadLetter:
    parked = await letter(c, letter_id)
    await c.bus.dead_letters.purge(letter_id)
    return parked
