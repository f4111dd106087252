"""The benchmark's SSE reader: one HTTP/1.1 request on its own connection, the response
read as lines with asyncio's streams (chunked or not). Thousands of them in one process
cost a fraction of what httpx's line iterator does, so that with 10,000 streams the
benchmark's own process is not what is measured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit


class SSEError(Exception):
    """The stream could not be opened (its status and the start of its body) or broke."""


@asynccontextmanager
async def open_stream(
    url: str, body: dict[str, Any] | None = None, timeout: float = 120
) -> AsyncIterator[AsyncIterator[bytes]]:
    """``GET url`` (``POST`` with a JSON ``body``); the lines of a 200 response, without
    their line ends. Anything else raises :class:`SSEError` naming the status and body."""
    where = urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(where.hostname, where.port), timeout
    )
    try:
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{'POST' if body is not None else 'GET'} {where.path}"
            f"{'?' + where.query if where.query else ''} HTTP/1.1\r\n"
            f"Host: {where.netloc}\r\nAccept: text/event-stream\r\n"
            + (f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n")
            + "\r\n"
        )
        writer.write(head.encode() + payload)
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), timeout)) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        if status != 200:
            size = int(headers.get("content-length", "0") or 0)
            text = await reader.read(min(size, 500)) if size else b""
            raise SSEError(f"{status}: {text[:300]!r}")
        yield _lines(reader, chunked)
    finally:
        writer.close()


async def _lines(reader: asyncio.StreamReader, chunked: bool) -> AsyncIterator[bytes]:
    if not chunked:
        while line := await reader.readline():
            yield line.rstrip(b"\r\n")
        return
    pending = b""
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise SSEError("the stream broke off")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return
        pending += (await reader.readexactly(size + 2))[:-2]
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.rstrip(b"\r")
