"""The OpenAI Responses and Conversations APIs of the edge (``/v1``), driven by the official
``openai`` Python package against a real edge process: what OpenAI-SDK code sees when its
``base_url`` is a Praxis edge, and that the same sessions go on through the CLI and REST."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from praxis.bus import Bus, SessionClient, Settings
from praxis.bus import keys as api_keys
from praxis.schemas import Interface, ResponseDeleted, UserMessageAccepted
from tests.conftest import (
    EdgeProcess,
    InProcessWorker,
    WorkerProcess,
    edge_env,
    env_for,
    eventually,
    live_workers,
    praxis,
    stored_events,
)
from tests.fake_models import Call, FakeModelServer, Text
from tests.test_approvals import REFUND
from tests.test_model_agents import define, openai_agent

pytestmark = pytest.mark.partitions(1, 3)


def sdk(edge: EdgeProcess, key: str = "unused") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{edge.url}/v1", api_key=key, max_retries=0, timeout=30)


async def test_models_conversations_and_responses(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    ai = sdk(edge)
    models = [m.id async for m in ai.models.list()]
    assert {"echo", "hello-world"} <= set(models) and "synthetic" not in models

    conversation = await ai.conversations.create(metadata={"task_id": "task-oa", "model": "echo"})
    assert conversation.metadata == {"task_id": "task-oa", "model": "echo"}
    record = await client.get(conversation.id)  # a session like any other
    assert (record.task_id, record.agent) == ("task-oa", "echo")

    first = await ai.responses.create(model="echo", conversation=conversation.id, input="one two")
    assert (first.status, first.output_text) == ("completed", "one two")
    # Continued by the previous response's id: the same session.
    second = await ai.responses.create(previous_response_id=first.id, input="three")
    assert second.output_text == "three"
    assert second.conversation is not None and second.conversation.id == conversation.id

    # A new session when neither is given: its id is in the response.
    fresh = await ai.responses.create(model="hello-world", input="Help me with coding")
    assert fresh.output_text.startswith('You said: "Help me with coding"')
    assert fresh.conversation is not None and fresh.conversation.id != conversation.id
    got = await ai.responses.retrieve(fresh.id)
    assert (got.status, got.output_text) == ("completed", fresh.output_text)

    items = await ai.conversations.items.list(conversation.id, order="asc")
    texts = [(i.role, i.content[0].text) for i in items.data]  # type: ignore[union-attr]
    assert texts == [
        ("user", "one two"),
        ("assistant", "one two"),
        ("user", "three"),
        ("assistant", "three"),
    ]
    newest = await ai.conversations.items.list(conversation.id, limit=1)
    assert newest.data[0].content[0].text == "three" and newest.has_more  # type: ignore[union-attr]

    deleted = await ai.conversations.delete(conversation.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await ai.conversations.retrieve(conversation.id)


async def test_a_streamed_response_assembles_into_the_output_text(
    edge: EdgeProcess, worker: InProcessWorker
) -> None:
    ai = sdk(edge)
    stream = await ai.responses.create(model="echo", input="streamed words here", stream=True)
    kinds: list[str] = []
    deltas: list[str] = []
    seqs: list[int] = []
    final = None
    async for event in stream:
        kinds.append(event.type)
        seqs.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert final is not None and "".join(deltas) == final.output_text == "streamed words here"
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert seqs == sorted(set(seqs))


async def test_a_cut_stream_resumes_with_starting_after(
    edge: EdgeProcess,
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[..., list[WorkerProcess]],
) -> None:
    """A stream cut mid-turn, then GET /v1/responses/{id}?stream=true&starting_after=N:
    exactly the text and events after N."""
    worker_processes(1)
    await live_workers(client, 1)
    ai = sdk(edge)
    conversation = await ai.conversations.create(
        metadata={"model": "slow", "pieces": "30", "delay": "0.05"}
    )
    before: list[tuple[int, str]] = []
    response_id = ""
    stream = await ai.responses.create(conversation=conversation.id, input="go", stream=True)
    async for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            before.append((event.sequence_number, event.delta))
            if len(before) == 5:
                break  # the connection is dropped mid-turn
    await stream.close()
    last = before[-1][0]
    after: list[tuple[int, str]] = []
    kinds: list[str] = []
    final = None
    resumed = await ai.responses.retrieve(response_id, stream=True, starting_after=last)
    async for event in resumed:
        assert event.sequence_number > last
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            after.append((event.sequence_number, event.delta))
        if event.type == "response.completed":
            final = event.response
    assert final is not None
    text = "".join(d for _, d in before + after)
    assert text == final.output_text == "".join(f"w{i} " for i in range(30))
    assert kinds.count("response.completed") == 1 and "response.created" not in kinds


async def test_cancel_and_the_cli_and_rest_continue_the_conversation(
    edge: EdgeProcess,
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[..., list[WorkerProcess]],
) -> None:
    worker_processes(1)
    await live_workers(client, 1)
    ai = sdk(edge)
    conversation = await ai.conversations.create(
        metadata={"model": "slow", "pieces": "200", "delay": "0.05"}
    )
    started = await ai.responses.create(conversation=conversation.id, input="long", background=True)
    assert started.status == "in_progress"
    stream = await ai.responses.retrieve(started.id, stream=True)
    async for event in stream:
        if event.type == "response.output_text.delta":
            break  # it is generating
    await stream.close()
    with pytest.raises(openai.ConflictError, match="cancel it first"):
        await ai.responses.delete(started.id)
    cancelled = await ai.responses.cancel(started.id)
    assert cancelled.status == "incomplete"

    # The CLI and REST continue the same session; the SDK sees their turns as items.
    sid = conversation.id
    ran = await asyncio.to_thread(
        praxis, env_for(settings), "agent", "resume", sid, "--message", "from the cli"
    )
    assert ran.returncode == 0, ran.stderr
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        r = await http.post(f"/agent-sessions/{sid}/messages", json={"message": "over rest"})
        assert r.status_code == 202, r.text
        await client.wait(await client.send(sid, "from python"))
    items = await ai.conversations.items.list(sid, order="asc")
    users = [i.content[0].text for i in items.data if i.role == "user"]  # type: ignore[union-attr]
    assert users[-3:] == ["from the cli", "over rest", "from python"]


async def test_errors_are_the_sdks_exceptions(edge: EdgeProcess, worker: InProcessWorker) -> None:
    ai = sdk(edge)
    with pytest.raises(openai.NotFoundError) as missing:
        await ai.responses.retrieve("resp_nope.cmd_x.1")
    assert missing.value.code == "not_found"
    with pytest.raises(openai.NotFoundError):
        await ai.conversations.retrieve("ses_nothing_here")
    with pytest.raises(openai.BadRequestError) as unknown:
        await ai.responses.create(model="no-such-agent", input="hi")
    assert "no-such-agent" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        await ai.responses.create(model="echo", input="")
    assert empty.value.param == "input"
    with pytest.raises(openai.BadRequestError):
        await ai.conversations.create(metadata={"task_id": "no model"})
    with pytest.raises(openai.NotFoundError):
        await ai.responses.delete("resp_ses_x.cmd_x.1")


async def test_owners_and_keys(
    secured_edge: EdgeProcess, bus: Bus, worker: InProcessWorker
) -> None:
    _, alice = await api_keys.create_key(bus, "alice", "acme")
    _, bob = await api_keys.create_key(bus, "bob", "acme")
    mine = await sdk(secured_edge, alice).conversations.create(metadata={"model": "echo"})
    with pytest.raises(openai.NotFoundError):  # another owner's conversation does not exist
        await sdk(secured_edge, bob).conversations.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        await sdk(secured_edge, bob).responses.create(conversation=mine.id, input="hi")
    with pytest.raises(openai.AuthenticationError):
        await sdk(secured_edge, "prx_key_not_a_key").models.list()


async def test_items_and_metadata_added_without_a_turn(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    """Items seed a conversation and are appended to it without a turn; the agent sees them
    in its next turn. Metadata is replaced."""
    ai = sdk(edge)
    conversation = await ai.conversations.create(
        metadata={"model": "hello-world", "task_id": "task-items"},
        items=[
            {"type": "message", "role": "user", "content": "I am Ada"},
            {"type": "message", "role": "assistant", "content": "Hello Ada"},
        ],
    )
    added = await ai.conversations.items.create(
        conversation.id,
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "I like tea"}],
            }
        ],
    )
    texts = [(i.role, i.content[0].text) for i in added.data]  # type: ignore[union-attr]
    assert texts == [("user", "I like tea")]
    reply = await ai.responses.create(conversation=conversation.id, input="What did I say?")
    assert "That is your 3rd message" in reply.output_text and '"I like tea"' in reply.output_text
    items = await ai.conversations.items.list(conversation.id, order="asc")
    assert [i.content[0].text for i in items.data][:4] == [  # type: ignore[union-attr]
        "Hello! How can I help you today?",  # the greeting, then the seeded messages
        "I am Ada",
        "Hello Ada",
        "I like tea",
    ]
    one = await ai.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert one == added.data[0]
    seq = int(added.data[0].id.rsplit(".", 1)[1])
    for missing in (
        f"msg_{conversation.id}.{seq + 1}",  # no message has that cursor
        "msg_elsewhere.1",
        "not-an-item",
    ):
        with pytest.raises(openai.NotFoundError):
            await ai.conversations.items.retrieve(missing, conversation_id=conversation.id)
    updated = await ai.conversations.update(conversation.id, metadata={"topic": "tea"})
    assert updated.metadata == {"topic": "tea", "task_id": "task-items", "model": "hello-world"}
    record = await client.get(conversation.id)
    assert record.metadata == {"topic": "tea"} and record.counters.turns == 2  # greeting, reply
    with pytest.raises(openai.BadRequestError) as system:
        await ai.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "system", "content": "x"}]
        )
    assert system.value.param == "items[0].role"
    await client.complete(conversation.id)
    with pytest.raises(openai.ConflictError):  # an ended session takes no messages
        await ai.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": "late"}]
        )


async def test_a_tool_call_waiting_for_approval_is_answered_through_the_sdk(
    edge: EdgeProcess,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
) -> None:
    """A turn that waits for a human: the response ends incomplete with an
    mcp_approval_request per call; an mcp_approval_response with previous_response_id
    approves it and the turn goes on (a denial tells the model)."""
    define(settings, "shop", openai_agent(models, REFUND))
    await start_worker()
    ai = sdk(edge)

    async def offered() -> bool:  # the edge knows the new worker's agents (heartbeats)
        return "shop" in [m.id async for m in ai.models.list()]

    await eventually(offered, 15, "the edge to offer the shop agent")
    models.reset(Call("refund", {"order": "7"}, call_id="r7"), Text("Refunded."))
    asked = await ai.responses.create(model="shop", input="Refund order 7")
    assert asked.status == "incomplete"
    assert asked.incomplete_details is not None
    assert asked.incomplete_details.reason == "approval_required"  # type: ignore[comparison-overlap]
    [request] = [o for o in asked.output if o.type == "mcp_approval_request"]
    seen = (request.id, request.name, json.loads(request.arguments))
    assert seen == ("r7", "refund", {"order": "7"})
    answered = await ai.responses.create(
        previous_response_id=asked.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": "r7", "approve": True}],
    )
    assert (answered.status, answered.output_text) == ("completed", "Refunded.")

    models.reset(Call("refund", {"order": "8"}, call_id="r8"), Text("As you wish."))
    asked = await ai.responses.create(previous_response_id=answered.id, input="And order 8")
    denied = await ai.responses.create(
        previous_response_id=asked.id,
        input=[
            {
                "type": "mcp_approval_response",
                "approval_request_id": "r8",
                "approve": False,
                "reason": "not that one",
            }
        ],
    )
    assert denied.output_text == "As you wish."
    followup = str(models.script.requests[-1]["messages"])
    assert "The user denied this call of refund: not that one" in followup
    with pytest.raises(openai.ConflictError):  # nothing waits any more
        await ai.responses.create(
            previous_response_id=denied.id,
            input=[{"type": "mcp_approval_response", "approval_request_id": "r8", "approve": True}],
        )


async def test_a_stream_resumes_on_another_edge_after_its_edge_is_killed(
    settings: Settings,
    client: SessionClient,
    worker_processes: Callable[..., list[WorkerProcess]],
    tmp_path: Path,
) -> None:
    """The edge that served a stream dies mid-turn (SIGKILL); a new edge process resumes
    it from the last sequence number seen, with exactly the rest."""
    worker_processes(1)
    await live_workers(client, 1)
    first = EdgeProcess(edge_env(settings), tmp_path / "edge1.log").start()
    try:
        ai = sdk(first)
        conversation = await ai.conversations.create(
            metadata={"model": "slow", "pieces": "40", "delay": "0.05"}
        )
        before: list[str] = []
        last, response_id = -1, ""
        stream = await ai.responses.create(conversation=conversation.id, input="go", stream=True)
        async for event in stream:
            last = event.sequence_number
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta":
                before.append(event.delta)
                if len(before) == 5:
                    break
    finally:
        first.stop(signal.SIGKILL)
    second = EdgeProcess(edge_env(settings), tmp_path / "edge2.log").start()
    try:
        after: list[str] = []
        final = None
        resumed = await sdk(second).responses.retrieve(
            response_id, stream=True, starting_after=last
        )
        async for event in resumed:
            assert event.sequence_number > last
            if event.type == "response.output_text.delta":
                after.append(event.delta)
            if event.type == "response.completed":
                final = event.response
    finally:
        second.stop()
    assert final is not None
    assert "".join(before + after) == final.output_text == "".join(f"w{i} " for i in range(40))


async def test_chat_completions_for_clients_that_speak_only_that(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    """Each call is a turn: a new session seeded with the earlier messages, or the session
    named by metadata.conversation (its id is the completion's system_fingerprint)."""
    ai = sdk(edge)
    first = await ai.chat.completions.create(
        model="hello-world",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "I am Ada"},
            {"role": "assistant", "content": "Hi Ada"},
            {"role": "user", "content": "What did I say?"},
        ],
    )
    reply = first.choices[0].message.content or ""
    assert "That is your 2nd message" in reply and '"I am Ada"' in reply
    assert first.choices[0].finish_reason == "stop"
    sid = first.system_fingerprint
    assert sid is not None and (await client.get(sid)).metadata == {}
    # The system message is the turn's instructions, kept with its message.
    said = [e for e in await stored_events(client, sid) if isinstance(e, UserMessageAccepted)]
    assert [(e.content, e.instructions) for e in said][-1] == ("What did I say?", "Be brief.")
    chunks = await ai.chat.completions.create(
        model="hello-world",
        messages=[{"role": "user", "content": "And now?"}],
        metadata={"conversation": sid},
        stream=True,
    )
    text = ""
    finish = None
    async for chunk in chunks:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    assert "That is your 3rd message" in text and finish == "stop"
    history = [h.content for h in await client.history(sid)]
    assert history[-2:] == ["And now?", text]
    with pytest.raises(openai.BadRequestError):
        await ai.chat.completions.create(
            model="echo", messages=[{"role": "assistant", "content": "not a turn"}]
        )


async def test_instructions_reach_the_model_for_their_response_only(
    edge: EdgeProcess,
    settings: Settings,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    models: FakeModelServer,
) -> None:
    """``instructions`` (and system or developer input messages) are the response's own:
    added after the agent's system prompt for that turn, echoed in the response, not seen
    by the next one."""
    define(settings, "tutor", openai_agent(models))
    await start_worker()
    ai = sdk(edge)

    async def offered() -> bool:
        return "tutor" in [m.id async for m in ai.models.list()]

    await eventually(offered, 15, "the edge to offer the tutor agent")
    script = models.reset()
    first = await ai.responses.create(
        model="tutor", input="Bonjour", instructions="Answer in French."
    )
    assert first.instructions == "Answer in French."
    assert (await ai.responses.retrieve(first.id)).instructions == "Answer in French."
    second = await ai.responses.create(
        previous_response_id=first.id,
        input=[
            {"role": "developer", "content": "Use one word."},
            {"role": "user", "content": "Encore"},
        ],
        stream=True,
    )
    async for event in second:
        if event.type == "response.created":
            assert event.response.instructions == "Use one word."
    third = await ai.responses.create(previous_response_id=first.id, input="Plain")
    assert third.instructions is None

    def system(body: dict[str, object]) -> str:
        messages = body["messages"]
        assert isinstance(messages, list)
        return " ".join(str(m["content"]) for m in messages if m["role"] == "system")

    one, two, three = (system(r) for r in script.requests)
    assert "You are Praxis test bot" in one and "Answer in French." in one
    assert "Use one word." in two and "French" not in two
    assert "You are Praxis test bot" in three and "French" not in three and "one word" not in three
    assert "Encore" in str(script.requests[1]["messages"][-1])


async def test_a_deleted_response_is_gone_and_its_messages_stay(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    """As in the OpenAI API: the response object is deleted (404 to retrieve, stream,
    continue from or delete again); its messages stay in the conversation, which goes on."""
    ai = sdk(edge)
    first = await ai.responses.create(model="echo", input="keep these words")
    second = await ai.responses.create(previous_response_id=first.id, input="and these")
    sid = first.conversation.id if first.conversation else ""
    with pytest.raises(openai.NotFoundError):  # a response id of the session that is none
        await ai.responses.delete(f"resp_{sid}.cmd_none.1")
    assert await ai.responses.delete(first.id) is None  # the SDK's answer to a deletion
    for gone in (
        ai.responses.retrieve(first.id),
        ai.responses.retrieve(first.id, stream=True),
        ai.responses.create(previous_response_id=first.id, input="more"),
        ai.responses.cancel(first.id),
        ai.responses.delete(first.id),
    ):
        with pytest.raises(openai.NotFoundError, match="deleted"):
            await gone
    assert (await ai.responses.retrieve(second.id)).output_text == "and these"
    items = await ai.conversations.items.list(sid, order="asc")
    texts = [i.content[0].text for i in items.data]  # type: ignore[union-attr]
    assert texts == ["keep these words", "keep these words", "and these", "and these"]
    third = await ai.responses.create(conversation=sid, input="still here")
    assert third.output_text == "still here"
    page = await ai.conversations.items.list(sid, order="asc", after=items.data[1].id, limit=2)
    assert [i.content[0].text for i in page.data] == ["and these", "and these"]  # type: ignore[union-attr]
    assert page.has_more
    await client.complete(sid)  # an ended session's responses can be deleted too
    await ai.responses.delete(third.id)
    # Recorded in the session, by whom, as every interface sees it.
    deleted = [e for e in await stored_events(client, sid) if isinstance(e, ResponseDeleted)]
    assert [(e.response_id, e.interface) for e in deleted] == [
        (first.id, Interface.API),
        (third.id, Interface.API),
    ]
    with pytest.raises(openai.NotFoundError):
        await ai.responses.retrieve(third.id)
