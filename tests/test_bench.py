"""Issue 10: 'praxis bench' runs every scenario against a deployment it starts itself (kept
tiny here: its figures are for the README, not for a test), with tables or JSON."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import fresh_env, praxis
from tests.terminal import praxis_tty


async def test_bench_runs_every_scenario_and_reports_against_the_floor(tmp_path: Path) -> None:
    args = [
        *("bench", "create", "turn", "resume", "load", "scale", "fanout"),
        *("--rounds", "2", "--turns", "20", "--creates", "6", "--sessions", "1,4"),
        *("--seconds", "0.5", "--workers", "1,2", "--subscribers", "4", "--history", "10,200"),
        *("--json", "--plot", str(tmp_path / "bench.png")),
    ]
    # stderr on a terminal (a pty): the progress bar is drawn there; stdout stays JSON.
    ran = await asyncio.to_thread(praxis_tty, fresh_env(tmp_path), *args, timeout=240)
    assert ran.returncode == 0, ran.text[-3000:]
    data = json.loads(ran.stdout)
    assert data["floor_ms"]["n"] == 20 and len(data["floor_ms"]["p50_by_round"]) == 2
    for name in ("create (bus)", "create (REST)", "create (GraphQL)"):
        assert data["latency_ms"][name]["n"] == 6
    for interface in ("bus", "REST SSE", "OpenAI SSE", "GraphQL"):
        assert data["latency_ms"][f"turn: completed ({interface})"]["n"] == 20
    assert data["over_floor_p50"]["turn: completed (bus)"] > 1  # Praxis does more than the floor
    assert [(r["name"], r["sessions"]) for r in data["load"]] == [
        ("floor", 1),
        ("praxis", 1),
        ("floor", 4),
        ("praxis", 4),
    ]
    assert all(r["turns"] > 0 and r["errors"] == 0 for r in data["load"])
    for r in data["load"]:  # where each turn's CPU went, by process group
        groups = {"floor": ("client", "responder"), "praxis": ("client", "workers")}[r["name"]]
        assert all(r["cpu_ms_per_turn"][g] > 0 for g in groups), r
    assert all(r["worker_rss_mb"]["after"] > 10 for r in data["load"] if r["name"] == "praxis")
    assert [r["workers"] for r in data["scale"]] == [1, 2] and data["scale"][0]["vs_one"] == 1
    for kind in ("SSE", "GraphQL"):
        assert data["fanout"][kind]["subscribers_with_every_event"] == 4
    assert [r["messages"] for r in data["resume"]] == [10, 200]
    assert "round 2/2" in ran.text  # what it does while it runs, and a bar of its 10 steps:
    assert "bench" in ran.text and "10/10" in ran.text  # 2 rounds, 2 loads, 2 scales, 2
    # fan-outs, 2 resume rounds
    drawn = (tmp_path / "bench.png").read_bytes()
    assert drawn.startswith(b"\x89PNG") and len(drawn) > 20_000  # three panels of figures


async def test_bench_prints_a_table_and_refuses_bad_options(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    ran = await asyncio.to_thread(
        praxis, env, "bench", "--rounds", "1", "--turns", "5", "--creates", "3", timeout=120
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    home = re.search(r"data and logs of this run: (\S+)", ran.stderr)
    assert home is not None, ran.stderr
    assert not await asyncio.to_thread(Path(home[1]).exists), ran.stderr  # clean: gone
    lines = ran.stdout.splitlines()
    assert lines[0].split()[:4] == ["(ms)", "p10", "p50", "p90"]
    assert any(line.startswith("raw JetStream loop (floor)") for line in lines)
    assert any(line.startswith("create (REST)") for line in lines)
    bad = await asyncio.to_thread(praxis, env, "bench", "load", "--sessions", "1,x")
    assert bad.returncode == 1 and "expected numbers separated by commas" in bad.stderr
    unknown = await asyncio.to_thread(praxis, env, "bench", "everything")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    helped = await asyncio.to_thread(praxis, env, "bench", "--help")
    said = " ".join(helped.stdout.replace("│", " ").split())
    assert "create, turn, resume, load, scale, fanout, stream." in said, said
    remote = await asyncio.to_thread(
        praxis, env, "bench", "scale", "--nats-url", "nats://127.0.0.1:1", timeout=60
    )
    assert remote.returncode == 1 and "cannot reach NATS" in remote.stderr


async def test_bench_turns_with_a_synthetic_model(tmp_path: Path) -> None:
    """--model-latency, --tokens and --token-rate: the 'synthetic' agent instead of echo."""
    args = ["bench", "turn", "--rounds", "1", "--turns", "6", "--model-latency", "40"]
    args += ["--tokens", "3", "--token-rate", "50", "--json"]
    ran = await asyncio.to_thread(praxis, fresh_env(tmp_path), *args, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout)["latency_ms"]
    first = found["turn: first token (bus)"]
    done = found["turn: completed (bus)"]
    assert first["p10"] >= 40  # waits for its first token
    assert done["p10"] >= 40 + 2 * 20  # then 3 tokens at 50 a second


def test_bench_plot_says_what_to_install_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from praxis.cli.bench.plot import PlotUnavailableError, check_available

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(PlotUnavailableError, match=r"pip install 'praxis-sessions\[plot\]'"):
        check_available()


async def test_bench_stream_relays_every_token_against_the_floor(tmp_path: Path) -> None:
    """stream: turns of the synthetic model followed over REST SSE through one edge, beside
    the floor's relay of the same streams; every token arrives, in order, with its delay."""
    args = ["bench", "stream", "--streams", "4", "--tokens", "5", "--token-rate", "50"]
    ran = await asyncio.to_thread(praxis, fresh_env(tmp_path), *args, "--json", timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout)["stream"]
    for name, cpu in (("floor", "relay"), ("praxis", "edge")):
        row = found[name]
        assert (row["deltas"], row["complete_streams"], row["errors"]) == (20, 4, 0), row
        assert 0 < row["delay_ms"]["p50"] < 5000 and cpu in row["cpu_ms_per_delta"]
    table = await asyncio.to_thread(praxis, fresh_env(tmp_path), *args, timeout=120)
    assert table.returncode == 0, table.stderr[-3000:]
    assert table.stdout.splitlines()[0].split()[:3] == ["stream", "deltas", "deltas/s"]


async def test_bench_scale_runs_a_grid_of_nodes_and_partitions(tmp_path: Path) -> None:
    """scale with --nodes and --partitions: a deployment of its own per cell (a loopback
    cluster of three, R3, its leaders spread), and each node's share of the server's CPU."""
    args = ["bench", "scale", "--nodes", "1,3", "--partitions", "3", "--workers", "1"]
    args += ["--sessions", "6", "--seconds", "1", "--json"]
    ran = await asyncio.to_thread(praxis, fresh_env(tmp_path), *args, timeout=90)
    assert ran.returncode == 0, ran.stderr[-3000:]
    grid = json.loads(ran.stdout)["grid"]
    assert [(r["nodes"], r["partitions"], r["workers"]) for r in grid] == [(1, 3, 1), (3, 3, 1)]
    assert all(r["turns"] > 0 and r["errors"] == 0 for r in grid)
    assert "node_share" not in grid[0]  # one server: nothing to share
    shares = grid[1]["node_share"]
    assert sorted(shares) == ["n0", "n1", "n2"] and abs(sum(shares.values()) - 1) < 1e-6
    assert all(v > 0 for v in grid[1]["node_cpu_ms_per_turn"].values())
    remote = await asyncio.to_thread(
        praxis, fresh_env(tmp_path), *args, "--nats-url", "nats://127.0.0.1:1", timeout=60
    )
    assert remote.returncode == 1 and "starts its own clusters" in remote.stderr
