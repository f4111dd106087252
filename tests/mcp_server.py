"""An MCP server for the tests, over stdio (run as ``python -m tests.mcp_server``), written
with the ``mcp`` package. Every call is appended to the file named by PRAXIS_TEST_TOOL_LOG."""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer

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


if __name__ == "__main__":
    server.run("stdio")
