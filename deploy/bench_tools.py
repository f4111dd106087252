"""A Python tool for ``deploy/mcp_overhead.py``: the same as the MCP server's ``echo``."""


def echo(text: str) -> str:
    """Return ``text``."""
    return text
