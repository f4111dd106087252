"""Who is calling: API keys (``praxis keys``) and JWT bearer tokens (HS256 with a shared
secret, or RS256/ES256 with a JWKS file; issuer and audience checked when set).

With ``PRAXIS_AUTH=on`` every REST, SSE and GraphQL request (a subscription: in its
``connection_init`` payload) must carry ``Authorization: Bearer <key or JWT>`` (or
``X-API-Key: <key>``); the caller then sees its own sessions only (an admin: all).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from nats.js.kv import KeyValue

from praxis.bus import Bus, Scope, Settings
from praxis.bus import keys as api_keys
from praxis.bus.cache import Bounded
from praxis.schemas import Owner

KEY_CACHE_SECONDS = 5.0
"""A key's check is reused this long: a revoked key stops working within it."""


class UnauthenticatedError(Exception):
    """No credentials, or credentials that do not hold: answered 401."""

    http_status = 401
    problem_type = "unauthenticated"


class LimitError(Exception):
    """A caller over one of its limits: answered 429 with ``Retry-After``."""

    http_status = 429

    def __init__(self, message: str, kind: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.problem_type = kind
        self.retry_after = retry_after


def caller_key(headers: Mapping[str, str], address: str) -> str:
    """Who to count a request against: its credential (hashed), or its address without
    one. A credential's owner cannot be read before it is checked, and counting forged
    tokens against the principal they name would let anyone exhaust anyone's limit."""
    token = _token(headers)
    if token is None:
        return f"addr:{address}"
    return "cred:" + hashlib.sha256(token.encode()).hexdigest()[:32]


class StreamCounter:
    """Event streams each caller holds open (SSE and GraphQL subscriptions)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        n = self._open.get(key, 0)
        if self.limit and n >= self.limit:
            raise LimitError(
                f"too many open event streams ({n}, at most {self.limit}): close one first",
                "too-many-streams",
                retry_after=5,
            )
        self._open[key] = n + 1

    def release(self, key: str) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.on = settings.auth == "on"
        self.streams = StreamCounter(settings.max_streams if self.on else 0)
        self._kv: KeyValue | None = None
        # API keys as verified (a revoked one is refused within KEY_CACHE_SECONDS).
        self._cache = Bounded[str, tuple[Scope | None]](10_000, ttl=KEY_CACHE_SECONDS)
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwt_jwks_file is not None:
            self._jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())

    async def scope(self, headers: Mapping[str, str]) -> Scope | None:
        """The caller's scope (``None`` while auth is off); raises
        :class:`UnauthenticatedError`."""
        if not self.on:
            return None
        token = _token(headers)
        if token is None:
            raise UnauthenticatedError(
                "credentials needed: send 'Authorization: Bearer <API key or JWT>'"
            )
        return await self.scope_of(token)

    async def scope_of(self, token: str) -> Scope:
        if token.startswith(f"{api_keys.PREFIX}_"):
            return await self._key(token)
        return self._jwt(token)

    async def _key(self, token: str) -> Scope:
        hit = self._cache.get(token)  # (scope,), or (None,) for a key found invalid
        if hit is not None:
            found = hit[0]
        else:
            if self._kv is None:
                self._kv = await api_keys.bucket(self.bus)
            record = await api_keys.verify(self._kv, token)
            found = (
                Scope(Owner(principal=record.principal, tenant=record.tenant), record.admin)
                if record is not None
                else None
            )
            self._cache.put(token, (found,))
        if found is None:
            raise UnauthenticatedError("invalid or revoked API key")
        return found

    def _jwt(self, token: str) -> Scope:
        s = self.settings
        if s.jwt_secret is None and self._jwks is None:
            raise UnauthenticatedError("not an API key, and JWTs are not configured")
        try:
            header = jwt.get_unverified_header(token)
            key: Any
            if self._jwks is not None and header.get("alg", "").startswith(("RS", "ES", "PS")):
                key = self._jwks[header["kid"]].key if "kid" in header else None
                if key is None:
                    raise UnauthenticatedError("the token names no key ('kid') of the JWKS")
                algorithms = ["RS256", "ES256", "PS256"]
            elif s.jwt_secret is not None:
                key, algorithms = s.jwt_secret.get_secret_value(), ["HS256"]
            else:
                raise UnauthenticatedError("token signed with an algorithm not accepted here")
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": s.jwt_audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("token expired") from None
        except (jwt.InvalidTokenError, KeyError) as e:
            raise UnauthenticatedError(f"invalid token: {e}") from None
        tenant = claims.get(s.jwt_tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise UnauthenticatedError(f"the token has no '{s.jwt_tenant_claim}' claim")
        scopes = claims.get("scope", "")
        granted = set(scopes.split() if isinstance(scopes, str) else [])
        scp = claims.get("scp", [])
        granted |= set(scp if isinstance(scp, list) else str(scp).split())
        owner = Owner(principal=str(claims["sub"]), tenant=tenant)
        return Scope(owner, admin=s.jwt_admin_scope in granted)


def open_stream(auth: Authenticator, key: str) -> Callable[[], None]:
    """Count an event stream against its caller (429 over the limit); call what this
    returns when it closes."""
    if not auth.on:
        return lambda: None
    auth.streams.acquire(key)
    return functools.partial(auth.streams.release, key)


def _token(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization") or headers.get("Authorization")
    if auth:
        kind, _, value = auth.partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get("x-api-key") or headers.get("X-API-Key")
    return key.strip() if key else None


def token_from_payload(payload: Mapping[str, Any] | None) -> str | None:
    """The credentials a GraphQL WebSocket client sends in ``connection_init``."""
    if not payload:
        return None
    headers = {str(k).lower(): str(v) for k, v in payload.items() if isinstance(v, str)}
    for name in ("authorization", "x-api-key", "api_key", "token"):
        if name in headers:
            value = headers[name]
            if name == "authorization":
                return _token({"authorization": value})
            return value
    return None
