"""An MCP server for the tests, over stdio (run as ``python -m tests.mcp_server``), written
with the ``mcp`` package. Every call is appended to the file named by PRAXIS_TEST_TOOL_LOG."""

from __future__ import annotations

import asyncio
import json
import os
import time

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("praxis-test-tools")


def _note(call: dict[str, str]) -> None:
    path = os.environ.get("PRAXIS_TEST_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(call) + "\n")


@server.tool()
def weather(city: str) -> str:
    """Today's weather in a city."""
    _note({"tool": "weather", "city": city})
    return f"sunny in {city}, 21 C"


@server.tool()
def delete_account(user: str) -> str:
    """Delete a user's account (needs approval in the tests' definitions)."""
    _note({"tool": "delete_account", "user": user})
    return f"account {user} deleted"


@server.tool()
def context(ctx: Context) -> str:
    """What the client sent with this call: its _meta and, over HTTP, its headers."""
    request = ctx.request_context
    meta = dict(request.meta or {})
    headers: dict[str, str] = {}
    http = getattr(request, "request", None)
    if http is not None:
        headers = {k: v for k, v in http.headers.items() if k.lower().startswith("x-praxis-")}
    seen = {"tool": "context", "meta": meta, "headers": headers, "pid": os.getpid()}
    _note(seen)
    return json.dumps(seen)


@server.tool()
def die() -> str:
    """Stop this server's process at once (a crash, for the tests)."""
    _note({"tool": "die", "pid": os.getpid()})
    os._exit(3)


@server.tool()
async def nap(seconds: float) -> str:
    """Take ``seconds`` to answer (a hung server, for the tests)."""
    began = time.monotonic()
    await asyncio.sleep(seconds)
    _note({"tool": "nap", "pid": os.getpid(), "began": began, "ended": time.monotonic()})
    return f"slept {seconds}s"


if __name__ == "__main__":
    server.run("stdio")
