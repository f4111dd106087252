"""GraphQL over real WebSocket and HTTP: a ``praxis edge`` process, real NATS, the gql client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)

from praxis.bus import Receipt, SessionClient, Settings
from praxis.bus.embedded import NatsServer
from praxis.bus.state import read_events
from praxis.schemas import AgentMessage
from tests.conftest import (
    ROOT,
    EdgeProcess,
    InProcessWorker,
    env_for,
    eventually,
    live_count_is,
    praxis,
    settled_session,
    slow_turn_streaming,
)

PROTOCOLS = [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]

CREATE = gql(
    """mutation Create($agent: String!, $message: String, $task: String) {
         createAgentSession(agentName: $agent, initialMessage: $message, taskId: $task) {
           sessionId taskId state cursor commandId
         }
       }"""
)
SEND = gql(
    """mutation Send($id: String!, $message: String!) {
         sendMessageToSession(sessionId: $id, message: $message) { sessionId commandId cursor }
       }"""
)
EVENTS = gql(
    """subscription Events($id: String!, $after: Int) {
         agentSessionEvents(sessionId: $id, after: $after) { type data timestamp cursor }
       }"""
)


def ask(request: GraphQLRequest | str, **variables: Any) -> GraphQLRequest:
    """A request with its variables (gql 4 wants them on the request)."""
    return GraphQLRequest(request, variable_values=variables)


def ws_url(edge: EdgeProcess) -> str:
    return edge.url.replace("http://", "ws://") + "/graphql"


@pytest.fixture(params=PROTOCOLS)
async def gql_ws(edge: EdgeProcess, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A GraphQL session over one WebSocket, in each of the two protocols (the legacy
    ``graphql-ws`` carries subscriptions only)."""
    transport = WebsocketsTransport(url=ws_url(edge), subprotocols=[request.param])
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        yield session


@pytest.fixture
async def gql_http(edge: EdgeProcess) -> AsyncIterator[Any]:
    """A GraphQL session over HTTP, for queries and mutations."""
    transport = HTTPXAsyncTransport(url=f"{edge.url}/graphql", timeout=30)
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        yield session


async def collect(
    session: Any,
    session_id: str,
    after: int | None,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 20,
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for result in session.subscribe(ask(EVENTS, id=session_id, after=after)):
            got.append(result["agentSessionEvents"])
            if until(got):
                break
    return got


def turns_ended(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda got: sum(e["type"] in ("turn.completed", "turn.failed") for e in got) >= n


def durable(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(e["cursor"], e["type"]) for e in events if e["cursor"] is not None]


async def stored(client: SessionClient, session_id: str, after: int = 0) -> list[tuple[int, str]]:
    return [(i, e.type) for i, e in await read_events(client.bus, session_id, after=after)]


# -- the documented workflow --------------------------------------------------------------


async def test_workflow_create_subscribe_send(
    gql_ws: Any, gql_http: Any, worker: InProcessWorker
) -> None:
    created = (await gql_http.execute(ask(CREATE, agent="hello-world")))["createAgentSession"]
    assert created["state"] == "CREATED" and created["taskId"].startswith("task_")
    sid = created["sessionId"]

    async def send_later() -> dict[str, Any]:
        result: dict[str, Any] = await gql_http.execute(
            ask(SEND, id=sid, message="Hello over GraphQL")
        )
        return result

    sending = asyncio.create_task(send_later())
    events = await collect(gql_ws, sid, created["cursor"], turns_ended(2))  # greeting, reply
    sent = (await sending)["sendMessageToSession"]
    mine = [e for e in events if e["data"].get("command_id") == sent["commandId"]]
    reply = next(e["data"]["content"] for e in mine if e["type"] == "agent.message")
    assert reply.startswith('You said: "Hello over GraphQL"')
    deltas = [
        e["data"]["text"] for e in events if e["type"] == "token.delta" and e["cursor"] is None
    ]
    assert "".join(deltas).endswith(reply)  # the greeting's deltas, then the reply's
    assert [c for c, _ in durable(events)] == sorted(c for c, _ in durable(events))


async def test_queries_lists_and_lifecycle_mutations(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:

        async def run(query: str, **variables: Any) -> dict[str, Any]:
            r = await http.post(
                f"{edge.url}/graphql", json={"query": query, "variables": variables}
            )
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            assert "errors" not in body, body
            data: dict[str, Any] = body["data"]
            return data

        sids = []
        for i in range(3):
            record, _ = await client.create("echo", task_id="task-gql")
            await client.wait(await client.send(record.session_id, f"message {i}"))
            sids.append(record.session_id)
        page = await run(
            """query($first: Int!) {
                 agentSessions(filter: {taskId: "task-gql"}, first: $first) {
                   edges { cursor node { sessionId messageCount history(first: 1) { content } } }
                   pageInfo { hasNextPage endCursor }
                 }
               }""",
            first=2,
        )
        conn = page["agentSessions"]
        assert [e["node"]["sessionId"] for e in conn["edges"]] == sids[::-1][:2]
        assert [e["node"]["history"][0]["content"] for e in conn["edges"]] == [
            "message 2",
            "message 1",
        ]
        assert conn["pageInfo"]["hasNextPage"] is True
        rest = await run(
            """query($after: String) {
                 agentSessions(filter: {taskId: "task-gql"}, after: $after) {
                   edges { node { sessionId } } pageInfo { hasNextPage }
                 }
               }""",
            after=conn["edges"][-1]["cursor"],
        )
        assert [e["node"]["sessionId"] for e in rest["agentSessions"]["edges"]] == [sids[0]]

        one = await run(
            """query($id: String!) { agentSession(sessionId: $id) {
                 sessionId taskId agentName state messageCount
                 history(first: 10) { role content seq } } }""",
            id=sids[0],
        )
        session = one["agentSession"]
        assert session["taskId"] == "task-gql" and session["messageCount"] == 2
        assert [m["role"] for m in session["history"]] == ["user", "agent"]

        for name, state in (
            ("suspendAgentSession", "SUSPENDED"),
            ("resumeAgentSession", "ACTIVE"),
            ("completeAgentSession", "COMPLETED"),
        ):
            done = await run(f'mutation {{ {name}(sessionId: "{sids[0]}") {{ state }} }}')
            assert done[name]["state"] == state

        record, sent = await slow_turn_streaming(client, pieces=200, delay=0.05)
        cancelled = await run(
            f'mutation {{ cancelTurn(sessionId: "{record.session_id}") {{ commandId }} }}'
        )
        assert cancelled["cancelTurn"]["commandId"]
        ended = await client.wait(sent)
        assert ended[-1].type == "turn.failed" and getattr(ended[-1], "cancelled", False)


# -- handoff and resume -------------------------------------------------------------------


async def test_agents_are_listed_as_over_rest(
    edge: EdgeProcess, worker: InProcessWorker, gql_http: Any
) -> None:
    got = await gql_http.execute(gql("{ agents { name description source } }"))
    names = [a["name"] for a in got["agents"]]
    assert names == sorted(names) and {"echo", "hello-world"} <= set(names)
    assert "synthetic" not in names, "the benchmark's agent is used by name, not listed"
    every = await gql_http.execute(gql("{ agents(all: true) { name } }"))
    assert "synthetic" in {a["name"] for a in every["agents"]}
    async with httpx.AsyncClient(timeout=10) as http:
        rest = (await http.get(f"{edge.url}/agents")).json()
        rest_all = (await http.get(f"{edge.url}/agents", params={"all": "true"})).json()
    assert got["agents"] == [{k: a[k] for k in ("name", "description", "source")} for a in rest]
    assert all(a["listed"] for a in rest)
    assert [a["name"] for a in rest_all if not a["listed"]] == ["synthetic"]


async def test_handoff_cli_rest_graphql_cli_each_recorded_as_itself(
    edge: EdgeProcess,
    worker: InProcessWorker,
    settings: Settings,
    client: SessionClient,
    gql_http: Any,
) -> None:
    """One session through every interface: CLI, REST, GraphQL, CLI again, watched over a
    GraphQL subscription; each message's events name the interface it came from."""
    env = env_for(settings)
    run = await asyncio.to_thread(praxis, env, "agent", "run", "echo", "--message", "from the CLI")
    assert run.returncode == 0, run.stderr
    sid = next(
        ln.split(": ", 1)[1] for ln in run.stderr.splitlines() if ln.startswith("Session created")
    )
    transport = WebsocketsTransport(url=ws_url(edge))
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        watching = asyncio.create_task(collect(session, sid, 0, turns_ended(4)))
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                f"{edge.url}/agent-sessions/{sid}/messages", json={"message": "from REST"}
            )
            assert r.status_code == 202
        await client.wait(Receipt(sid, r.json()["command_id"], r.json()["cursor"]))
        sent = await gql_http.execute(ask(SEND, id=sid, message="from GraphQL"))
        receipt = sent["sendMessageToSession"]
        await client.wait(Receipt(sid, receipt["commandId"], receipt["cursor"]))
        again = await asyncio.to_thread(praxis, env, "agent", "resume", sid, "--message", "back")
        assert again.returncode == 0, again.stderr
        events = await watching
    assert durable(events) == await stored(client, sid)  # every event, in order, once
    replies = [e["data"]["content"] for e in events if e["type"] == "agent.message"]
    assert replies == ["from the CLI", "from REST", "from GraphQL", "back"]
    interfaces = [e["data"]["interface"] for e in events if e["type"] == "user.message"]
    assert interfaces == ["cli", "api", "graphql", "cli"]
    # A session made over GraphQL was created by GraphQL.
    created = (await gql_http.execute(ask(CREATE, agent="echo")))["createAgentSession"]
    got = await gql_http.execute(
        ask(gql("query Q($id: String!) { agentSession(sessionId: $id) { createdBy } }"),
            id=created["sessionId"])
    )  # fmt: skip
    assert got["agentSession"]["createdBy"] == "graphql"


async def test_subscription_resumes_from_a_cursor(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    record, receipt = await client.create("echo")
    sid = record.session_id
    transport = WebsocketsTransport(url=ws_url(edge))
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        first = asyncio.create_task(collect(session, sid, receipt.cursor, turns_ended(1)))
        await client.wait(await client.send(sid, "one"))
        seen = durable(await first)
    # disconnected: two more turns happen
    for text in ("two", "three"):
        await client.wait(await client.send(sid, text))
    async with Client(
        transport=WebsocketsTransport(url=ws_url(edge)), fetch_schema_from_transport=False
    ) as session:
        rest = durable(await collect(session, sid, seen[-1][0], turns_ended(2)))
    assert rest == await stored(client, sid, after=seen[-1][0])
    assert seen + rest == await stored(client, sid, after=receipt.cursor)


async def test_subscription_resumes_across_an_edge_restart(
    start_edge: Callable[[], EdgeProcess], worker: InProcessWorker, client: SessionClient
) -> None:
    edge = await asyncio.to_thread(start_edge)
    record, _ = await client.create("echo", initial_message="before")
    sid = record.session_id
    async with Client(
        transport=WebsocketsTransport(url=ws_url(edge)), fetch_schema_from_transport=False
    ) as session:
        seen = durable(await collect(session, sid, 0, turns_ended(1)))
    await asyncio.to_thread(edge.stop)
    for text in ("while", "down"):
        await client.wait(await client.send(sid, text))
    await asyncio.to_thread(edge.start)
    async with Client(
        transport=WebsocketsTransport(url=ws_url(edge)), fetch_schema_from_transport=False
    ) as session:
        rest = durable(await collect(session, sid, seen[-1][0], turns_ended(2)))
    assert seen + rest == await stored(client, sid)


# -- errors and the schema ----------------------------------------------------------------


async def error_of(session: Any, query: str, **variables: Any) -> dict[str, Any]:
    with pytest.raises(TransportQueryError) as caught:
        await session.execute(ask(query, **variables))
    errors = caught.value.errors
    assert errors is not None and len(errors) == 1
    error: dict[str, Any] = errors[0]
    assert "Traceback" not in json.dumps(error)
    return error


async def test_error_codes(
    gql_ws: Any, gql_http: Any, worker: InProcessWorker, client: SessionClient
) -> None:
    e = await error_of(gql_http, '{ agentSession(sessionId: "ses_nope") { state } }')
    assert e["extensions"]["code"] == "NOT_FOUND" and "ses_nope" in e["message"]
    e = await error_of(
        gql_http,
        'mutation { sendMessageToSession(sessionId: "ses_nope", message: "hi") { cursor } }',
    )
    assert e["extensions"]["code"] == "NOT_FOUND"

    sid = await settled_session(client)
    await client.complete(sid)
    e = await error_of(
        gql_http,
        f'mutation {{ sendMessageToSession(sessionId: "{sid}", message: "hi") {{ cursor }} }}',
    )
    assert e["extensions"] == {"code": "CONFLICT", "state": "COMPLETED"}
    e = await error_of(
        gql_http, f'mutation {{ resumeAgentSession(sessionId: "{sid}") {{ state }} }}'
    )
    assert e["extensions"] == {"code": "CONFLICT", "state": "COMPLETED"}

    for query in (
        '{ agentSession(sessionId: "a.b") { state } }',
        'mutation { sendMessageToSession(sessionId: "*", message: "hi") { cursor } }',
    ):
        e = await error_of(gql_http, query)
        assert e["extensions"] == {"code": "BAD_USER_INPUT", "field": "sessionId"}
    e = await error_of(
        gql_http, 'mutation { createAgentSession(agentName: "no-such") { sessionId } }'
    )
    assert e["extensions"] == {"code": "BAD_USER_INPUT", "field": "agentName"}
    e = await error_of(
        gql_http, 'mutation { createAgentSession(agentName: "echo", taskId: "t.1") { sessionId } }'
    )
    assert e["extensions"] == {"code": "BAD_USER_INPUT", "field": "taskId"}
    e = await error_of(gql_http, "{ agentSessions(first: 0) { edges { cursor } } }")
    assert e["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    e = await error_of(
        gql_http,
        'mutation { createAgentSession(agentName: "echo", initialMessage: "hi", '
        'instructions: "") { sessionId } }',
    )
    assert e["extensions"] == {"code": "BAD_USER_INPUT", "field": "instructions"}
    live = await settled_session(client, "recall")
    e = await error_of(
        gql_http,
        f'mutation {{ sendMessageToSession(sessionId: "{live}", message: "hi", '
        f'instructions: "") {{ cursor }} }}',
    )
    assert e["extensions"] == {"code": "BAD_USER_INPUT", "field": "instructions"}
    sent = await gql_http.execute(
        ask(
            'mutation($s: String!) { sendMessageToSession(sessionId: $s, message: "hi", '
            'instructions: "in verse") { commandId cursor } }',
            s=live,
        )
    )
    receipt = sent["sendMessageToSession"]
    events = await client.wait(Receipt(live, receipt["commandId"], receipt["cursor"]))
    [reply] = [e for e in events if isinstance(e, AgentMessage)]
    assert json.loads(reply.content)["instructions"] == "in verse"

    e = await error_of(gql_http, "{ noSuchField }")
    assert e["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(gql_http.transport.url, json={"query": "{ agentSession("})
    assert r.json()["errors"][0]["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}

    with pytest.raises(TransportQueryError) as caught:
        async for _ in gql_ws.subscribe(ask(EVENTS, id="ses_nope")):
            pass
    assert caught.value.errors and caught.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_the_sdl_file_is_the_served_schema(edge: EdgeProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(
            f"{edge.url}/graphql", json={"query": get_introspection_query(specified_by_url=True)}
        )
        served = print_schema(lexicographic_sort_schema(build_client_schema(r.json()["data"])))
        page = await http.get(f"{edge.url}/graphql", headers={"accept": "text/html"})
    sdl = (ROOT / "schemas" / "agent_session.graphql").read_text()
    assert served == print_schema(lexicographic_sort_schema(build_schema(sdl))), (
        "run: python -m praxis.edge.graphql > schemas/agent_session.graphql"
    )
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_joining_mid_turn_gets_the_text_so_far_then_the_rest(
    gql_ws: Any, worker: InProcessWorker, client: SessionClient
) -> None:
    record, sent = await slow_turn_streaming(client, pieces=30, delay=0.03, at_least=5)
    events = await collect(
        gql_ws, record.session_id, None, lambda got: got[-1]["type"] == "agent.message"
    )
    assert events[0]["type"] == "token.delta" and len(events[0]["data"]["text"].split()) >= 5
    text = "".join(e["data"]["text"] for e in events if e["type"] == "token.delta")
    assert text == events[-1]["data"]["content"] == "".join(f"w{i} " for i in range(30))
    await client.wait(sent)


async def test_a_closed_subscription_leaves_nothing_on_the_bus(
    edge: EdgeProcess, nats: NatsServer, worker: InProcessWorker, client: SessionClient
) -> None:
    sid = await settled_session(client)

    transport = WebsocketsTransport(url=ws_url(edge))
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        watching = asyncio.create_task(collect(session, sid, None, lambda _: False, 60))
        await eventually(live_count_is(nats, sid, 1), 10, "the edge to follow the session")
        # the WebSocket closes with the subscription still open
    await eventually(
        live_count_is(nats, sid, 0), 10, "the edge to drop the session's live subscription"
    )
    watching.cancel()
    await asyncio.gather(watching, return_exceptions=True)


async def test_a_subscription_open_while_its_edge_stops_ends_with_where_to_follow_again(
    start_edge: Callable[[], EdgeProcess], worker: InProcessWorker, client: SessionClient
) -> None:
    """The edge stops (SIGTERM) with a subscription open: the subscriber gets an error
    with the code UNAVAILABLE and the cursor to follow again from, not a masked INTERNAL."""
    edge = await asyncio.to_thread(start_edge)
    record, _ = await client.create("echo", initial_message="before")
    sid = record.session_id
    got: list[dict[str, Any]] = []

    async def follow(session: Any) -> None:
        async for result in session.subscribe(ask(EVENTS, id=sid, after=0)):
            got.append(result["agentSessionEvents"])
            if turns_ended(1)(got) and edge.proc is not None:
                edge.proc.terminate()  # the edge stops now; its process is waited below

    async with Client(
        transport=WebsocketsTransport(url=ws_url(edge)), fetch_schema_from_transport=False
    ) as session:
        with pytest.raises(TransportQueryError) as ended:
            await asyncio.wait_for(follow(session), 30)
    await asyncio.to_thread(edge.stop)
    error = ended.value.errors[0] if ended.value.errors else {}
    assert error["extensions"]["code"] == "UNAVAILABLE", error
    assert f"after cursor {durable(got)[-1][0]}" in error["message"], error
    assert "Traceback" not in edge.log.read_text()
