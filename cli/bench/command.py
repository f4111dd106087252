"""``praxis bench``: measure a deployment against the raw JetStream floor, in one run."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from cyclopts import App, Parameter

from praxis.bus import Settings, placement
from praxis.bus.credentials import Credentials
from praxis.cli import term
from praxis.cli.bench import fanout, floor, graphql, latency, load, render, resume, stream
from praxis.cli.bench import plot as plotting
from praxis.cli.bench import server as bench_server
from praxis.cli.bench.report import Report
from praxis.cli.bench.stack import RAW_STREAM, BenchError, Stack, cpu_ms_per_turn, deployment
from praxis.cli.bench.stats import Series
from praxis.cli.runtime import load_settings, run_coro, setup_logging

Scenario = Literal["create", "turn", "resume", "load", "scale", "fanout", "stream"]

bench_app = App(name="bench")  # its help: praxis.cli.app


@dataclass
class Options:
    rounds: int
    turns: int
    creates: int
    sessions: list[int]
    seconds: float
    workers: list[int]
    subscribers: int
    history: list[int]
    streams: int = 100
    tokens: int = 200
    token_rate: float = 20.0
    agent: str = "echo"
    metadata: dict[str, Any] = field(default_factory=dict)
    """The agent of the turn and load sessions: echo, or the synthetic model."""
    nodes: list[int] = field(default_factory=lambda: [1])
    partitions: list[int] = field(default_factory=lambda: [1])
    """scale with more than one of either: a grid of deployments of our own."""

    @property
    def grid(self) -> bool:
        return self.nodes != [1] or self.partitions != [1]


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


@dataclass
class Steps:
    """What the run is doing, as lines on stderr, and how far it is, as a bar of its steps
    (rounds, loads, worker counts, fan-outs) below them on a terminal."""

    advance: Callable[[int], None]

    def note(self, text: str) -> None:
        progress(text)

    def done(self, text: str) -> None:
        progress(text)
        self.advance(1)


def step_count(scenarios: set[str], o: Options) -> int:
    return (
        (o.rounds if scenarios & {"create", "turn"} else 0)
        + (len(o.sessions) if "load" in scenarios else 0)
        + (len(o.workers) if "scale" in scenarios and not o.grid else 0)
        + (_cells(o) * len(o.workers) * len(o.sessions) if "scale" in scenarios and o.grid else 0)
        + (2 if "fanout" in scenarios else 0)
        + (2 if "stream" in scenarios else 0)
        + (o.rounds if "resume" in scenarios else 0)
    )


async def run_latency(
    stack: Stack, scenarios: set[str], o: Options, report: Report, steps: Steps
) -> None:
    """Alternating rounds of the floor and each measurement, so all see the same machine."""
    client, creds = stack.client, Credentials.from_settings(stack.settings).options()
    base = await stack.start_edge() if stack.edge_url or stack.own else None
    names = {
        "create": ["create (bus)", "create (REST)", "create (GraphQL)"],
        "turn": [
            "turn: first token (bus)",
            "turn: agent message (bus)",
            "turn: completed (bus)",
            "turn: first token (REST SSE)",
            "turn: completed (REST SSE)",
            "turn: completed (OpenAI SSE)",
            "turn: completed (GraphQL)",
        ],
    }
    series = {n: Series(n) for kind in ("create", "turn") if kind in scenarios for n in names[kind]}
    record, receipt = await client.create(o.agent, metadata=o.metadata)
    await client.wait(receipt)
    sid = record.session_id
    async with httpx.AsyncClient(timeout=60) as http:
        # Warm every path up before measuring.
        await floor.raw_loop(stack.url, creds, 50)
        if "turn" in scenarios:
            await latency.bus_turns(client, sid, 20)
            if base:
                await latency.http_turns(http, base, sid, 20)
                await latency.openai_turns(http, base, sid, 20)
                await graphql.graphql_turns(client, http, base, 20)
        per_turn, per_create = max(1, o.turns // o.rounds), max(1, o.creates // o.rounds)
        for n in range(o.rounds):
            report.floor.add_round(await floor.raw_loop(stack.url, creds, per_turn))
            if "turn" in scenarios:
                t = await latency.bus_turns(client, sid, per_turn)
                series["turn: first token (bus)"].add_round(t["first"])
                series["turn: agent message (bus)"].add_round(t["reply"])
                series["turn: completed (bus)"].add_round(t["done"])
                if base:
                    h = await latency.http_turns(http, base, sid, per_turn)
                    series["turn: first token (REST SSE)"].add_round(h["first"])
                    series["turn: completed (REST SSE)"].add_round(h["done"])
                    oa = await latency.openai_turns(http, base, sid, per_turn)
                    series["turn: completed (OpenAI SSE)"].add_round(oa["done"])
                    g = await graphql.graphql_turns(client, http, base, per_turn)
                    series["turn: completed (GraphQL)"].add_round(g["done"])
            if "create" in scenarios:
                series["create (bus)"].add_round(await latency.bus_creates(client, per_create))
                if base:
                    rest = await latency.http_creates(http, base, per_create)
                    series["create (REST)"].add_round(rest)
                    gql = await latency.graphql_creates(http, base, per_create)
                    series["create (GraphQL)"].add_round(gql)
            floor_p50 = report.floor.round_p50s[-1]
            steps.done(
                f"round {n + 1}/{o.rounds}: floor p50 {floor_p50:.3f} ms"
                + "".join(
                    f", {s.name} {s.round_p50s[-1]:.3f}"
                    for s in series.values()
                    if s.rounds and len(s.rounds) == n + 1
                )
            )
    report.latency = list(series.values())


async def run_load(stack: Stack, o: Options, report: Report, steps: Steps) -> None:
    """Closed loops at each concurrency, beside the floor's at the same concurrency."""
    creds = Credentials.from_settings(stack.settings).options()
    if stack.own:
        await stack.set_workers(max(1, min(o.workers)))
    for n in o.sessions:
        steps.note(f"load: {n} sessions, {o.seconds:g} s (floor first)")
        cpu_before = stack.cpu_seconds()
        server_before = await stack.server_counts(work=False)
        raw_before = (await stack.bus.js.stream_info(RAW_STREAM)).state.last_seq
        raw, took = await floor.raw_load(stack.url, creds, sessions=n, duration=o.seconds)
        cpu_after = stack.cpu_seconds()
        server_after = await stack.server_counts(work=False)
        raw_writes = (await stack.bus.js.stream_info(RAW_STREAM)).state.last_seq - raw_before
        raw_series = Series("floor")
        raw_series.add_round(raw)
        rss_before = stack.worker_rss()
        sids = await load.new_sessions(stack.client, n, o.agent, o.metadata)
        found = await load.closed_loops(
            stack.client, sids, o.seconds, "praxis", stack.cpu_seconds, stack.server_counts
        )
        rss_after = stack.worker_rss()  # every session idle now, none forgotten
        if rss_before is not None and rss_after is not None:
            found.extra["worker_rss_mb"] = {
                "before": rss_before / 2**20,
                "after": rss_after / 2**20,
            }
        floor_rate = len(raw) / took
        report.load.append(
            {
                "name": "floor",
                "sessions": n,
                "seconds": took,
                "turns": len(raw),
                "turns_per_s": floor_rate,
                "errors": 0,
                "turn_ms": raw_series.summary(),
                "writes_per_turn": raw_writes / max(1, len(raw)),
                **cpu_ms_per_turn(cpu_before, cpu_after, len(raw)),
                **bench_server.per_turn(server_before, server_after, len(raw)),
            }
        )
        report.load.append(
            {"name": "praxis", **found.summary(), "of_floor": found.per_second / floor_rate}
        )
        steps.done(
            f"load: {n} sessions: {found.per_second:.0f} turns/s "
            f"({found.per_second / floor_rate:.0%} of the floor's {floor_rate:.0f}), "
            f"{found.errors} errors"
        )
        for kind, count in found.extra.get("error_kinds", {}).items():
            steps.note(f"  {count} x {kind}")


async def run_scale(stack: Stack, o: Options, report: Report, steps: Steps) -> None:
    n = max(o.sessions)
    sids = await load.new_sessions(stack.client, n, o.agent, o.metadata)
    one: float | None = None
    for workers in o.workers:
        await stack.set_workers(workers)
        steps.note(f"scale: {workers} worker process(es), {n} sessions, {o.seconds:g} s")
        found = await load.closed_loops(
            stack.client, sids, o.seconds, "praxis", stack.cpu_seconds, stack.server_counts
        )
        one = one or found.per_second
        report.scale.append(
            {"workers": workers, **found.summary(), "vs_one": found.per_second / one}
        )
        steps.done(f"scale: {workers} worker(s): {found.per_second:.0f} turns/s")


def _cells(o: Options) -> int:
    return len(o.nodes) * len(o.partitions)


async def run_grid(settings: Settings, o: Options, report: Report, steps: Steps) -> None:
    """scale over a grid: for each count of NATS nodes and of partitions a deployment of its
    own (a loopback cluster, R3, its partition leaders spread), each worker count and
    session count in it: turns/s, latency, and the share of the server's CPU each node did."""
    for nodes, parts in itertools.product(o.nodes, o.partitions):
        async with deployment(settings, None, None, nodes=nodes, partitions=parts) as stack:
            if nodes > 1:
                await placement.rebalance(stack.bus)
            await stack.set_workers(min(o.workers))
            sids = await load.new_sessions(stack.client, max(o.sessions), o.agent, o.metadata)
            for workers in o.workers:
                await stack.set_workers(workers)
                for n in o.sessions:
                    cell = f"{nodes} node(s), {parts} partition(s), {workers} worker(s), {n}"
                    steps.note(f"scale: {cell} sessions, {o.seconds:g} s")
                    before = stack.node_cpu()
                    found = await load.closed_loops(
                        stack.client, sids[:n], o.seconds, "praxis", stack.cpu_seconds,
                        stack.server_counts,
                    )  # fmt: skip
                    used = {k: v - before[k] for k, v in stack.node_cpu().items()}
                    report.grid.append(
                        {
                            "nodes": nodes,
                            "partitions": parts,
                            "workers": workers,
                            **found.summary(),
                            **_by_node(used, found.turns),
                        }
                    )
                    steps.done(f"scale: {cell} sessions: {found.per_second:.0f} turns/s")


def _by_node(used: dict[str, float], turns: int) -> dict[str, Any]:
    """Each node's server CPU per turn and its share of all nodes' (a cluster's)."""
    total = sum(used.values())
    if len(used) < 2 or not turns or total <= 0:
        return {}
    return {
        "node_cpu_ms_per_turn": {k: v * 1000 / turns for k, v in used.items()},
        "node_share": {k: v / total for k, v in used.items()},
    }


async def run_stream(stack: Stack, o: Options, report: Report, steps: Steps) -> None:
    """Streaming capacity: the floor's relay, then Praxis, with the same streams."""
    shape = f"{o.streams} streams x {o.tokens} tokens at {o.token_rate:g}/s"
    steps.note(f"stream: {shape}, the floor first")
    report.stream["floor"] = await stream.floor_streams(stack, o.streams, o.tokens, o.token_rate)
    steps.done(f"stream: floor done; Praxis (REST SSE through one edge), {shape}")
    if stack.own and await stack.concurrency_at_least(o.streams):
        steps.note(f"stream: workers started again to run {o.streams} turns at once")
    report.stream["praxis"] = await stream.praxis_streams(stack, o.streams, o.tokens, o.token_rate)
    steps.done("stream: done")


async def run_fanout(stack: Stack, o: Options, report: Report, steps: Steps) -> None:
    base = await stack.start_edge()
    steps.note(f"fan-out: {o.subscribers} SSE subscribers")
    report.fanout["SSE"] = await fanout.sse_fanout(stack.client, base, o.subscribers)
    steps.done(f"fan-out: SSE done; {o.subscribers} GraphQL subscriptions")
    report.fanout["GraphQL"] = await graphql.graphql_fanout(stack.client, base, o.subscribers)
    steps.done("fan-out: GraphQL done")


async def run(
    settings: Settings,
    scenarios: set[str],
    o: Options,
    nats_url: str | None,
    edge_url: str | None,
) -> Report:
    report = Report()
    total = step_count(scenarios, o)
    grid = "scale" in scenarios and o.grid
    if grid and nats_url is not None:
        raise BenchError("a grid of nodes and partitions starts its own clusters: no --nats-url")
    with term.progress("bench", total) as advance:
        steps = Steps(advance)
        if grid:
            await run_grid(settings, o, report, steps)
            scenarios = scenarios - {"scale"}
        if scenarios:
            async with deployment(settings, nats_url, edge_url) as stack:
                await run_on(stack, scenarios, o, report, steps)
    return report


async def run_on(
    stack: Stack, scenarios: set[str], o: Options, report: Report, steps: Steps
) -> None:
    """The scenarios on one deployment."""
    if "scale" in scenarios and not stack.own:
        raise BenchError("'scale' starts and stops workers: run it without --nats-url")
    if stack.own:
        await stack.set_workers(min(o.workers) if o.workers else 1)
    else:
        await stack.wait_workers(1)
    await stack.start_responder()
    if scenarios & {"create", "turn"}:
        await run_latency(stack, scenarios, o, report, steps)
    if "load" in scenarios:
        await run_load(stack, o, report, steps)
    if "scale" in scenarios:
        await run_scale(stack, o, report, steps)
    if "fanout" in scenarios:
        await run_fanout(stack, o, report, steps)
    if "stream" in scenarios:
        if not stack.own:
            raise BenchError("'stream' measures its own edge: run it without --nats-url")
        await run_stream(stack, o, report, steps)
    if "resume" in scenarios:  # last: it restarts our worker with its cache off
        per_round = max(1, o.turns // (o.rounds * len(o.history)))
        report.resume = await resume.by_history(
            stack, o.history, o.rounds, min(per_round, 20), steps.note, steps.done
        )


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"expected positive numbers separated by commas, got {text!r}")
    return values


@bench_app.default
def bench(
    scenarios: Annotated[
        list[Scenario] | None,
        Parameter(
            help="What to measure (default: create turn): create, turn, resume, load, scale, "
            "fanout, stream."
        ),
    ] = None,
    /,
    *,
    nats_url: Annotated[
        str | None, Parameter(help="A running deployment's NATS (default: start one).")
    ] = None,
    edge_url: Annotated[str | None, Parameter(help="Its edge (with --nats-url).")] = None,
    rounds: Annotated[int, Parameter(help="Alternating rounds of each latency.")] = 5,
    turns: Annotated[int, Parameter(help="Turns measured in all (and floor loops).")] = 1000,
    creates: Annotated[int, Parameter(help="Creates measured per interface.")] = 500,
    sessions: Annotated[
        str, Parameter(help="Concurrent sessions for load, e.g. 1,100,1000.")
    ] = "1,100",
    seconds: Annotated[float, Parameter(help="How long each load runs.")] = 10.0,
    workers: Annotated[str, Parameter(help="Worker processes for scale, e.g. 1,2,4.")] = "1,2",
    nodes: Annotated[
        str, Parameter(help="scale on loopback clusters of these NATS nodes, e.g. 1,3 (R3).")
    ] = "1",
    partitions: Annotated[
        str, Parameter(help="scale on buses of these partitions, e.g. 1,3,6.")
    ] = "1",
    subscribers: Annotated[int, Parameter(help="Subscribers for fanout.")] = 1000,
    streams: Annotated[
        int, Parameter(help="Turns streamed at once for stream (--tokens at --token-rate).")
    ] = 100,
    history: Annotated[
        str, Parameter(help="History lengths for resume, e.g. 10,1000,100000.")
    ] = "10,1000,10000",
    model_latency: Annotated[
        float | None,
        Parameter(
            help="A synthetic model instead of echo for turn and load: ms to its first token."
        ),
    ] = None,
    tokens: Annotated[
        int, Parameter(help="The synthetic model's tokens per reply (stream: 200 unless given).")
    ] = 20,
    token_rate: Annotated[
        float,
        Parameter(help="The synthetic model's tokens per second (0: at once; stream: 20)."),
    ] = 0,
    json_: Annotated[bool, Parameter(name="--json", help="Print JSON instead of tables.")] = False,
    plot: Annotated[
        Path | None,
        Parameter(help="Also draw the figures into this PNG file (needs the plot extra)."),
    ] = None,
) -> int:
    """Measure Praxis and, in the same run, the raw JetStream loop it is compared with (the
    floor: publish, consume in another process, publish the reply, receive; no Praxis code).

    Without --nats-url it starts its own nats-server on a free loopback port, worker
    processes and an edge process, and stops them at the end. Progress goes to stderr."""
    setup_logging("WARNING")
    if min(rounds, turns, creates, subscribers, streams, tokens) < 1 or seconds <= 0:
        raise ValueError(
            "rounds, turns, creates, subscribers, streams, tokens and seconds must be positive"
        )
    if plot is not None:
        plotting.check_available()
    chosen: set[str] = set(scenarios or ("create", "turn"))
    o = Options(
        rounds,
        turns,
        creates,
        _ints(sessions),
        seconds,
        _ints(workers),
        subscribers,
        _ints(history),
        streams,
        tokens if tokens != 20 else 200,
        token_rate or 20.0,
        nodes=_ints(nodes),
        partitions=_ints(partitions),
    )
    if model_latency is not None or token_rate:
        o.agent = "synthetic"
        o.metadata = {
            "latency_ms": model_latency or 0,
            "tokens": tokens,
            "tokens_per_s": token_rate,
        }

    async def main() -> None:
        report = await run(load_settings(), chosen, o, nats_url, edge_url)
        print(json.dumps(report.as_json(), indent=2) if json_ else render.text(report))
        if plot is not None:
            plotting.plot(report.as_json(), plot)
            progress(f"figures drawn into {plot}")

    return run_coro(main())
