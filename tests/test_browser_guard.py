"""A local edge against the web pages its user visits, in headless Chromium: a page served
from another loopback port cannot drive it (a text/plain POST, which browsers send without
a CORS preflight; a form; a JSON fetch), unless its origin is in PRAXIS_CORS_ORIGINS; and a
page whose name resolves to 127.0.0.1 (DNS rebinding) is refused for its Host.

Skipped without Chromium, as the chat page's tests are (failed with PRAXIS_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from praxis.bus import SessionClient, Settings
from tests.conftest import EdgeProcess, InProcessWorker, edge_env
from tests.test_chat_page import CHROMIUM

ATTACK = """<!doctype html><html><body>
<form id="form" method="post" enctype="text/plain" target="sink">
  <input name='{"agent_name": "echo", "x": "' value='"}'>
</form>
<iframe name="sink"></iframe>
<script>
  async function attempt(edge) {
    const out = {};
    const body = JSON.stringify({agent_name: "echo"});
    // No preflight for these: the request reaches the server whatever CORS says.
    await fetch(edge + "/agent-sessions/create", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body}).catch(e => out.plain = String(e));
    // A JSON fetch needs a preflight, and reading the answer needs CORS headers.
    try {
      const r = await fetch(edge + "/agent-sessions/create", {method: "POST",
        headers: {"Content-Type": "application/json"}, body});
      out.json = {status: r.status, body: await r.json()};
    } catch (e) { out.json = {error: String(e)}; }
    const form = document.getElementById("form");
    form.action = edge + "/agent-sessions/create";
    const sink = document.querySelector("iframe");
    const answered = new Promise(done => sink.addEventListener("load", done, {once: true}));
    form.submit();
    await answered;  // the edge has answered the form
    out.form = "answered";
    return out;
  }
</script></body></html>"""


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ATTACK.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def other_site() -> Iterator[str]:
    """A web site on another loopback port: another origin than the edge."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        found = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--host-resolver-rules=MAP rebind.test 127.0.0.1"],
        )
        yield found
        await found.close()


async def _attack(browser: Browser, site: str, edge: str) -> dict[str, Any]:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(site)
    got: dict[str, Any] = await page.evaluate("edge => attempt(edge)", edge)
    await context.close()
    return got


async def _count(client: SessionClient) -> int:
    return len(await client.records())


@contextlib.asynccontextmanager
async def _edge(settings: Settings, log: Path, **env: str) -> AsyncIterator[EdgeProcess]:
    edge = EdgeProcess(edge_env(settings, **env), log)
    await asyncio.to_thread(edge.start)
    try:
        yield edge
    finally:
        await asyncio.to_thread(edge.stop)


async def test_a_page_of_another_origin_cannot_drive_the_edge(
    browser: Browser,
    other_site: str,
    settings: Settings,
    client: SessionClient,
    worker: InProcessWorker,
    tmp_path: Path,
) -> None:
    async with _edge(settings, tmp_path / "edge.log") as edge:
        before = await _count(client)
        got = await _attack(browser, other_site, edge.url)
        assert "error" in got["json"]  # the preflight was refused: nothing to read
        # The text/plain fetch and the form reached the edge (each was answered) and were
        # refused: no session was created.
        assert got["form"] == "answered"
        assert await _count(client) == before
    log = (tmp_path / "edge.log").read_text()
    assert "Traceback" not in log


async def test_an_origin_allowed_by_setting_may(
    browser: Browser,
    other_site: str,
    settings: Settings,
    client: SessionClient,
    worker: InProcessWorker,
    tmp_path: Path,
) -> None:
    async with _edge(settings, tmp_path / "edge.log", PRAXIS_CORS_ORIGINS=other_site) as edge:
        before = await _count(client)
        got = await _attack(browser, other_site, edge.url)
        assert got["json"]["status"] == 201, got
        made = got["json"]["body"]["session_id"]
        assert (await client.get(made)).agent == "echo"
        # The JSON fetch only: the text/plain one and the form are refused all the same.
        assert await _count(client) == before + 1


async def test_a_rebound_name_is_refused(
    browser: Browser, settings: Settings, client: SessionClient, tmp_path: Path
) -> None:
    """rebind.test resolves to 127.0.0.1 in this browser: its page is same-origin with
    itself, so the browser would let it read the edge; the edge refuses the name."""
    async with _edge(settings, tmp_path / "edge.log") as edge:
        port = edge.url.rsplit(":", 1)[1]
        context = await browser.new_context()
        page = await context.new_page()
        before = await _count(client)
        answer = await page.goto(f"http://rebind.test:{port}/")
        assert answer is not None and answer.status == 400
        assert "not this edge's address" in await page.content()
        status = await page.evaluate(
            """() => fetch("/agent-sessions/create", {method: "POST",
                 headers: {"Content-Type": "application/json"},
                 body: JSON.stringify({agent_name: "echo"})}).then(r => r.status)"""
        )
        assert status == 400
        assert await _count(client) == before
        await context.close()
