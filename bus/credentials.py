"""How a process proves who it is to NATS: an nkey seed, a credentials file, or a user and
password; and the nkeys of each role, made once for the embedded server.

nkeys (Ed25519) rather than passwords: the server's configuration holds only public keys,
so reading it gives nobody a way in, and a seed never crosses the wire (the client signs
the server's nonce).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

from praxis.bus.permissions import Role, server_config
from praxis.bus.settings import Settings

SEED_SUFFIX = ".nk"
CONFIG_FILE = "auth.conf"


@dataclass(frozen=True, slots=True)
class Credentials:
    """One process's NATS credentials (all ``None``: connect without any)."""

    nkey_seed: Path | None = None
    creds_file: Path | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> Credentials:
        return cls(
            nkey_seed=s.nats_nkey_seed,
            creds_file=s.nats_creds,
            user=s.nats_user,
            password=s.nats_password.get_secret_value() if s.nats_password else None,
        )

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.nkey_seed, self.creds_file, self.user))

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        out: dict[str, Any] = {}
        if self.nkey_seed is not None:
            out["nkeys_seed"] = str(self.nkey_seed)
        if self.creds_file is not None:
            out["user_credentials"] = str(self.creds_file)
        if self.user is not None:
            out["user"] = self.user
            out["password"] = self.password or ""
        return out


def new_seed() -> bytes:
    """A new nkey user seed (``SU...``)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    key = nkeys.from_seed(bytearray(seed.strip()))
    try:
        return bytes(key.public_key).decode()
    finally:
        key.wipe()


def seed_file(folder: Path, role: Role) -> Path:
    return folder / f"{role.value}{SEED_SUFFIX}"


def ensure_role_keys(folder: Path) -> dict[Role, str]:
    """A seed file per role in ``folder`` (made once, readable by its owner only); return
    each role's public key."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    users: dict[Role, str] = {}
    for role in Role:
        path = seed_file(folder, role)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(new_seed() + b"\n")
        users[role] = public_key(path.read_bytes())
    return users


def write_server_config(folder: Path, settings: Settings, *, default: Role | None = None) -> Path:
    """Seeds for every role and a nats-server config (``auth.conf``) that gives each its
    permissions; return the config's path."""
    users = ensure_role_keys(folder)
    path = folder / CONFIG_FILE
    path.write_text(server_config(users, settings, default=default))
    return path
