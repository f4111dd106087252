"""What one MCP tool call adds to a turn: the same model agent (pydantic-ai's offline
``test`` model, which calls each of its tools once, then answers) with and without a stdio
MCP server of one tool (``deploy/mcp_echo_server.py``), turn by turn in alternation, on a
fresh embedded NATS server and one worker process (each turn the first of a new session:
the test model calls its tools in a session's first turn)::

    python deploy/mcp_overhead.py [turns]      # default 50 of each

It prints the median and the spread (p10-p90) of a turn from the message to
``turn.completed``, through ``SessionClient``: without a tool, with one Python tool
(``deploy/bench_tools.py``) and with the same tool on the MCP server; a tool call adds a
model step and the journal's records, so the Python tool shows what is MCP's own.
Needs the ``mcp`` extra (``pip install 'praxis-sessions[mcp]'``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from praxis.bus import Role, SessionClient, Settings, connect
from praxis.bus.embedded import NatsServer
from praxis.schemas import Interface, ToolResult, TurnCompleted

HERE = Path(__file__).resolve().parent


def agents(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plain.toml").write_text('model = "test:any"\n')
    (folder / "pytool.toml").write_text(
        'model = "test:any"\n[[tools]]\nfunction = "bench_tools:echo"\n'
    )
    (folder / "withmcp.toml").write_text(
        'model = "test:any"\n[[mcp]]\n'
        f'command = "{sys.executable}"\nargs = ["{HERE / "mcp_echo_server.py"}"]\n'
    )


async def turn(client: SessionClient, sid: str) -> tuple[float, bool]:
    began = time.perf_counter()
    called = False
    async for item in client.turn(sid, "go"):
        called = called or isinstance(item.event, ToolResult)
        if isinstance(item.event, TurnCompleted):
            break
    return time.perf_counter() - began, called


async def main(turns: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        agents(home / "agents")
        server = NatsServer(home / "js", log_file=home / "nats.log").start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PRAXIS_")},
            "PRAXIS_NATS_URL": server.url,
            "PRAXIS_AGENTS_DIR": str(home / "agents"),
            "PRAXIS_DATA_DIR": str(home / "data"),
            "PYTHONPATH": str(HERE),  # bench_tools, the Python tool
        }
        worker = subprocess.Popen(  # noqa: ASYNC220 (started once, before any turn)
            [sys.executable, "-m", "praxis.cli", "worker"],
            env=env,
            stderr=(home / "worker.log").open("wb"),
        )
        try:
            settings = Settings(nats_url=server.url, agents_dir=home / "agents")
            async with connect(settings, server.url, "mcp-bench", Role.ADMIN) as bus:
                client = SessionClient(bus, Interface.API)
                while not any(w.agents for w in await client.workers()):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # its heartbeat is all there is to poll

                async def fresh(name: str) -> str:
                    # The test model calls its tools in a session's first turn only: every
                    # measured turn is the first of a new session (not timed).
                    record, receipt = await client.create(name)
                    await client.wait(receipt)
                    return record.session_id

                await turn(client, await fresh("withmcp"))  # warm: the MCP server starts
                took: dict[str, list[float]] = {"plain": [], "pytool": [], "withmcp": []}
                for _ in range(turns):
                    for name in took:
                        seconds, called = await turn(client, await fresh(name))
                        assert called == (name != "plain"), (name, called)
                        took[name].append(seconds * 1000)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            server.stop()

    def line(name: str, values: list[float]) -> str:
        low, *_, high = statistics.quantiles(values, n=10)
        p50 = statistics.median(values)
        return f"{name:<22} p50 {p50:6.2f} ms  p10-p90 {low:.2f}-{high:.2f}"

    print(f"{turns} turns each, alternating (test model; one worker; embedded NATS)")
    print(line("no tool call", took["plain"]))
    print(line("one Python tool call", took["pytool"]))
    print(line("one MCP tool call", took["withmcp"]))
    p50 = {name: statistics.median(values) for name, values in took.items()}
    print(f"an MCP call adds {p50['withmcp'] - p50['plain']:.2f} ms to a turn at the median;")
    print(f"over a Python tool's call, {p50['withmcp'] - p50['pytool']:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
