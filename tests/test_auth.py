"""Issue 9: authentication and per-owner isolation at the edge. Every REST and GraphQL
operation, for each kind of caller: the owner, another tenant, another principal of the
same tenant, no credentials, a bad token, an expired token, a revoked key, an admin."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from praxis.bus import Bus, Settings
from praxis.bus import keys as api_keys
from tests.conftest import (
    EdgeProcess,
    InProcessWorker,
    edge_env,
    eventually,
    make_settings,
    praxis,
)
from tests.conftest import NatsServer as _NatsServer
from tests.test_edge_fuzz import assert_thorough, run_schemathesis

SECRET = "a-test-secret-of-enough-length-for-hs256"
ISSUER, AUDIENCE = "praxis-tests", "praxis"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def secured(
    nats: _NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
    signing_key: rsa.RSAPrivateKey,
) -> Iterator[EdgeProcess]:
    home = tmp_path_factory.mktemp("secured")
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwks = home / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    env = edge_env(
        make_settings(nats.url, home),
        PRAXIS_AUTH="on",
        PRAXIS_JWT_SECRET=SECRET,
        PRAXIS_JWT_JWKS_FILE=str(jwks),
        PRAXIS_JWT_ISSUER=ISSUER,
        PRAXIS_JWT_AUDIENCE=AUDIENCE,
    )
    proc = EdgeProcess(env, home / "edge.log").start()
    yield proc
    proc.stop()


def hs256(sub: str, tenant: str, *, expires_in: float = 300, **extra: Any) -> str:
    claims = {"sub": sub, "tenant": tenant, "iss": ISSUER, "aud": AUDIENCE}
    claims |= {"exp": int(time.time() + expires_in), **extra}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def rs256(key: rsa.RSAPrivateKey, sub: str, tenant: str, scope: str) -> str:
    claims = {"sub": sub, "tenant": tenant, "iss": ISSUER, "aud": AUDIENCE, "scope": scope}
    claims["exp"] = int(time.time() + 300)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
async def identities(bus: Bus, signing_key: rsa.RSAPrivateKey) -> dict[str, dict[str, str]]:
    """Headers for each kind of caller (None: no credentials)."""
    _, owner_key = await api_keys.create_key(bus, "alice", "acme")
    revoked, revoked_key = await api_keys.create_key(bus, "alice", "acme")
    await api_keys.revoke_key(bus, revoked.key_id)
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    return {
        "owner": {"X-API-Key": owner_key},
        "owner-jwt": bearer(hs256("alice", "acme")),
        "other-tenant": bearer(hs256("alice", "globex")),
        "other-principal": bearer(hs256("bob", "acme")),
        "none": {},
        "bad-token": bearer("not-a-token"),
        "wrong-signature": bearer(jwt.encode({"sub": "alice", "tenant": "acme"}, "x" * 40)),
        "expired": bearer(hs256("alice", "acme", expires_in=-60)),
        "wrong-audience": bearer(hs256("alice", "acme", aud="elsewhere")),
        "revoked-key": {"X-API-Key": revoked_key},
        "admin": bearer(rs256(signing_key, "ops", "praxis", "praxis:admin")),
        "rs256-user": bearer(rs256(signing_key, "carol", "initech", "")),
    }


ALLOWED = {"owner", "owner-jwt", "admin"}
HIDDEN = {"other-tenant", "other-principal", "rs256-user"}
REFUSED = {"none", "bad-token", "wrong-signature", "expired", "wrong-audience", "revoked-key"}

Op = Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[httpx.Response]]


def _rest_ops() -> dict[str, Op]:
    base = "/agent-sessions"
    return {
        "get": lambda h, s, a: h.get(f"{base}/{s}", headers=a),
        "history": lambda h, s, a: h.get(f"{base}/{s}/history", headers=a),
        "send": lambda h, s, a: h.post(f"{base}/{s}/messages", json={"message": "hi"}, headers=a),
        "suspend": lambda h, s, a: h.post(f"{base}/{s}/suspend", headers=a),
        "resume": lambda h, s, a: h.post(f"{base}/{s}/resume", headers=a),
        "cancel": lambda h, s, a: h.post(f"{base}/{s}/cancel", headers=a),
        "approve": lambda h, s, a: h.post(f"{base}/{s}/tool-calls/c1/approve", headers=a),
        "deny": lambda h, s, a: h.post(f"{base}/{s}/tool-calls/c1/deny", headers=a),
        "events": _events_status,
        "complete": lambda h, s, a: h.post(f"{base}/{s}/complete", headers=a),
        "delete": lambda h, s, a: h.delete(f"{base}/{s}", headers=a),
    }


async def _events_status(h: httpx.AsyncClient, sid: str, auth: dict[str, str]) -> httpx.Response:
    async with h.stream("GET", f"/agent-sessions/{sid}/events?after=0", headers=auth) as r:
        return r  # the status is all we need: the stream closes here


async def test_rest_authorization_matrix(
    secured: EdgeProcess,
    worker: InProcessWorker,
    identities: dict[str, dict[str, str]],
) -> None:
    tried, crossed = 0, []
    async with httpx.AsyncClient(base_url=secured.url, timeout=30) as http:
        owner = identities["owner"]
        for who, auth in identities.items():
            made = await http.post(
                "/agent-sessions/create", json={"agent_name": "echo"}, headers=owner
            )
            assert made.status_code == 201, made.text
            sid = made.json()["session_id"]
            # Listing shows one's own sessions only (an admin's: all).
            listed = await http.post("/agent-sessions/list", json={}, headers=auth)
            tried += 1
            if who in REFUSED:
                assert listed.status_code == 401
            else:
                ids = [i["session_id"] for i in listed.json()["items"]]
                assert (sid in ids) == (who in ALLOWED), (who, "list")
                if who in HIDDEN and sid in ids:
                    crossed.append((who, "list"))
            for name, op in _rest_ops().items():
                r = await op(http, sid, auth)
                tried += 1
                if who in REFUSED:
                    assert r.status_code == 401, (who, name, r.status_code)
                    assert r.headers["www-authenticate"].startswith("Bearer")
                elif who in HIDDEN:
                    assert r.status_code == 404, (who, name, r.status_code, r.text)
                    if r.status_code < 400:
                        crossed.append((who, name))
                else:  # the owner and the admin
                    expected = 409 if name in ("approve", "deny") else None
                    ok = r.status_code == expected if expected else r.status_code < 300
                    assert ok, (who, name, r.status_code, r.text)
        # Creating needs credentials too; a session belongs to its creator.
        assert (
            await http.post("/agent-sessions/create", json={"agent_name": "echo"})
        ).status_code == 401
        mine = await http.post(
            "/agent-sessions/create",
            json={"agent_name": "echo"},
            headers=identities["other-tenant"],
        )
        assert mine.status_code == 201
        sid = mine.json()["session_id"]
        seen = await http.get(f"/agent-sessions/{sid}", headers=identities["other-tenant"])
        assert seen.status_code == 200
        assert seen.json()["owner"] == {"principal": "alice", "tenant": "globex"}
        assert (await http.get(f"/agent-sessions/{sid}", headers=owner)).status_code == 404
    assert crossed == []
    assert tried == len(identities) * (len(_rest_ops()) + 1)


async def test_graphql_checks_the_caller_over_http_and_websocket(
    secured: EdgeProcess,
    worker: InProcessWorker,
    identities: dict[str, dict[str, str]],
) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=30) as http:
        owner = identities["owner"]
        create = 'mutation { createAgentSession(agentName: "echo") { sessionId } }'
        made = await http.post("/graphql", json={"query": create}, headers=owner)
        sid = made.json()["data"]["createAgentSession"]["sessionId"]
        query = {
            "query": "query($id: String!) { agentSession(sessionId: $id) { state } }",
            "variables": {"id": sid},
        }
        for who, auth in identities.items():
            r = await http.post("/graphql", json=query, headers=auth)
            if who in REFUSED:
                assert r.status_code == 401, (who, r.text)
            elif who in HIDDEN:
                assert r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND", who
            else:
                assert r.json()["data"]["agentSession"]["state"] in ("ACTIVE", "CREATED"), who

    url = secured.url.replace("http", "ws") + "/graphql"
    sub = gql(
        "subscription($id: String!) { agentSessionEvents(sessionId: $id, after: 0) { type } }"
    )

    async def first_event(payload: dict[str, str] | None) -> str:
        transport = WebsocketsTransport(url=url, init_payload=payload or {}, connect_timeout=10)
        async with Client(transport=transport) as session:
            async for item in session.subscribe(GraphQLRequest(sub, variable_values={"id": sid})):
                return str(item["agentSessionEvents"]["type"])
        return ""

    key = identities["owner"]["X-API-Key"]
    assert await first_event({"Authorization": f"Bearer {key}"}) == "session.created"
    with pytest.raises(TransportQueryError, match="unknown session"):
        await first_event(identities["other-tenant"])
    for refused in ({}, {"Authorization": "Bearer nonsense"}):
        with pytest.raises(Exception):  # noqa: B017,PT011 - the server closes with 4403
            await first_event(refused)


async def test_an_edge_without_auth_refuses_a_public_address(
    settings: Settings, tmp_path: Path
) -> None:
    env = edge_env(settings)
    done = praxis(env, "edge", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert done.returncode == 1
    assert "refusing to serve the edge on 0.0.0.0 without authentication" in done.stderr


def test_keys_cli(settings: Settings) -> None:
    from tests.conftest import env_for

    env = env_for(settings)
    made = praxis(env, "keys", "create", "--principal", "dora", "--tenant", "acme", "--json")
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["key"].startswith("prx_key_") and "hash" not in data
    listed = json.loads(praxis(env, "keys", "list", "--json").stdout)
    assert data["key_id"] in [k["key_id"] for k in listed]
    assert all("hash" not in k for k in listed)
    revoked = praxis(env, "keys", "revoke", data["key_id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    missing = praxis(env, "keys", "revoke", "key_nope")
    assert missing.returncode == 1 and "unknown API key" in missing.stderr


@pytest.fixture(scope="module")
def limited(nats: _NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    home = tmp_path_factory.mktemp("limited")
    env = edge_env(
        make_settings(nats.url, home),
        PRAXIS_AUTH="on",
        PRAXIS_RATE_LIMIT="8",
        PRAXIS_MAX_STREAMS="2",
        PRAXIS_MAX_SESSIONS_PER_OWNER="3",
    )
    proc = EdgeProcess(env, home / "edge.log").start()
    yield proc
    proc.stop()


async def test_rate_limit_per_caller_triggers_and_recovers(limited: EdgeProcess, bus: Bus) -> None:
    _, mine = await api_keys.create_key(bus, "rate", "acme")
    _, theirs = await api_keys.create_key(bus, "other", "acme")
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as http:
        answers = [
            await http.post("/agent-sessions/list", json={}, headers={"X-API-Key": mine})
            for _ in range(20)
        ]
        limited_ = [r for r in answers if r.status_code == 429]
        assert limited_, [r.status_code for r in answers]
        r = limited_[0]
        assert r.json()["code"] == "RATE_LIMITED" and int(r.headers["retry-after"]) >= 1
        other = await http.post("/agent-sessions/list", json={}, headers={"X-API-Key": theirs})
        assert other.status_code == 200  # another caller is not slowed down

        async def recovered() -> bool:
            again = await http.post("/agent-sessions/list", json={}, headers={"X-API-Key": mine})
            return again.status_code == 200

        await eventually(recovered, timeout=5, what="the limit to let the caller in again")


async def test_streams_and_sessions_per_owner_are_bounded(
    limited: EdgeProcess, bus: Bus, worker: InProcessWorker
) -> None:
    _, key = await api_keys.create_key(bus, "quota", "acme")
    auth = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as http:

        async def unthrottled(method: str, url: str, **kw: Any) -> httpx.Response:
            """The answer once past the rate limit (this test is about the other limits)."""

            async def answered() -> httpx.Response | None:
                r = await http.send(http.build_request(method, url, **kw), stream=True)
                if r.status_code == 429 and b"rate-limited" in await r.aread():
                    await r.aclose()
                    return None
                return r

            result: httpx.Response = await eventually(answered, what="a request past the limit")
            return result

        body = {"agent_name": "echo"}

        async def create() -> httpx.Response:
            r = await unthrottled("POST", "/agent-sessions/create", json=body, headers=auth)
            await r.aread()
            return r

        made = [await create() for _ in range(3)]
        assert [r.status_code for r in made] == [201, 201, 201]
        over = await create()
        assert over.status_code == 429 and over.json()["type"].endswith("quota-exceeded")
        assert "3 sessions" in over.json()["detail"] and over.headers["retry-after"] == "60"
        sid = made[0].json()["session_id"]
        done = await unthrottled("POST", f"/agent-sessions/{sid}/complete", headers=auth)
        assert done.status_code == 200
        assert (await create()).status_code == 201  # an ended session frees its place

        # Two event streams at once, not three; closing one makes room.
        url = f"/agent-sessions/{made[1].json()['session_id']}/events"
        one = await unthrottled("GET", url, headers=auth)
        two = await unthrottled("GET", url, headers=auth)
        assert (one.status_code, two.status_code) == (200, 200)
        three = await unthrottled("GET", url, headers=auth)
        assert three.status_code == 429
        assert json.loads(await three.aread())["type"].endswith("too-many-streams")
        assert three.headers["retry-after"] == "5"
        await one.aclose()

        async def room() -> bool:
            again = await unthrottled("GET", url, headers=auth)
            await again.aclose()
            return again.status_code == 200

        await eventually(room, what="a closed stream to free its place")
        await two.aclose()


async def test_generated_requests_with_auth_on_get_documented_answers(
    secured: EdgeProcess, worker: InProcessWorker, bus: Bus
) -> None:
    """The schemathesis run of tests/test_edge_fuzz.py, against an edge with auth on and a
    caller's key: still documented answers, never a 5xx."""
    _, key = await api_keys.create_key(bus, "fuzzer", "acme")
    async with httpx.AsyncClient(base_url=secured.url, timeout=30) as http:
        made = await http.post(
            "/agent-sessions/create", json={"agent_name": "echo"}, headers={"X-API-Key": key}
        )
    assert made.status_code == 201, made.text
    report = await run_schemathesis(secured, made.json()["session_id"], f"X-API-Key: {key}")
    assert_thorough(report)


async def test_the_openai_routes_answer_limits_as_the_sdk_expects(
    limited: EdgeProcess, bus: Bus
) -> None:
    """Over the rate limit, /v1 answers 429 in the OpenAI shape with Retry-After: the
    openai package raises RateLimitError (its own retries turned off)."""
    _, key = await api_keys.create_key(bus, "sdk-rate", "acme")
    ai = openai.AsyncOpenAI(base_url=f"{limited.url}/v1", api_key=key, max_retries=0)
    refused: openai.RateLimitError | None = None
    for _ in range(40):
        try:
            await ai.models.list()
        except openai.RateLimitError as e:
            refused = e
            break
    assert refused is not None, "40 requests at a limit of 8 per second were all answered"
    assert int(refused.response.headers["retry-after"]) >= 1
    assert refused.body["type"] == "rate_limit_error"  # type: ignore[index]
