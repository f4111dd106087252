"""A one-tool MCP server over stdio, for ``deploy/mcp_overhead.py``: ``echo`` returns its
argument (no work of its own, so the benchmark measures the call, not the tool)."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("praxis-bench-echo")


@server.tool()
def echo(text: str) -> str:
    """Return ``text``."""
    return text


if __name__ == "__main__":
    server.run("stdio")
