"""Model servers for the tests: on a loopback port, speaking the OpenAI chat-completions and
the Anthropic messages streaming protocols (server-sent events, as the real APIs send them),
driven by a script of replies. The real provider clients (the openai and anthropic SDKs,
through pydantic-ai) talk to them; nothing in Praxis knows they are fakes."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Text:
    text: str
    input_tokens: int = 11
    output_tokens: int = 7
    delay: float = 0.0
    """Seconds between streamed pieces."""
    usage: bool = True
    """Whether the stream reports usage (llama.cpp's server, for one, does not)."""


@dataclass
class Call:
    name: str
    args: dict[str, Any]
    call_id: str = "call_1"
    text: str = ""
    """Text before the call, in the same response."""
    input_tokens: int = 13
    output_tokens: int = 5
    usage: bool = True


@dataclass
class Fail:
    status: int
    message: str = "the model is unwell"
    retry_after_ms: int | None = None
    kind: str | None = None
    """The error's type (default: by status, as the providers name them)."""
    code: str | None = None
    """OpenAI's error code (``context_length_exceeded``, ...)."""

    def kind_for(self, provider: str) -> str:
        if self.kind:
            return self.kind
        named = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}
        default = "server_error" if provider == "openai" else "api_error"
        return named.get(self.status, default)


Reply = Text | Call | Fail


@dataclass
class Script:
    """What the server answers, request by request; when the script runs out it answers
    ``model heard: <the last user message>``."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    always: Reply | None = None
    """Answer every request with this (after the script)."""

    def next(self, body: dict[str, Any]) -> Reply:
        self.requests.append(body)
        if self.replies:
            return self.replies.pop(0)
        if self.always is not None:
            return self.always
        return Text(f"model heard: {last_user_text(body)}")


def last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages", [])):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        texts = [p.get("text", "") for p in content or [] if p.get("type") == "text"]
        if texts:
            return "".join(texts)
    return ""


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


# -- OpenAI chat completions ---------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def _openai_stream(reply: Text | Call) -> AsyncIterator[str]:
    yield _chunk({"role": "assistant", "content": ""})
    text = reply.text
    for piece in _pieces(text) if text else []:
        if isinstance(reply, Text) and reply.delay:
            await asyncio.sleep(reply.delay)
        yield _chunk({"content": piece})
    if isinstance(reply, Call):
        args = json.dumps(reply.args)
        head = {"index": 0, "id": reply.call_id, "type": "function"}
        yield _chunk({"tool_calls": [{**head, "function": {"name": reply.name, "arguments": ""}}]})
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        yield _chunk({}, "tool_calls")
    else:
        yield _chunk({}, "stop")
    if not reply.usage:
        yield "data: [DONE]\n\n"
        return
    usage = {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [],
        "usage": usage,
    }
    yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def _failure(reply: Fail, body: dict[str, Any]) -> Response:
    headers = {}
    if reply.retry_after_ms is not None:
        headers["retry-after-ms"] = str(reply.retry_after_ms)
        headers["retry-after"] = str(max(1, reply.retry_after_ms // 1000))
    return JSONResponse(body, status_code=reply.status, headers=headers)


async def openai_chat(request: Request) -> Response:
    script: Script = request.app.state.script
    body = await request.json()
    reply = script.next(body)
    if isinstance(reply, Fail):
        error = {"message": reply.message, "type": reply.kind_for("openai"), "code": reply.code}
        return _failure(reply, {"error": error})
    if not body.get("stream"):
        return JSONResponse(_openai_whole(reply))
    return StreamingResponse(_openai_stream(reply), media_type="text/event-stream")


def _openai_whole(reply: Text | Call) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if isinstance(reply, Call):
        message["tool_calls"] = [
            {
                "id": reply.call_id,
                "type": "function",
                "function": {"name": reply.name, "arguments": json.dumps(reply.args)},
            }
        ]
    finish = "tool_calls" if isinstance(reply, Call) else "stop"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


# -- Anthropic messages ------------------------------------------------------------------------


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


async def _anthropic_stream(reply: Text | Call) -> AsyncIterator[str]:
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "fake",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
    }
    yield _event("message_start", {"message": message})
    index = 0
    if reply.text:
        start = {"index": 0, "content_block": {"type": "text", "text": ""}}
        yield _event("content_block_start", start)
        for piece in _pieces(reply.text):
            if isinstance(reply, Text) and reply.delay:
                await asyncio.sleep(reply.delay)
            delta = {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            yield _event("content_block_delta", delta)
        yield _event("content_block_stop", {"index": 0})
        index = 1
    if isinstance(reply, Call):
        block = {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": {}}
        yield _event("content_block_start", {"index": index, "content_block": block})
        partial = {"type": "input_json_delta", "partial_json": json.dumps(reply.args)}
        yield _event("content_block_delta", {"index": index, "delta": partial})
        yield _event("content_block_stop", {"index": index})
    stop = "tool_use" if isinstance(reply, Call) else "end_turn"
    yield _event(
        "message_delta",
        {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield _event("message_stop", {})


async def anthropic_messages(request: Request) -> Response:
    script: Script = request.app.state.script
    body = await request.json()
    reply = script.next(body)
    if isinstance(reply, Fail):
        kind = reply.kind_for("anthropic")
        error = {"type": "error", "error": {"type": kind, "message": reply.message}}
        return _failure(reply, error)
    if not body.get("stream"):
        return JSONResponse(_anthropic_whole(reply))
    return StreamingResponse(_anthropic_stream(reply), media_type="text/event-stream")


def _anthropic_whole(reply: Text | Call) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    if isinstance(reply, Call):
        content.append(
            {"type": "tool_use", "id": reply.call_id, "name": reply.name, "input": reply.args}
        )
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "fake",
        "content": content,
        "stop_reason": "tool_use" if isinstance(reply, Call) else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


# -- the server ----------------------------------------------------------------------------------


class LoopbackServer:
    """An ASGI app served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)  # connections wait in the backlog until uvicorn serves
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


class FakeModelServer(LoopbackServer):
    """Both protocols on one loopback port."""

    def __init__(self) -> None:
        self.script = Script()
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", openai_chat, methods=["POST"]),
                Route("/v1/messages", anthropic_messages, methods=["POST"]),
            ]
        )
        app.state.script = self.script
        super().__init__(app)

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def start(self) -> FakeModelServer:
        super().start()
        return self

    def reset(self, *replies: Reply, always: Reply | None = None) -> Script:
        self.script.replies[:] = list(replies)
        self.script.requests.clear()
        self.script.always = always
        return self.script
