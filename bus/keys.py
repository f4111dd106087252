"""API keys for the edge, kept hashed in a KV bucket (``praxis_keys``).

A key is ``prx_<key id>_<secret>``: the id finds its record, the secret (32 random bytes)
is checked against the record's SHA-256 hash. A fast hash is right here: the secret is
random, not a password, so there is nothing to guess. The plain key is shown once, when it
is made, and stored nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from nats.js.errors import NoKeysError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from praxis.bus.connection import Bus
from praxis.bus.errors import RefusalError
from praxis.bus.provision import ensure_bucket, keys_bucket
from praxis.schemas import new_id

PREFIX = "prx"


class KeyNotFoundError(RefusalError):
    http_status = 404
    problem_type = "key-not-found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"unknown API key {key_id!r}")
        self.key_id = key_id


class ApiKey(BaseModel):
    """An API key's record (never the key itself)."""

    key_id: str
    principal: str = Field(min_length=1, max_length=200)
    tenant: str = Field(min_length=1, max_length=200)
    admin: bool = False
    name: str | None = Field(default=None, max_length=200)
    hash: str
    created_at: datetime
    revoked_at: datetime | None = None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def bucket(bus: Bus) -> KeyValue:
    return await ensure_bucket(bus.js, keys_bucket(bus.settings))


async def create_key(
    bus: Bus, principal: str, tenant: str, *, admin: bool = False, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key: its record, and the key to hand over (shown this once)."""
    key_id = new_id("key")
    secret = secrets.token_hex(32)
    record = ApiKey(
        key_id=key_id,
        principal=principal,
        tenant=tenant,
        admin=admin,
        name=name,
        hash=_digest(secret),
        created_at=datetime.now(UTC),
    )
    await (await bucket(bus)).create(key_id, record.model_dump_json().encode())
    return record, f"{PREFIX}_{key_id}_{secret}"


async def list_keys(bus: Bus) -> list[ApiKey]:
    kv = await bucket(bus)
    try:
        ids = await kv.keys()
    except (NotFoundError, NoKeysError):  # an empty bucket
        return []
    out = []
    for key_id in ids:
        try:
            entry = await kv.get(key_id)
        except NotFoundError:
            continue
        if entry.value:
            out.append(ApiKey.model_validate_json(entry.value))
    return sorted(out, key=lambda k: k.created_at)


async def revoke_key(bus: Bus, key_id: str) -> ApiKey:
    kv = await bucket(bus)
    try:
        entry = await kv.get(key_id)
    except NotFoundError:
        raise KeyNotFoundError(key_id) from None
    if not entry.value:
        raise KeyNotFoundError(key_id)
    record = ApiKey.model_validate_json(entry.value)
    if record.revoked_at is None:
        record.revoked_at = datetime.now(UTC)
        await kv.put(key_id, record.model_dump_json().encode())
    return record


async def verify(kv: KeyValue, token: str) -> ApiKey | None:
    """The key's record if ``token`` is a live key, else ``None``."""
    parts = token.split("_", 3)  # prx, key, <id>, <secret>
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] != "key" or not parts[3]:
        return None
    key_id, secret = f"key_{parts[2]}", parts[3]
    try:
        entry = await kv.get(key_id)
    except (NotFoundError, ValueError):  # ValueError: not a valid key name
        return None
    if not entry.value:
        return None
    record = ApiKey.model_validate_json(entry.value)
    if record.revoked_at is not None or not hmac.compare_digest(record.hash, _digest(secret)):
        return None
    return record
