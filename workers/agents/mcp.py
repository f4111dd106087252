"""MCP servers for model agents: kept up between turns, restarted when they die, and told
which session, task and turn every call serves.

**One server, many turns.** A server is started once per worker (on the first turn that
needs it) by a supervisor task that holds its connection open; every turn's calls go
through that connection. (pydantic-ai would otherwise open the server per agent run: a
new process, and an MCP handshake, per turn.)

**Death and restart.** A call that finds the connection closed (the process exited, the
HTTP server went away) fails its turn with a reason that says so — it is not retried,
since the server may have done part of the call before it died — and the supervisor
starts the server again, after 0.5 s, then 1, 2, 4, ... at most 30 s between attempts,
until it runs. A turn that comes meanwhile waits for it up to the server's ``timeout``,
then fails saying the server is down. The session goes on either way.

**Hangs.** Each call is bounded by the server's ``timeout``; the model is told the call
timed out (it may try once more), and the turn by ``PRAXIS_TURN_TIMEOUT``.

**Concurrency.** MCP multiplexes requests on one connection (each has its id), so turns
of different sessions share a server; at most ``max_concurrent_calls`` calls are in
flight on it at once (8 by default), the others wait. Set it to 1 for a server whose
tools are not safe to run concurrently.

**Session context.** Every call carries, in the MCP request's ``_meta``:
``praxis/session_id``, ``praxis/task_id``, ``praxis/turn_id``, ``praxis/agent`` and
``praxis/actor`` (who sent the message, when known). A streamable-HTTP server with
``session_headers = true`` also gets them as request headers (``X-Praxis-Session-Id``,
``X-Praxis-Task-Id``, ``X-Praxis-Turn-Id``, ``X-Praxis-Agent``, ``X-Praxis-Actor``); headers
are per connection, so such a server gets a connection (an MCP session) per turn rather
than one kept for all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio
from pydantic_ai import RunContext, WrapperToolset
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool

from praxis.workers.agents.base import AgentFailure
from praxis.workers.agents.tools import ToolContext

if TYPE_CHECKING:
    from pydantic_ai.mcp import CallToolFunc, ToolResult

log = logging.getLogger(__name__)

META_PREFIX = "praxis/"
HEADER_PREFIX = "X-Praxis-"
CONNECTION_CLOSED = -32000  # the MCP SDK's error code for a connection that ended
FIRST_RETRY = 0.5
LAST_RETRY = 30.0


def session_context(deps: ToolContext) -> dict[str, str]:
    """What a tool call serves: ``{"session_id": ..., "task_id": ..., ...}``."""
    found = {
        "session_id": deps.session_id,
        "task_id": deps.task_id,
        "turn_id": deps.turn_id,
        "agent": deps.agent,
        "actor": deps.actor,
    }
    return {k: v for k, v in found.items() if v}


def session_meta(deps: ToolContext) -> dict[str, str]:
    """The MCP request's ``_meta`` entries: ``praxis/session_id``, ..."""
    return {META_PREFIX + k: v for k, v in session_context(deps).items()}


def session_headers(deps: ToolContext) -> dict[str, str]:
    """The same as HTTP headers: ``X-Praxis-Session-Id``, ..."""
    return {
        HEADER_PREFIX + "-".join(p.capitalize() for p in k.split("_")): v
        for k, v in session_context(deps).items()
    }


async def with_session_meta(
    ctx: RunContext[ToolContext], call_tool: CallToolFunc, name: str, args: dict[str, Any]
) -> ToolResult:
    """pydantic-ai's ``process_tool_call`` hook: every call carries the session context."""
    return await call_tool(name, args, metadata=session_meta(ctx.deps))


def connection_lost(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) says the server's connection is gone."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, anyio.ClosedResourceError | anyio.BrokenResourceError):
            return True
        if isinstance(seen, ConnectionError):
            return True
        error = getattr(seen, "error", None)
        if getattr(error, "code", None) == CONNECTION_CLOSED:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class ServerDown(AgentFailure):
    """An MCP server a turn needs is not running: the turn fails with this reason."""


class KeptServer(WrapperToolset[ToolContext]):
    """An MCP toolset held open by a supervisor task between turns, and restarted when its
    connection is lost (see the module's description)."""

    def __init__(
        self, wrapped: AbstractToolset[ToolContext], name: str, timeout: float, max_calls: int
    ) -> None:
        super().__init__(wrapped)
        self.name = name
        self.timeout = timeout
        self.calls = asyncio.Semaphore(max_calls)
        self.starts = 0
        """How often the server was started (1 while it never died)."""
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = None

    # A run enters and leaves the toolset; the supervisor holds the real connection.
    async def __aenter__(self) -> KeptServer:
        await self._wait_up()
        return self

    async def __aexit__(self, *args: Any) -> bool | None:
        return None

    async def for_run(self, ctx: RunContext[ToolContext]) -> AbstractToolset[ToolContext]:
        return self  # one connection for every run

    async def get_tools(self, ctx: RunContext[ToolContext]) -> dict[str, ToolsetTool[ToolContext]]:
        await self._wait_up()
        try:
            return await super().get_tools(ctx)
        except Exception as e:
            raise self._failed(e, "listing its tools") from e

    async def call_tool(
        self,
        name: str,
        tool_args: dict[str, Any],
        ctx: RunContext[ToolContext],
        tool: ToolsetTool[ToolContext],
    ) -> Any:
        await self._wait_up()
        async with self.calls:
            try:
                return await super().call_tool(name, tool_args, ctx, tool)
            except Exception as e:
                if not connection_lost(e):
                    raise  # the tool's own error (or a timeout): the model is told
                raise self._failed(e, f"the call of {name}") from e

    def _failed(self, e: BaseException, during: str) -> BaseException:
        if not connection_lost(e):
            return e
        self._error = str(e) or type(e).__name__
        self._up.clear()
        self._lost.set()  # the supervisor starts it again
        log.warning("MCP server %s stopped during %s (%s): restarting it", self.name, during, e)
        return ServerDown(
            f"MCP server {self.name} stopped during {during} ({self._error}); it is being "
            "restarted: send the message again"
        )

    async def _wait_up(self) -> None:
        if self._up.is_set():
            return
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self._supervise(), name=f"mcp {self.name}")
        try:
            async with asyncio.timeout(self.timeout):
                await self._up.wait()
        except TimeoutError:
            why = f": {self._error}" if self._error else ""
            raise ServerDown(
                f"MCP server {self.name} is not running (not up within {self.timeout:g}s{why})"
            ) from None

    async def _supervise(self) -> None:
        delay = FIRST_RETRY
        while not self._closing:
            self._lost.clear()
            try:
                async with self.wrapped:
                    self.starts += 1
                    self._error = None
                    self._up.set()
                    delay = FIRST_RETRY
                    await self._lost.wait()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    raise
                self._error = self._error or "its connection was cancelled"  # it died under us
            except Exception as e:
                self._error = str(e) or type(e).__name__
                log.warning("MCP server %s could not start or stopped: %s", self.name, e)
            self._up.clear()
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY)

    async def close(self) -> None:
        """Stop the server (the worker is draining)."""
        self._closing = True
        self._lost.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(self.timeout):
                    await task
            except TimeoutError:
                task.cancel()
            except Exception as e:
                log.warning("MCP server %s did not stop cleanly: %s", self.name, e)
        self._up.clear()
