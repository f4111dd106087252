"""The chat page the edge serves at ``/``, driven end to end in headless Chromium (Debian's
``chromium`` package, through Playwright with ``executable_path``): a session started in the
CLI continued in the page, a session started in the page, live replies, a tool call approved
with a click, a reply stopped, suspend and resume, and the page asking for a key when the
edge needs one.

Without Chromium these tests are skipped, unless ``PRAXIS_REQUIRE_BROWSER=1`` (as in
``.ci/run``, which installs it), where its absence fails them."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from praxis.bus import SessionClient, Settings
from tests.conftest import (
    EdgeProcess,
    InProcessWorker,
    WorkerProcess,
    env_for,
    live_workers,
    praxis,
    stored_events,
)
from tests.fake_models import Call, FakeModelServer, Text
from tests.test_approvals import REFUND
from tests.test_cli import session_of
from tests.test_model_agents import define, openai_agent

CHROMIUM = os.environ.get("PRAXIS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("PRAXIS_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"PRAXIS_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}")
    pytest.skip(
        "no Chromium: apt install chromium (or set PRAXIS_CHROMIUM)", allow_module_level=True
    )

WAIT = 20_000  # ms: Playwright's expectations retry until then


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        found = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield found
        await found.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    await context.close()
    assert errors == [], f"the page's script failed: {errors}"


@pytest.fixture
async def stack(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[..., list[WorkerProcess]],
    start_edge: Callable[[], EdgeProcess],
    models: FakeModelServer,
) -> EdgeProcess:
    """A worker (with a 'shop' agent whose refund tool needs approval) and an edge."""
    define(settings, "shop", openai_agent(models, REFUND))
    worker_processes(1)
    await live_workers(client, 1)
    return start_edge()


async def test_a_session_started_in_the_cli_continues_in_the_page(
    stack: EdgeProcess, settings: Settings, client: SessionClient, page: Page
) -> None:
    run = praxis(
        env_for(settings),
        "agent",
        "run",
        "echo",
        "--task-id",
        "task-web",
        "--message",
        "from the terminal",
    )
    assert run.returncode == 0, run.stderr
    sid = session_of(run.stderr)

    await page.goto(stack.url)
    listed = page.locator(f'#sessions button[data-session-id="{sid}"]')
    await expect(listed).to_contain_text("echo", timeout=WAIT)
    await page.fill("#filter-task", "task-web")
    await page.click("#filter button")
    await expect(page.locator("#sessions li")).to_have_count(1, timeout=WAIT)
    await listed.click()

    messages = page.locator("#messages li")
    await expect(messages).to_have_text(["from the terminal", "from the terminal"], timeout=WAIT)
    await expect(page.locator("#chat-ids")).to_contain_text("task-web")
    await page.fill("#message", "and now from the browser")
    await page.press("#message", "Enter")
    await expect(messages.nth(3)).to_have_text("and now from the browser", timeout=WAIT)
    await expect(page.locator("#messages li.streaming")).to_have_count(0, timeout=WAIT)

    history = await client.history(sid)
    assert [h.content for h in history][-2:] == ["and now from the browser"] * 2
    sent = [e for e in await stored_events(client, sid) if e.type == "user.message"]
    assert [e.interface.value if e.interface else None for e in sent] == ["cli", "api"]

    # Back in the terminal, the same session goes on with what the page said.
    shown = praxis(env_for(settings), "agent", "resume", sid, "--message", "and the terminal again")
    assert shown.returncode == 0, shown.stderr
    # The page, still open, shows what the terminal said, live.
    await expect(messages.nth(5)).to_have_text("and the terminal again", timeout=WAIT)


async def test_start_in_the_page_approve_a_tool_call_suspend_and_resume(
    stack: EdgeProcess, client: SessionClient, models: FakeModelServer, page: Page
) -> None:
    models.reset(
        Call("refund", {"order": "7"}, call_id="r7", text="I can refund that."),
        Text("Refunded order 7."),
    )
    await page.goto(stack.url)
    await page.select_option("#agent", "shop")
    await page.fill("#task-id", "task-refund")
    await page.fill("#first-message", "Refund order 7")
    await page.click("#new-session button[type=submit]")

    approval = page.locator('.approval[data-call-id="r7"]')
    await expect(approval).to_contain_text('refund({"order":"7"})', timeout=WAIT)
    sid = page.url.split("#", 1)[1]
    assert [c.call_id for c in (await client.get(sid)).waiting_for] == ["r7"]
    await approval.locator("button.approve").click()
    await expect(approval).to_have_count(0, timeout=WAIT)
    last = page.locator("#messages li.agent").last
    await expect(last).to_have_text("I can refund that.\n\nRefunded order 7.", timeout=WAIT)
    steps = page.locator("#messages li.tool")  # the tool's call and its result, as notes
    await expect(steps).to_have_text(
        ['tool: refund({"order":"7"}) (needs approval)', "result: order 7 refunded"]
    )
    decided = [e for e in await stored_events(client, sid) if e.type == "tool.decided"]
    assert len(decided) == 1 and decided[0].approved  # type: ignore[attr-defined]

    await page.click("#suspend")
    await expect(page.locator("#chat-state")).to_have_text("SUSPENDED", timeout=WAIT)
    assert (await client.get(sid)).state.value == "SUSPENDED"
    await expect(page.locator("#resume")).to_be_visible()
    await page.click("#resume")
    await expect(page.locator("#chat-state")).to_have_text("ACTIVE", timeout=WAIT)

    # A reload (or another browser) resumes it from the link, with its whole history.
    await page.reload()
    await expect(page.locator("#messages li.user").first).to_have_text(
        "Refund order 7", timeout=WAIT
    )
    await expect(page.locator("#messages li.agent").last).to_have_text(
        "I can refund that.\n\nRefunded order 7."
    )


async def test_stop_cancels_the_reply_in_flight(
    stack: EdgeProcess, client: SessionClient, page: Page
) -> None:
    record, receipt = await client.create(
        "slow", task_id="task-stop", metadata={"pieces": 400, "delay": 0.05}
    )
    await client.wait(receipt)
    sid = record.session_id
    await page.goto(f"{stack.url}/#{sid}")
    await expect(page.locator("#stop")).to_be_hidden(timeout=WAIT)
    await page.fill("#message", "take your time")
    await page.press("#message", "Enter")
    await expect(page.locator("#messages li.streaming")).to_contain_text("w3", timeout=WAIT)
    await page.click("#stop")
    await expect(page.locator("#messages li.note").last).to_have_text(
        "Turn cancelled.", timeout=WAIT
    )
    await expect(page.locator("#stop")).to_be_hidden()
    ended = [e for e in await stored_events(client, sid) if e.type == "turn.failed"]
    assert len(ended) == 1 and ended[0].cancelled  # type: ignore[attr-defined]
    assert not [e for e in await stored_events(client, sid) if e.type == "turn.completed"]


async def test_the_page_asks_for_a_key_when_the_edge_needs_one(
    settings: Settings,
    worker_processes: Callable[..., list[WorkerProcess]],
    client: SessionClient,
    secured_edge: EdgeProcess,
    page: Page,
) -> None:
    worker_processes(1)
    await live_workers(client, 1)
    made = praxis(env_for(settings), "keys", "create", "--principal", "ada")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    await page.goto(secured_edge.url)
    await expect(page.locator("#status")).to_contain_text("API key", timeout=WAIT)
    await page.fill("#api-key", key)
    await page.click("#key-form button")
    await expect(page.locator("#agent option[value=echo]")).to_have_count(1, timeout=WAIT)
    await page.select_option("#agent", "echo")
    await page.fill("#first-message", "with a key")
    await page.click("#new-session button[type=submit]")
    await expect(page.locator("#messages li.agent")).to_have_text("with a key", timeout=WAIT)
    sid = page.url.split("#", 1)[1]
    owner = (await client.get(sid)).owner
    assert owner is not None and owner.principal == "ada"


async def test_the_page_and_its_files(edge: EdgeProcess, worker: InProcessWorker) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=10) as http:
        index = await http.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in index.headers["content-security-policy"]
        assert "<script" in index.text and "/ui/chat.js" in index.text
        assert index.headers["content-type"].count("charset") == 1, index.headers
        head = await http.head("/")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == index.headers["content-type"]
        assert int(head.headers["content-length"]) == len(index.content)
        for icon in ("/favicon.ico", "/ui/favicon.svg"):
            found = await http.get(icon)
            assert found.status_code == 200 and found.headers["content-type"] == "image/svg+xml"
        assert 'rel="icon"' in index.text
        script = await http.get("/ui/chat.js")
        assert script.headers["content-type"].count("charset") == 1, script.headers
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert (await http.get("/ui/../app.py")).status_code == 404
        assert (await http.get("/ui/app.py")).status_code == 404
        agents = (await http.get("/agents")).json()
        assert {"echo", "hello-world"} <= {a["name"] for a in agents}
        schema = (await http.get("/schema/openapi.json")).json()
        assert "/agents" in schema["paths"] and "/" not in schema["paths"]


async def test_graphiql_and_swagger_ui_render_with_no_network(
    browser: Browser, edge: EdgeProcess
) -> None:
    """Both tools load every script and style from the edge itself: with every other
    address refused, GraphiQL shows its editor and Swagger UI the API's operations."""
    context = await browser.new_context()
    elsewhere: list[str] = []

    async def offline(route: Route) -> None:
        if route.request.url.startswith(edge.url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", offline)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        await page.goto(f"{edge.url}/graphql")
        await expect(page.locator(".graphiql-container .graphiql-editor").first).to_be_visible(
            timeout=WAIT
        )
        await expect(page.locator(".graphiql-query-editor")).to_contain_text(
            "GraphiQL", timeout=WAIT
        )
        await page.goto(f"{edge.url}/schema/swagger")
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            "Praxis", timeout=WAIT
        )
        await expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=WAIT)
    finally:
        await context.close()
    assert elsewhere == [], f"asked another host for {elsewhere}"
    assert errors == [], f"a script failed: {errors}"
