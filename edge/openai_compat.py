"""``/v1``: the OpenAI Responses and Conversations APIs over ``SessionClient``, so that code
written for an OpenAI SDK reaches Praxis agents by pointing its ``base_url`` at the edge.

- A **model** is an agent the live workers offer (``GET /v1/models``).
- A **conversation** is a session: its id is the session id, visible to the CLI, REST
  and GraphQL like any other. ``metadata.task_id`` becomes the session's task id (one is
  generated and returned otherwise); ``metadata.model`` names its agent (else the
  ``PRAXIS_OPENAI_AGENT`` setting).
- A **response** is a turn: ``POST /v1/responses`` sends its input as the user's message —
  to ``conversation``, to the session of ``previous_response_id``, or to a new session
  with ``model`` — and answers with the turn's reply (``stream: true``: as the Server-Sent
  Events the SDKs parse). Its id names the session and the command:
  ``resp_<session id>.<command id>.<cursor>``.
- **Sequence numbers** of a streamed response are fixed by the turn, not by the
  connection: ``response.created`` 0, ``response.in_progress`` 1, the output item 2, its
  content part 3, each text delta ``4 + the length of the text up to its end``, then the
  closing events. So ``GET /v1/responses/{id}?stream=true&starting_after=N`` resumes any
  stream — after a disconnect, an edge restart — with exactly the text and events after
  ``N``, whichever edge serves it (its deltas may be cut differently).

Errors are in the OpenAI shape (``{"error": {"message", "type", "param", "code"}}``, see
``problems.openai_error``), with the statuses the SDKs map to their exception classes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Annotated, Any, Literal

from litestar import Controller, HttpMethod, Response, delete, get, post, route
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)
from litestar.params import Parameter
from litestar.response import ServerSentEventMessage
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from praxis.bus import BusError, Receipt, SessionClient, SessionNotFoundError, Settings
from praxis.bus.cache import Bounded
from praxis.bus.state import read_events
from praxis.edge import problems, sse
from praxis.edge.shared import DEPENDENCIES
from praxis.schemas import (
    AgentMessage,
    CommandRejected,
    Event,
    ResponseDeleted,
    SessionRecord,
    TokenDelta,
    TurnCompleted,
    TurnFailed,
    TurnWaiting,
    Usage,
    UserMessageAccepted,
    check_token,
)
from praxis.schemas.commands import MAX_MESSAGE_CHARS

RESPONSE_PREFIX = "resp_"
FIRST_DELTA = 4  # created 0, in_progress 1, output_item.added 2, content_part.added 3


class OpenAIError(Exception):
    """A request the facade refuses, answered in the OpenAI error shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.problem_type = "openai"
        self.param = param
        self.code = code

    def problem_fields(self) -> dict[str, Any]:
        return {"errors": [{"field": self.param or "body", "message": str(self)}]}


# -- request bodies -----------------------------------------------------------------------


class _Loose(BaseModel):
    """The SDKs send many optional fields Praxis does not use; they are accepted."""

    model_config = ConfigDict(extra="allow")


class InputPart(_Loose):
    """A part of an input message; its text is used (``input_text``, ``text``)."""

    type: str = Field(default="input_text", description="The part's type.")
    text: str | None = Field(default=None, description="Its text.")


class InputItem(_Loose):
    """An input message (the user's, or the turn's instructions as a system or developer
    message), or an answer to a tool call waiting for approval (``mcp_approval_response``)."""

    type: str | None = Field(default="message", description="`message`, `mcp_approval_response`.")
    role: str = Field(default="user", description="`user`; `system` or `developer`: instructions.")
    content: str | list[InputPart] = Field(default="", description="Text, or text parts.")
    approval_request_id: str | None = Field(
        default=None, description="`mcp_approval_response`: the call it answers."
    )
    approve: bool | None = Field(default=None, description="`mcp_approval_response`: yes or no.")
    reason: str | None = Field(default=None, description="Why (told to the model on a denial).")


class ConversationRef(_Loose):
    """A conversation named by an object."""

    id: str = Field(description="The conversation (session) id.")


class CreateResponseRequest(_Loose):
    """``POST /v1/responses`` (the fields Praxis reads; others are accepted and ignored)."""

    model: str | None = Field(default=None, description="The agent (for a new session).")
    input: Annotated[str, Field(min_length=1)] | Annotated[list[InputItem], Field(min_length=1)] = (
        Field(description="The user's message: text, or user messages.")
    )
    conversation: str | ConversationRef | None = Field(
        default=None, description="Continue this conversation (session)."
    )
    previous_response_id: str | None = Field(
        default=None, description="Continue the session that response belongs to."
    )
    instructions: str | None = Field(
        default=None,
        max_length=MAX_MESSAGE_CHARS,
        description="Instructions for this response only (with any `system` or `developer` "
        "input messages): a model agent adds them after its own system prompt for this "
        "turn; later turns do not see them. Stored with the user's message.",
    )
    metadata: dict[str, str] | None = Field(
        default=None,
        description="A new session's metadata; `task_id` becomes its task id.",
    )
    stream: bool = Field(default=False, description="Answer as Server-Sent Events.")
    background: bool = Field(
        default=False, description="Answer at once (`in_progress`); retrieve it later."
    )


class ChatMessageIn(_Loose):
    """A Chat Completions message."""

    role: str = Field(description="`system`, `developer`, `user` or `assistant`.")
    content: str | list[InputPart] | None = Field(default=None, description="Its text.")


class ChatCompletionRequest(_Loose):
    """``POST /v1/chat/completions``: the last message is the user's turn; the session is
    ``metadata.conversation`` when given (the turn continues it: earlier messages are
    already its history), else a new one seeded with the earlier messages."""

    model: str = Field(description="The agent.")
    messages: list[ChatMessageIn] = Field(min_length=1, description="The conversation.")
    stream: bool = Field(default=False, description="Answer as chat.completion.chunk events.")
    metadata: dict[str, str] | None = Field(
        default=None,
        description="`conversation`: the session to continue; `task_id`: a new one's task.",
    )


class AddItemsRequest(_Loose):
    """``POST /v1/conversations/{id}/items``: messages to add, without a turn."""

    items: list[InputItem] = Field(
        min_length=1, max_length=100, description="User and assistant messages, in order."
    )


class UpdateConversationRequest(_Loose):
    """``POST /v1/conversations/{id}``: the conversation's metadata from now on."""

    metadata: dict[str, str] = Field(description="Replaces the session's metadata.")


class CreateConversationRequest(_Loose):
    """``POST /v1/conversations``: a new session."""

    metadata: dict[str, str] | None = Field(
        default=None,
        description="`model`: its agent; `task_id`: its task id; the rest is its metadata.",
    )
    items: list[InputItem] | None = Field(
        default=None, description="Messages to start with (added without a turn)."
    )


# -- what the API answers (its shapes, for the OpenAPI document) -----------------------------


def _d(text: str, default: Any = ..., **kw: Any) -> Any:
    return Field(default, description=text, **kw)


class ModelEntry(BaseModel):
    """An agent, as a model."""

    id: str = _d("The agent's name.")
    object: Literal["model"] = _d("`model`.", "model")
    created: int = _d("0 (agents have no creation time).", 0)
    owned_by: str = _d("`praxis`.", "praxis")


class ModelList(BaseModel):
    """The agents the live workers offer."""

    object: Literal["list"] = _d("`list`.", "list")
    data: list[ModelEntry] = _d("The agents, by name.")


class ConversationObject(BaseModel):
    """A conversation: a Praxis session."""

    id: str = _d("The session id.")
    object: Literal["conversation"] = _d("`conversation`.", "conversation")
    created_at: int = _d("When the session was created (Unix seconds).")
    metadata: dict[str, str] = _d("The session's metadata, with `task_id` and `model`.")


class ConversationDeleted(BaseModel):
    """A conversation removed (its session purged)."""

    id: str = _d("The session id.")
    object: Literal["conversation.deleted"] = _d("`conversation.deleted`.", "conversation.deleted")
    deleted: bool = _d("`true`.", True)


class DeletedResponse(BaseModel):
    """What deleting a response answers."""

    id: str = _d("The response's id.")
    object: Literal["response"] = _d("`response`.", "response")
    deleted: bool = _d("`true`.", True)


class ItemText(BaseModel):
    """A message's text."""

    type: Literal["input_text", "output_text"] = _d("`input_text` (user), `output_text`.")
    text: str = _d("The text.")


class ConversationItem(BaseModel):
    """A message of the conversation."""

    type: Literal["message"] = _d("`message`.", "message")
    id: str = _d("`msg_<session id>.<cursor>`: pass as `after` to page on.")
    status: Literal["completed", "incomplete"] = _d("`incomplete`: a reply cut short.")
    role: Literal["user", "assistant"] = _d("Who said it.")
    content: list[ItemText] = _d("Its text.")


class ItemList(BaseModel):
    """A page of a conversation's messages."""

    object: Literal["list"] = _d("`list`.", "list")
    data: list[ConversationItem] = _d("The messages, in the order asked for.")
    first_id: str | None = _d("The first message's id.", None)
    last_id: str | None = _d("The last message's id.", None)
    has_more: bool = _d("More messages past `last_id`.", False)


class OutputText(BaseModel):
    """The text of the agent's reply."""

    type: Literal["output_text"] = _d("`output_text`.", "output_text")
    text: str = _d("The text.")
    annotations: list[Any] = _d("Always empty.", [])
    logprobs: list[Any] = _d("Always empty.", [])


class OutputMessage(BaseModel):
    """The agent's reply."""

    type: Literal["message"] = _d("`message`.", "message")
    id: str = _d("The message's id.")
    status: Literal["in_progress", "completed", "incomplete"] = _d("Whether it is whole.")
    role: Literal["assistant"] = _d("`assistant`.", "assistant")
    content: list[OutputText] = _d("Its text.")


class ResponseUsage(BaseModel):
    """Tokens the turn used, when the agent's provider reported them."""

    input_tokens: int = _d("Input tokens.")
    input_tokens_details: dict[str, int] = _d("`cached_tokens`: 0.")
    output_tokens: int = _d("Output tokens.")
    output_tokens_details: dict[str, int] = _d("`reasoning_tokens`: 0.")
    total_tokens: int = _d("Their sum.")


class ResponseError(BaseModel):
    """Why the turn failed."""

    code: str = _d("`server_error` (the turn failed) or `rejected` (its message was).")
    message: str = _d("The reason.")


class ApprovalRequest(BaseModel):
    """A tool call the turn waits on: answer it with an `mcp_approval_response` input
    item (`approval_request_id`, `approve`) and `previous_response_id`."""

    type: Literal["mcp_approval_request"] = _d("`mcp_approval_request`.", "mcp_approval_request")
    id: str = _d("The call's id: `approval_request_id` of the answer.")
    name: str = _d("The tool.")
    arguments: str = _d("Its arguments, as JSON.")
    server_label: str = _d("`praxis`.", "praxis")


class ConversationId(BaseModel):
    """The conversation a response belongs to."""

    id: str = _d("The session id.")


class ResponseObject(BaseModel):
    """A response: a turn of a session."""

    id: str = _d("`resp_<session id>.<command id>.<cursor>`.")
    object: Literal["response"] = _d("`response`.", "response")
    created_at: int = _d("When its session was created (Unix seconds).")
    status: Literal["in_progress", "completed", "failed", "incomplete"] = _d(
        "`incomplete`: cancelled, or waiting for a tool call's approval."
    )
    model: str = _d("The agent.")
    output: list[OutputMessage | ApprovalRequest] = _d(
        "The agent's reply (none yet: empty), then the tool calls it waits on."
    )
    usage: ResponseUsage | None = _d("Tokens used, when known (never a 0 not counted).", None)
    error: ResponseError | None = _d("Why it failed.", None)
    incomplete_details: dict[str, str] | None = _d("`reason`: why it is incomplete.", None)
    conversation: ConversationId | None = _d("Its conversation (session).", None)
    metadata: dict[str, str] = _d("`session_id`.")
    instructions: str | None = _d("The instructions this response was given, if any.", None)
    parallel_tool_calls: bool = _d("`false`.", False)
    tool_choice: str = _d("`auto`: the agent's tools are its own.", "auto")
    tools: list[Any] = _d("Empty: the agent's tools are its own.", [])
    text: dict[str, Any] = _d("`{format: {type: text}}`.", {"format": {"type": "text"}})


class ChatChoiceMessage(BaseModel):
    """The agent's reply."""

    role: Literal["assistant"] = _d("`assistant`.", "assistant")
    content: str = _d("The reply.")


class ChatChoice(BaseModel):
    """The one choice."""

    index: int = _d("0.", 0)
    message: ChatChoiceMessage = _d("The reply.")
    finish_reason: str = _d("`stop`, or `length` for a turn that did not complete.")


class ChatCompletion(BaseModel):
    """A chat completion: one turn of a session."""

    id: str = _d("The response id (see `/v1/responses/{id}`).")
    object: Literal["chat.completion"] = _d("`chat.completion`.", "chat.completion")
    created: int = _d("When its session was created (Unix seconds).")
    model: str = _d("The agent.")
    choices: list[ChatChoice] = _d("One choice.")
    usage: dict[str, int] | None = _d("Tokens, when the provider reported them.", None)
    system_fingerprint: str = _d("The session id: continue it with metadata.conversation.")


class OpenAIErrorDetail(BaseModel):
    """What went wrong, as the OpenAI API says it."""

    message: str = _d("What went wrong, and what to do.")
    type: str = _d("`invalid_request_error`, `authentication_error`, `rate_limit_error`, ...")
    param: str | None = _d("The field at fault.", None)
    code: str | None = _d("`not_found`, `bad_user_input`, ...", None)


class OpenAIErrorBody(BaseModel):
    """An error of the `/v1` routes (the OpenAI shape)."""

    error: OpenAIErrorDetail = _d("The error.")


# -- answering ----------------------------------------------------------------------------


def response_id(receipt: Receipt) -> str:
    return f"{RESPONSE_PREFIX}{receipt.session_id}.{receipt.command_id}.{receipt.cursor}"


def receipt_of(rid: str) -> Receipt:
    """The stored command a response id names (404 if it names none)."""
    parts = rid.removeprefix(RESPONSE_PREFIX).split(".") if rid.startswith(RESPONSE_PREFIX) else []
    if len(parts) != 3 or not parts[2].isdigit():
        raise OpenAIError(404, f"no response {rid[:80]!r}", param="response_id", code="not_found")
    try:
        sid = check_token(parts[0], "session id")
        cid = check_token(parts[1], "command id")
    except ValueError:
        raise OpenAIError(404, f"no response {rid[:80]!r}", code="not_found") from None
    return Receipt(session_id=sid, command_id=cid, cursor=int(parts[2]))


def _epoch(record: SessionRecord) -> int:
    return int(record.created_at.timestamp())


def conversation_object(record: SessionRecord) -> ConversationObject:
    metadata = {k: str(v) for k, v in record.metadata.items() if isinstance(v, str | int)}
    metadata.update(task_id=record.task_id, model=record.agent)
    return ConversationObject(id=record.session_id, created_at=_epoch(record), metadata=metadata)


def _usage(usage: Usage | None) -> ResponseUsage | None:
    if usage is None or usage.input_tokens is None or usage.output_tokens is None:
        return None  # unknown is not 0
    return ResponseUsage(
        input_tokens=usage.input_tokens,
        input_tokens_details={"cached_tokens": 0},
        output_tokens=usage.output_tokens,
        output_tokens_details={"reasoning_tokens": 0},
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


class Turn:
    """What a response is, as the turn's events say so far."""

    def __init__(self, receipt: Receipt, model: str, created_at: int) -> None:
        self.receipt = receipt
        self.model = model
        self.created_at = created_at
        self.text = ""
        self.status: Literal["in_progress", "completed", "failed", "incomplete"] = "in_progress"
        self.error: ResponseError | None = None
        self.incomplete: dict[str, str] | None = None
        self.usage: Usage | None = None
        self.replied = False
        self.waiting: list[ApprovalRequest] = []
        self.instructions: str | None = None
        self.found = False
        """Some stored event is the response's own (it exists)."""
        self.deleted = False

    @property
    def id(self) -> str:
        return response_id(self.receipt)

    @property
    def item_id(self) -> str:
        return f"msg_{self.receipt.session_id}.{self.receipt.cursor}"

    def take(self, event: Event | TokenDelta) -> None:
        match event:
            case TokenDelta(text=text):
                self.text += text
            case UserMessageAccepted(instructions=instructions):
                self.instructions = instructions
            case ResponseDeleted(response_id=rid):
                self.deleted = self.deleted or rid == self.id
            case AgentMessage(content=content):
                self.text, self.replied = content, True
            case TurnCompleted(usage=usage):
                self.status, self.usage = "completed", usage
            case TurnFailed(cancelled=True, usage=usage):
                self.status, self.usage = "incomplete", usage
                self.incomplete = {"reason": "cancelled"}
            case TurnFailed(reason=reason, usage=usage):
                self.status, self.usage = "failed", usage
                self.error = ResponseError(code="server_error", message=reason)
            case TurnWaiting(calls=calls):
                self.status = "incomplete"
                self.incomplete = {"reason": "approval_required"}
                self.waiting = [
                    ApprovalRequest(
                        id=c.call_id,
                        name=c.tool,
                        arguments=c.args if isinstance(c.args, str) else json.dumps(c.args),
                    )
                    for c in calls
                    if c.needs_approval
                ]
            case CommandRejected(reason=reason):
                self.status = "failed"
                self.error = ResponseError(code="rejected", message=reason)

    async def pieces(
        self, items: AsyncGenerator[Any, None], sent: int = 0
    ) -> AsyncGenerator[str | None, None]:
        """Follow the turn's deliveries: the text after the first ``sent`` characters as it
        comes (``None``: a keep-alive), until the turn ends. Closes ``items``."""
        try:
            async for item in items:
                if item is None:
                    yield None
                    continue
                if isinstance(item, Receipt):
                    continue
                self.take(item.event)
                if len(self.text) > sent:  # new text: what was not sent yet
                    piece, sent = self.text[sent:], len(self.text)
                    yield piece
                if self.status != "in_progress":
                    break
        finally:
            await items.aclose()

    async def finish(self, items: AsyncGenerator[Any, None]) -> Turn:
        """Follow the turn to its end (or pause)."""
        async for _ in self.pieces(items):
            pass
        return self

    def message_item(self) -> OutputMessage:
        done = self.status != "in_progress"
        status: Literal["in_progress", "completed", "incomplete"] = "in_progress"
        if done:
            status = "completed" if self.status == "completed" else "incomplete"
        return OutputMessage(
            id=self.item_id,
            status=status,
            content=[self.part()] if (self.text or done) else [],
        )

    def part(self, text: str | None = None) -> OutputText:
        return OutputText(text=self.text if text is None else text)

    def body(self) -> ResponseObject:
        sid = self.receipt.session_id
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            status=self.status,
            model=self.model,
            output=[
                *([self.message_item()] if (self.text or self.replied) else []),
                *self.waiting,
            ],
            usage=_usage(self.usage),
            error=self.error,
            incomplete_details=self.incomplete,
            conversation=ConversationId(id=sid),
            instructions=self.instructions,
            metadata={"session_id": sid},
        )


def _event(kind: str, seq: int, **fields: Any) -> ServerSentEventMessage:
    data = {"type": kind, "sequence_number": seq, **fields}
    return ServerSentEventMessage(event=kind, data=json.dumps(to_jsonable_python(data)))


def _text_delta(seq: int, item_id: str, piece: str) -> bytes:
    """``_event("response.output_text.delta", ...)`` as written: the same JSON (compact; its
    strings escaped as before, in ASCII, which no SSE reader can split), built without a
    dict for each piece of a streamed reply (a test keeps the two equal)."""
    return (
        b"event: response.output_text.delta\r\ndata: "
        b'{"type":"response.output_text.delta","sequence_number":%d,"item_id":%s,'
        b'"output_index":0,"content_index":0,"delta":%s,"logprobs":[]}\r\n\r\n'
        % (seq, json.dumps(item_id).encode(), json.dumps(piece).encode())
    )


def _opening(turn: Turn, after: int) -> list[ServerSentEventMessage]:
    where = {"item_id": turn.item_id, "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": turn.body()}),
        ("response.in_progress", {"response": turn.body()}),
        ("response.output_item.added", {"output_index": 0, "item": turn.message_item()}),
        ("response.content_part.added", {**where, "part": turn.part("")}),
    ]
    return [_event(kind, seq, **fields) for seq, (kind, fields) in enumerate(events) if seq > after]


def _closing(turn: Turn, after: int) -> list[ServerSentEventMessage]:
    where = {"item_id": turn.item_id, "output_index": 0, "content_index": 0}
    final = {"completed": "response.completed", "incomplete": "response.incomplete"}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.output_text.done", {**where, "text": turn.text, "logprobs": []}),
        ("response.content_part.done", {**where, "part": turn.part()}),
        ("response.output_item.done", {"output_index": 0, "item": turn.message_item()}),
        (final.get(turn.status, "response.failed"), {"response": turn.body()}),
    ]
    end = FIRST_DELTA + len(turn.text)
    return [
        _event(kind, end + i, **fields)
        for i, (kind, fields) in enumerate(events)
        if end + i > after
    ]


async def stream_turn(
    turn: Turn,
    items: AsyncGenerator[Any, None],
    after: int = -1,
) -> AsyncGenerator[ServerSentEventMessage | bytes, None]:
    """The response's events with sequence numbers above ``after`` (see the module)."""
    try:
        for message in _opening(turn, after):
            yield message
        sent = max(0, after - FIRST_DELTA + 1)  # characters the client has
        try:
            async for piece in turn.pieces(items, sent):
                if piece is None:
                    yield sse.KEEPALIVE_MESSAGE
                else:  # numbered by the length of the text it ends
                    yield _text_delta(FIRST_DELTA + len(turn.text) - 1, turn.item_id, piece)
        except BusError as e:  # the edge stops, no worker answers: the SDKs' error event
            found = problems.problem_for(e)
            seq = FIRST_DELTA + len(turn.text)
            yield _event("error", seq, code=found.code.lower(), message=found.detail, param=None)
            return
        for message in _closing(turn, after):
            yield message
    finally:
        await items.aclose()  # (a client gone before the text: pieces never ran)


# -- the routes ----------------------------------------------------------------------------


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    what = {
        400: "A field is invalid (`param` names it), or the request is malformed.",
        401: "No API key or JWT, or one that does not hold (with PRAXIS_AUTH=on).",
        404: "No such conversation or response (or another owner's).",
        409: "The conversation's state does not allow it (suspended, ended).",
        429: "Over a limit: see Retry-After.",
    }
    return {
        s: ResponseSpec(OpenAIErrorBody, description=what[s], media_type="application/json")
        for s in (*statuses, 401, 429)
    }


STREAMING = {("post", "/v1/responses"), ("get", "/v1/responses/{response_id}")}
"""Operations that answer Server-Sent Events with ``stream``."""

_REFUSALS = {
    "400": "Malformed, or a Host that is not the edge's own (on loopback).",
    "403": "A request from a web page of another origin (see PRAXIS_CORS_ORIGINS).",
    "413": "Request body over the limit (PRAXIS_EDGE_MAX_BODY).",
    "415": "A body (or a Content-Type) that is not JSON.",
}


def finish_document(paths: dict[str, Any]) -> None:
    """Document the guard's refusals in the OpenAI shape, and the Server-Sent Events a
    streamed response answers (Litestar documents one content type per status)."""
    error = OpenAPIMediaType(schema=Reference(ref="#/components/schemas/OpenAIErrorBody"))
    for path, item in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method in ("get", "post", "delete"):
            op = getattr(item, method)
            if op is None:
                continue
            op.responses = op.responses or {}
            for status, why in _REFUSALS.items():
                if status in ("413", "415") and op.request_body is None:
                    continue
                op.responses.setdefault(
                    status, OpenAPIResponse(description=why, content={"application/json": error})
                )
            answer = op.responses.get("200")
            if (method, path) in STREAMING and isinstance(answer, OpenAPIResponse):
                answer.content = {
                    **(answer.content or {}),
                    "text/event-stream": OpenAPIMediaType(schema=_SSE_EVENT),
                }


_SSE_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    description="One message of the stream: `event` the OpenAI event type "
    "(`response.created`, `response.output_text.delta`, ...), `data` the event as JSON "
    "with its `type` and `sequence_number`.",
    properties={
        "event": Schema(type=OpenAPIType.STRING),
        "data": Schema(type=OpenAPIType.STRING, content_media_type="application/json"),
    },
    required=["data"],
)


def _approvals(data: CreateResponseRequest) -> list[InputItem]:
    """The input's answers to tool calls waiting for approval (all or none of it)."""
    if isinstance(data.input, str):
        return []
    answers = [i for i in data.input if i.type == "mcp_approval_response"]
    if answers and len(answers) != len(data.input):
        raise OpenAIError(
            400, "send approval responses on their own, without messages", param="input"
        )
    for i, answer in enumerate(answers):
        if not answer.approval_request_id or answer.approve is None:
            raise OpenAIError(
                400,
                "an mcp_approval_response needs approval_request_id and approve",
                param=f"input[{i}]",
            )
    return answers


def _input_text(data: CreateResponseRequest) -> str:
    """The user's message: the input string, or its user messages' text, as paragraphs."""
    if isinstance(data.input, str):
        text = data.input
    else:
        texts: list[str] = []
        for i, item in enumerate(data.input):
            if item.role in _INSTRUCTING:
                continue  # the turn's instructions (see _instructions)
            if item.role != "user":
                raise OpenAIError(
                    400,
                    f"input[{i}] has role {item.role!r}: only user messages can be sent; "
                    "the conversation holds the rest (use conversation or "
                    "previous_response_id)",
                    param=f"input[{i}].role",
                )
            texts.append(_content_text(item.content))
        text = "\n\n".join(t for t in texts if t)
    if not text.strip():
        raise OpenAIError(400, "input is empty", param="input")
    if len(text) > MAX_MESSAGE_CHARS:
        raise OpenAIError(400, f"input is over {MAX_MESSAGE_CHARS} characters", param="input")
    return text


_INSTRUCTING = ("system", "developer")


def _instructions(data: CreateResponseRequest) -> str | None:
    """The turn's instructions: ``instructions``, then the input's system and developer
    messages (as the API has them: for this response only)."""
    parts = [data.instructions or ""]
    if not isinstance(data.input, str):
        parts += [_content_text(i.content) for i in data.input if i.role in _INSTRUCTING]
    text = "\n\n".join(p for p in parts if p.strip())
    if len(text) > MAX_MESSAGE_CHARS:
        raise OpenAIError(
            400, f"instructions are over {MAX_MESSAGE_CHARS} characters", param="instructions"
        )
    return text or None


def _messages(items: Sequence[InputItem], param: str) -> list[tuple[str, str]]:
    """``(role, text)`` of messages to add: user and assistant ones only."""
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if item.role not in ("user", "assistant"):
            raise OpenAIError(
                400,
                f"{param}[{i}] has role {item.role!r}: a conversation holds user and "
                "assistant messages (instructions go with a response: `instructions`)",
                param=f"{param}[{i}].role",
            )
        text = _content_text(item.content)
        if not text.strip():
            raise OpenAIError(400, f"{param}[{i}] has no text", param=f"{param}[{i}].content")
        out.append((item.role, text))
    return out


async def _add(
    client: SessionClient,
    sid: str,
    messages: list[tuple[str, str]],
    metadata: dict[str, Any] | None = None,
) -> list[ConversationItem]:
    """Add the messages (and metadata) and wait until they are stored: the items added."""
    receipt = await client.add_messages(sid, messages, metadata=metadata)
    added: list[ConversationItem] = []
    async for item in client.follow(receipt, deltas=False):
        event = item.event
        if isinstance(event, CommandRejected):
            raise OpenAIError(409, event.reason, code="conflict")
        if isinstance(event, UserMessageAccepted | AgentMessage) and item.cursor is not None:
            role: Literal["user", "agent"] = (
                "user" if isinstance(event, UserMessageAccepted) else "agent"
            )
            added.append(_item(sid, item.cursor, role, event.content))
    return added


def _content_text(content: str | Sequence[InputPart]) -> str:
    if isinstance(content, str):
        return content
    texts = (p.text for p in content if p.text and p.type in ("input_text", "output_text", "text"))
    return "\n\n".join(texts)


async def _record(client: SessionClient, sid: str, param: str) -> SessionRecord:
    try:
        return await client.get(check_token(sid, "conversation id"))
    except (SessionNotFoundError, ValueError):
        raise OpenAIError(
            404, f"no conversation {sid[:80]!r}", param=param, code="not_found"
        ) from None


def _agent_for(record: SessionRecord, model: str | None) -> None:
    if model is not None and model != record.agent:
        raise OpenAIError(
            400,
            f"conversation {record.session_id!r} is with agent {record.agent!r}, not "
            f"{model!r}: leave model out, or start a new conversation",
            param="model",
        )


_SESSIONS: Bounded[str, tuple[str, int]] = Bounded(10_000)
"""Each conversation's agent and creation time, once read (neither ever changes): a turn
on a known conversation costs no read of its record."""


async def _session(client: SessionClient, sid: str, param: str) -> tuple[str, int]:
    known = _SESSIONS.get(sid)
    if known is None:
        record = await _record(client, sid, param)  # the caller's own, or 404
        known = (record.agent, _epoch(record))
        _SESSIONS.put(record.session_id, known)
    return known


async def _start(
    client: SessionClient, data: CreateResponseRequest, settings: Settings
) -> tuple[Turn, AsyncGenerator[Any, None]]:
    """Store the turn — the user's message to the session it continues, a new session
    that answers it, or the answers to the tool calls a turn waits on — and follow it:
    the response so far, and what comes."""
    answers = _approvals(data)
    text = "" if answers else _input_text(data)
    sid: str | None = None
    if data.conversation is not None:
        sid = data.conversation if isinstance(data.conversation, str) else data.conversation.id
        param = "conversation"
    elif data.previous_response_id is not None:
        param = "previous_response_id"
        sid = (await _response(client, data.previous_response_id, param)).receipt.session_id
    if sid is None:
        if answers:
            raise OpenAIError(400, "approval responses go with previous_response_id", param="input")
        return await _new_session(client, data, settings, text)
    agent, created_at = await _session(client, check_token(sid, param), param)
    if data.model is not None and data.model != agent:
        _agent_for(await _record(client, sid, param), data.model)  # 404 if not theirs
    if answers:
        decided = await _decide(client, sid, answers)
        items = client.follow(decided, keepalive=settings.sse_keepalive, updates=True)
        return Turn(decided, agent, created_at), items
    # Followed before it is sent, as REST's streamed message is: nothing falls between.
    instructions = _instructions(data)
    turn = client.turn(
        sid,
        text,
        instructions=instructions,
        keepalive=settings.sse_keepalive,
        updates=True,
        accepted=True,
    )
    try:
        stored = await anext(turn)
    except BaseException:
        await turn.aclose()
        raise
    assert isinstance(stored, Receipt)
    answer = Turn(stored, agent, created_at)
    answer.instructions = instructions
    return answer, turn


async def _decide(client: SessionClient, sid: str, answers: list[InputItem]) -> Receipt:
    """Each answer to a waiting tool call; the last one's receipt follows the rest of the
    turn (it goes on once every call it waits on is decided)."""
    last: Receipt | None = None
    for a in answers:
        assert a.approval_request_id is not None and a.approve is not None
        last = await client.decide(sid, a.approval_request_id, approve=a.approve, reason=a.reason)
    assert last is not None
    return last


async def _new_session(
    client: SessionClient, data: CreateResponseRequest, settings: Settings, text: str
) -> tuple[Turn, AsyncGenerator[Any, None]]:
    """A new session whose first turn answers ``text``."""
    agent = data.model or settings.openai_agent
    if agent is None:
        raise OpenAIError(400, "model is required for a new conversation", param="model")
    metadata = dict(data.metadata or {})
    instructions = _instructions(data)
    record, created = await client.create(
        agent,
        task_id=metadata.pop("task_id", None),
        metadata=metadata,
        initial_message=text,
        instructions=instructions,
    )
    _SESSIONS.put(record.session_id, (agent, _epoch(record)))
    items = client.follow(created, keepalive=settings.sse_keepalive, updates=True)
    turn = Turn(created, agent, _epoch(record))
    turn.instructions = instructions
    return turn, items


async def _finished(client: SessionClient, turn: Turn) -> Turn:
    """The response as the stored events say now (no waiting)."""
    stored = await read_events(client.bus, turn.receipt.session_id, after=turn.receipt.cursor)
    for _, event in stored:
        if event.command_id == turn.receipt.command_id:
            turn.found = True
            turn.take(event)
        elif isinstance(event, ResponseDeleted):
            turn.take(event)
    return turn


async def _response(client: SessionClient, rid: str, param: str = "response_id") -> Turn:
    """The response ``rid`` names, as stored now: 404 unless it is the caller's and not
    deleted."""
    receipt = receipt_of(rid)
    record = await _record(client, receipt.session_id, param)
    turn = await _finished(client, Turn(receipt, record.agent, _epoch(record)))
    if turn.deleted:
        raise OpenAIError(404, f"response {rid[:80]!r} was deleted", param=param, code="not_found")
    return turn


class OpenAIResponses(Controller):
    path = "/v1"
    tags = ["openai"]
    dependencies = DEPENDENCIES

    @post(
        "/chat/completions",
        status_code=200,
        summary="A chat completion (a turn), for clients of the Chat Completions API",
        description="The last message must be the user's: it is the turn. With "
        "`metadata.conversation` the turn continues that session (the earlier messages are "
        "its history already, and are not sent again); without, a new session is created "
        "with the earlier user and assistant messages as its history. `system_fingerprint` "
        "is the session id.",
        responses=_errors(400, 404, 409),
    )
    async def chat_completion(
        self, data: ChatCompletionRequest, client: SessionClient, settings: Settings
    ) -> ChatCompletion | sse.EventStream:
        turn, items = await _chat_turn(client, data, settings)
        if data.stream:
            return sse.response(sse.encoded(_chunks(turn, items)))
        return _completion(await turn.finish(items))

    @get("/models", summary="The agents, as models", responses=_errors())
    async def models(self, client: SessionClient) -> ModelList:
        return ModelList(data=[ModelEntry(id=a.name) for a in await client.agents()])

    @post(
        "/responses",
        status_code=200,
        summary="Create a response (a turn)",
        description="The input is the user's message: to `conversation`, to the session of "
        "`previous_response_id`, or to a new session with the agent `model`. Answers the "
        "finished response; with `stream: true` its events (Server-Sent Events, each with "
        "a `sequence_number`); with `background: true` at once, `in_progress`.",
        responses=_errors(400, 404, 409),
    )
    async def create_response(
        self, data: CreateResponseRequest, client: SessionClient, settings: Settings
    ) -> ResponseObject | sse.EventStream:
        turn, items = await _start(client, data, settings)
        if data.stream:
            return sse.response(sse.encoded(stream_turn(turn, items)))
        if data.background:  # answered at once; the turn goes on
            await items.aclose()
            return turn.body()
        return (await turn.finish(items)).body()

    @get(
        "/responses/{response_id:str}",
        summary="Get a response, or resume its stream",
        description="As it is now (no waiting); with `stream=true`, its events after "
        "`starting_after` (a sequence number), live until it ends.",
        responses=_errors(400, 404),
    )
    async def get_response(
        self,
        response_id: str,
        client: SessionClient,
        settings: Settings,
        stream: bool = False,
        starting_after: int = Parameter(
            default=-1, ge=-1, description="Only events with a higher sequence number."
        ),
    ) -> ResponseObject | sse.EventStream:
        now = await _response(client, response_id)
        if stream:
            turn = Turn(now.receipt, now.model, now.created_at)
            items = client.follow(now.receipt, keepalive=settings.sse_keepalive, updates=True)
            return sse.response(sse.encoded(stream_turn(turn, items, starting_after)))
        return now.body()

    @post(
        "/responses/{response_id:str}/cancel",
        status_code=200,
        summary="Cancel a response",
        description="Stops the turn in flight (it ends `incomplete`); a finished response "
        "is answered as it is.",
        responses=_errors(400, 404),
    )
    async def cancel_response(self, response_id: str, client: SessionClient) -> ResponseObject:
        turn = await _response(client, response_id)
        if turn.status == "in_progress":
            await client.wait(await client.cancel(turn.receipt.session_id))
            turn = await _finished(client, Turn(turn.receipt, turn.model, turn.created_at))
        return turn.body()

    @delete(
        "/responses/{response_id:str}",
        status_code=200,
        summary="Delete a response",
        description="From then on the response is 404 (retrieving it, streaming it, "
        "continuing from it with `previous_response_id`). As in the OpenAI API, its "
        "messages stay in its conversation (delete the conversation to erase them). A "
        "response in progress is 409: cancel it first.",
        responses=_errors(400, 404, 409),
    )
    async def delete_response(self, response_id: str, client: SessionClient) -> DeletedResponse:
        turn = await _response(client, response_id)
        if not turn.found:
            raise OpenAIError(404, f"no response {response_id[:80]!r}", code="not_found")
        if turn.status == "in_progress":
            raise OpenAIError(409, "the response is in progress: cancel it first", code="conflict")
        events = await client.wait(await client.delete_response(turn.receipt.session_id, turn.id))
        for event in events:
            if isinstance(event, CommandRejected):
                raise OpenAIError(409, event.reason, code="conflict")
        return DeletedResponse(id=turn.id)

    @route("/responses/{response_id:str}", http_method=HttpMethod.OPTIONS, include_in_schema=False)
    async def allow_on_a_response(self) -> Response[None]:
        """The methods of a response's path (as for a conversation's: litestar#4169)."""
        return Response(None, status_code=204, headers={"Allow": "DELETE, GET, OPTIONS"})

    @post(
        "/conversations",
        status_code=200,
        summary="Create a conversation (a session)",
        responses=_errors(400),
    )
    async def create_conversation(
        self, data: CreateConversationRequest, client: SessionClient, settings: Settings
    ) -> ConversationObject:
        seed = _messages(data.items or [], "items")
        metadata = dict(data.metadata or {})
        agent = metadata.pop("model", None) or settings.openai_agent
        if agent is None:
            raise OpenAIError(
                400,
                "a conversation is with one agent: give metadata.model (an agent from "
                "GET /v1/models), or set PRAXIS_OPENAI_AGENT",
                param="metadata.model",
            )
        record, receipt = await client.create(
            agent, task_id=metadata.pop("task_id", None), metadata=metadata
        )
        await client.wait(receipt)  # the greeting, if the agent has one, is in the items
        if seed:
            await _add(client, record.session_id, seed)
        return conversation_object(await client.get(record.session_id))

    @post(
        "/conversations/{conversation_id:str}",
        status_code=200,
        summary="Update a conversation's metadata",
        description="Replaces the session's metadata (its `task_id` and `model` are its own "
        "and stay).",
        responses=_errors(400, 404, 409),
    )
    async def update_conversation(
        self, conversation_id: str, data: UpdateConversationRequest, client: SessionClient
    ) -> ConversationObject:
        record = await _record(client, conversation_id, "conversation_id")
        metadata = {k: v for k, v in data.metadata.items() if k not in ("task_id", "model")}
        await _add(client, record.session_id, [], metadata)
        return conversation_object(await client.get(record.session_id))

    @post(
        "/conversations/{conversation_id:str}/items",
        status_code=200,
        summary="Add messages to a conversation, without a turn",
        description="User and assistant messages join the history as they are: the agent "
        "answers none of them, and sees them in its next turn.",
        responses=_errors(400, 404, 409),
    )
    async def add_items(
        self, conversation_id: str, data: AddItemsRequest, client: SessionClient
    ) -> ItemList:
        record = await _record(client, conversation_id, "conversation_id")
        added = await _add(client, record.session_id, _messages(data.items, "items"))
        return ItemList(
            data=added,
            first_id=added[0].id if added else None,
            last_id=added[-1].id if added else None,
        )

    @get(
        "/conversations/{conversation_id:str}",
        summary="Get a conversation",
        responses=_errors(400, 404),
    )
    async def get_conversation(
        self, conversation_id: str, client: SessionClient
    ) -> ConversationObject:
        return conversation_object(await _record(client, conversation_id, "conversation_id"))

    @delete(
        "/conversations/{conversation_id:str}",
        status_code=200,
        summary="Delete a conversation",
        description="Its session is purged from the bus.",
        responses=_errors(400, 404),
    )
    async def delete_conversation(
        self, conversation_id: str, client: SessionClient
    ) -> ConversationDeleted:
        record = await _record(client, conversation_id, "conversation_id")
        await client.request_purge(record.session_id)
        _SESSIONS.pop(record.session_id)  # its id may be used again, for another agent
        return ConversationDeleted(id=record.session_id)

    @route(
        "/conversations/{conversation_id:str}",
        http_method=HttpMethod.OPTIONS,
        include_in_schema=False,
    )
    async def allow_on_a_conversation(self) -> Response[None]:
        """The methods of a conversation's path (Litestar 2 lists only the first handler's
        where a path has two: litestar#4169)."""
        return Response(None, status_code=204, headers={"Allow": "DELETE, GET, OPTIONS, POST"})

    @route(
        "/conversations/{conversation_id:str}/items",
        http_method=HttpMethod.OPTIONS,
        include_in_schema=False,
    )
    async def accept_options_on_items(self) -> Response[None]:
        """The methods of a conversation's items (as above; named to sort before
        ``add_items``: a controller registers its handlers in name order, and the first
        one's route keeps its OPTIONS)."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get(
        "/conversations/{conversation_id:str}/items/{item_id:str}",
        summary="One message of the conversation",
        responses=_errors(404),
    )
    async def get_item(
        self, conversation_id: str, item_id: str, client: SessionClient
    ) -> ConversationItem:
        record = await _record(client, conversation_id, "conversation_id")
        sid = record.session_id
        seq = _item_seq(item_id, sid, "item_id", 404)
        found = await client.history(sid, after=max(0, seq - 1), limit=1)
        if not found or found[0].seq != seq:
            raise OpenAIError(404, f"no item {item_id[:80]!r}", param="item_id", code="not_found")
        h = found[0]
        return _item(sid, h.seq, h.role, h.content, h.interrupted)

    @get(
        "/conversations/{conversation_id:str}/items",
        summary="The conversation's messages",
        description="Newest first (`order=desc`, the default) or oldest first; `after`: "
        "the id of the last item of the previous page.",
        responses=_errors(400, 404),
    )
    async def list_items(
        self,
        conversation_id: str,
        client: SessionClient,
        order: Literal["asc", "desc"] = Parameter(default="desc", description="`asc`, `desc`."),
        after: str | None = Parameter(default=None, description="An item id: after it."),
        limit: int = Parameter(default=20, ge=1, le=100, description="Page size."),
    ) -> ItemList:
        record = await _record(client, conversation_id, "conversation_id")
        sid = record.session_id
        cursor = _item_seq(after, sid) if after else None
        if order == "desc":
            page, more = await client.history(sid, before=cursor, limit=limit, more=True)
            chosen = list(reversed(page))
        else:
            chosen, more = await client.history(sid, after=cursor or 0, limit=limit, more=True)
        data = [_item(sid, h.seq, h.role, h.content, h.interrupted) for h in chosen]
        return ItemList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )


def _item(
    sid: str, seq: int, role: Literal["user", "agent"], text: str, interrupted: bool = False
) -> ConversationItem:
    """A message of the history as a conversation item."""
    user = role == "user"
    return ConversationItem(
        id=f"msg_{sid}.{seq}",
        status="incomplete" if interrupted else "completed",
        role="user" if user else "assistant",
        content=[ItemText(type="input_text" if user else "output_text", text=text)],
    )


async def _chat_turn(
    client: SessionClient, data: ChatCompletionRequest, settings: Settings
) -> tuple[Turn, AsyncGenerator[Any, None]]:
    last = data.messages[-1]
    if last.role != "user":
        raise OpenAIError(400, "the last message must be the user's", param="messages")
    text = _content_text(last.content or "")
    if not text.strip():
        raise OpenAIError(400, "the last message has no text", param="messages")
    metadata = dict(data.metadata or {})
    sid = metadata.pop("conversation", None)
    request = CreateResponseRequest(model=data.model, input=text, conversation=sid)
    if sid is not None:
        return await _start(client, request, settings)
    earlier: list[tuple[str, str]] = []
    for i, m in enumerate(data.messages[:-1]):
        said = _content_text(m.content or "")
        if m.role in ("user", "assistant") and said.strip():
            earlier.append((m.role, said))
        elif m.role not in ("system", "developer", "user", "assistant"):
            raise OpenAIError(400, f"messages[{i}] has role {m.role!r}", param=f"messages[{i}]")
    # System and developer messages: the turn's instructions (added to the agent's own).
    system = [
        _content_text(m.content or "") for m in data.messages if m.role in ("system", "developer")
    ]
    request.instructions = "\n\n".join(t for t in system if t.strip()) or None
    if not earlier:
        request.metadata = metadata
        request.conversation = None
        return await _new_session(client, request, settings, text)
    record, created = await client.create(
        data.model, task_id=metadata.pop("task_id", None), metadata=metadata
    )
    await client.wait(created)
    await _add(client, record.session_id, earlier)
    _SESSIONS.put(record.session_id, (data.model, _epoch(record)))
    request.conversation = record.session_id
    return await _start(client, request, settings)


def _completion(turn: Turn) -> ChatCompletion:
    usage = _usage(turn.usage)
    return ChatCompletion(
        id=turn.id,
        created=turn.created_at,
        model=turn.model,
        choices=[
            ChatChoice(
                message=ChatChoiceMessage(content=turn.text),
                finish_reason="stop" if turn.status == "completed" else "length",
            )
        ],
        usage=None
        if usage is None
        else {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        },
        system_fingerprint=turn.receipt.session_id,
    )


async def _chunks(
    turn: Turn, items: AsyncGenerator[Any, None]
) -> AsyncGenerator[ServerSentEventMessage | bytes, None]:
    """The turn as Chat Completions chunks, then ``[DONE]``."""

    def body(delta: dict[str, str], finish: str | None = None) -> str:
        return json.dumps(
            {
                "id": turn.id,
                "object": "chat.completion.chunk",
                "created": turn.created_at,
                "model": turn.model,
                "system_fingerprint": turn.receipt.session_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    def chunk(delta: dict[str, str], finish: str | None = None) -> ServerSentEventMessage:
        return ServerSentEventMessage(data=body(delta, finish))

    written = _pieces_as(body)
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in turn.pieces(items):
            yield sse.KEEPALIVE_MESSAGE if piece is None else written(piece)
        if turn.error is not None:
            failed = {"error": {"message": turn.error.message, "type": "server_error"}}
            yield ServerSentEventMessage(data=json.dumps(failed))
        yield chunk({}, "stop" if turn.status == "completed" else "length")
        yield ServerSentEventMessage(data="[DONE]")
    finally:
        await items.aclose()


_MARK = "\x00piece\x00"
"""Where a chunk's JSON is split to put each piece of the reply in."""


def _pieces_as(body: Callable[[dict[str, str]], str]) -> Callable[[str], bytes]:
    """``ServerSentEventMessage(data=body({"content": piece})).encode()`` for each piece of
    a reply: the JSON of ``body`` written once, each piece's JSON put in its place (the
    content is its last string), without a dict and a message each time (a test keeps the
    two equal)."""
    head, tail = body({"content": _MARK}).rsplit(json.dumps(_MARK), 1)
    return lambda piece: f"data: {head}{json.dumps(piece)}{tail}\r\n\r\n".encode()


def _item_seq(item_id: str, sid: str, param: str = "after", status: int = 400) -> int:
    prefix = f"msg_{sid}."
    tail = item_id.removeprefix(prefix)
    if not item_id.startswith(prefix) or not tail.isdigit():
        raise OpenAIError(
            status, f"{param}: {item_id[:80]!r} is not an item of {sid!r}", param=param
        )
    return int(tail)


__all__ = ["OpenAIError", "OpenAIResponses", "receipt_of", "response_id"]
