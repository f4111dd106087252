"""Issue 7: import and export of conversations, and long histories that stay fast."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings, connect, direct, subjects
from praxis.bus.client import reading
from praxis.bus.embedded import NatsServer
from praxis.bus.transfer import Conversation, import_conversation
from praxis.schemas import AgentMessage, ContextCompacted, SessionState
from praxis.workers import Worker, load_agents
from tests.conftest import InProcessWorker, env_for, make_settings, praxis, settled_session


@pytest.fixture
def cli(settings: Settings):  # type: ignore[no-untyped-def]
    env = env_for(settings)

    async def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(praxis, env, *args, stdin=stdin)

    return run


def jsonl(*conversations: dict[str, object]) -> str:
    return "".join(json.dumps(c) + "\n" for c in conversations)


async def test_import_resume_export_round_trip(
    client: SessionClient,
    worker: InProcessWorker,
    cli,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    first = {
        "session_id": "ses_imported_one",
        "metadata": {"source": "support-desk"},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Où est ma commande ?"},
            {"role": "assistant", "content": [{"type": "text", "text": "En route 🚚"}]},
        ],
    }
    second = {"task_id": "task_migrated", "messages": [{"role": "user", "content": "hi"}]}
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(first, second) + "\n", encoding="utf-8")
    done = await cli("agent", "import", str(path), "--agent", "echo")
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert rows[0][0] == "ses_imported_one" and rows[1][1] == "task_migrated"
    assert "2 conversation(s) imported" in done.stderr

    record = await client.get("ses_imported_one")
    assert record.state is SessionState.ACTIVE and record.agent == "echo"
    assert record.metadata == {"source": "support-desk", "system": "Be brief."}
    resumed = await cli("agent", "resume", "ses_imported_one", "--message", "merci")
    assert resumed.returncode == 0, resumed.stderr
    assert "Agent: En route 🚚" in resumed.stderr and resumed.stdout.strip() == "merci"

    exported = await cli("agent", "export", "ses_imported_one", rows[1][0])
    assert exported.returncode == 0, exported.stderr
    one, two = (json.loads(line) for line in exported.stdout.splitlines())
    assert all("ts" in m for m in one["messages"] if m["role"] != "system")
    assert [{k: m[k] for k in ("role", "content")} for m in one["messages"]] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Où est ma commande ?"},
        {"role": "assistant", "content": "En route 🚚"},
        {"role": "user", "content": "merci"},
        {"role": "assistant", "content": "merci"},
    ]
    assert one["metadata"] == {"source": "support-desk"} and one["agent"] == "echo"
    assert two["task_id"] == "task_migrated"
    assert [{k: m[k] for k in ("role", "content")} for m in two["messages"]] == second["messages"]
    # What was exported imports again, as it was (under new ids).
    again = await cli(
        "agent", "import", "-", stdin=jsonl({k: v for k, v in one.items() if k != "session_id"})
    )
    assert again.returncode == 0, again.stderr
    copy = await cli("agent", "export", again.stdout.split("\t")[0])
    assert json.loads(copy.stdout)["messages"] == one["messages"]


async def test_bad_lines_are_reported_and_nothing_is_imported(
    client: SessionClient,
    worker: InProcessWorker,
    cli,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    before = len(await client.records())
    good = {"messages": [{"role": "user", "content": "fine"}]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"messages": [{"role": "tool", "content": "x"}]}),
        json.dumps({"messages": []}),
        json.dumps({"session_id": "bad id", "messages": [{"role": "user", "content": "x"}]}),
        json.dumps({**good, "colour": "blue"}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = await cli("agent", "import", str(path), "--agent", "echo")
    assert out.returncode == 1
    for number in (2, 3, 4, 5, 6):
        assert f"line {number}:" in out.stderr, out.stderr
    assert "line 1:" not in out.stderr and "nothing imported" in out.stderr
    unknown = await cli("agent", "import", "-", "--agent", "nobody", stdin=jsonl(good))
    assert unknown.returncode == 1 and "line 1: unknown agent 'nobody'" in unknown.stderr
    none = await cli("agent", "import", "-", stdin=jsonl(good))
    assert none.returncode == 1 and "no agent" in none.stderr
    assert len(await client.records()) == before


async def test_a_failed_import_leaves_nothing(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid = await settled_session(client, "echo")
    taken = Conversation.model_validate(
        {"session_id": sid, "messages": [{"role": "user", "content": "x"}]}
    )
    with pytest.raises(Exception, match="already exists"):
        await import_conversation(client, taken, agent="echo", task_id=None)
    assert (await client.get(sid)).counters.user_messages == 0  # the existing one is untouched
    huge = Conversation.model_validate(
        {"messages": [{"role": "user", "content": "x" * 2_000_000}], "session_id": "ses_huge"}
    )
    with pytest.raises(Exception, match="exceeds"):
        await import_conversation(client, huge, agent="echo", task_id=None)
    stored = await direct.read_subject(
        client.bus.nc,
        client.bus.stream_of("ses_huge"),
        subjects.session_all("ses_huge"),
        after=0,
        timeout=5,
    )
    assert stored == []


async def test_history_pages_both_ways_through_interleaved_sessions(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """Read from the end in windows, or forwards from a cursor: every page equals the same
    slice of the full history, with other sessions' events interleaved in the stream."""
    sids = [await settled_session(client, "echo") for _ in range(3)]
    rng = random.Random(7)
    for i in range(60):
        sid = rng.choice(sids)
        await client.wait(await client.send(sid, f"m{i}"))
    for sid in sids:
        full = await client.history(sid)
        for limit in (1, 5, 17, 1000):
            pages: list[list[int]] = []
            before = None
            while True:
                items, more = await client.history(sid, before=before, limit=limit, more=True)
                pages.insert(0, [h.seq for h in items])
                if not more:
                    break
                before = items[0].seq
            assert [s for page in pages for s in page] == [h.seq for h in full], (sid, limit)
            pages, after = [], 0
            while True:
                items, more = await client.history(sid, after=after, limit=limit, more=True)
                pages.append([h.seq for h in items])
                if not more:
                    break
                after = items[-1].seq
            assert [s for page in pages for s in page] == [h.seq for h in full], (sid, limit)
            assert all(len(page) == limit for page in pages[:-1])
    with pytest.raises(ValueError, match="not both"):
        await client.history(sids[0], before=5000, after=1000)


async def test_a_100000_message_session_resumes_and_answers(
    client: SessionClient,
    worker: InProcessWorker,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
        for i in range(100_000)
    ]
    conv = Conversation.model_validate({"messages": messages})
    record = await import_conversation(client, conv, agent="echo", task_id=None)
    sid = record.session_id
    assert record.counters.user_messages + record.counters.agent_messages == 100_000
    items, more = await client.history(sid, limit=3, more=True)
    assert [h.content for h in items] == ["message 99997", "message 99998", "message 99999"]
    assert more
    items, more = await client.history(sid, after=0, limit=2, more=True)  # from the start
    assert [h.content for h in items] == ["message 0", "message 1"] and more
    items, more = await client.history(sid, after=items[-1].seq, limit=2, more=True)
    assert [h.content for h in items] == ["message 2", "message 3"] and more
    events = await client.wait(await client.send(sid, "still there?"))
    reply = next(e for e in events if isinstance(e, AgentMessage))
    assert reply.content == "still there?"
    resumed = await cli("agent", "resume", sid, "--last", "2", "--message", "and now?")
    assert resumed.returncode == 0, resumed.stderr
    assert "Agent: still there?" in resumed.stderr and resumed.stdout.strip() == "and now?"


async def test_the_context_is_compacted_into_a_summary_and_the_history_stays_whole(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """The recall agent keeps at most 4 messages: past that, the oldest become a running
    summary (a context.compacted event naming their range); the history keeps them all."""
    sid = await settled_session(client, "recall")
    replies: list[str] = []
    compactions: list[ContextCompacted] = []
    for i in range(6):
        events = await client.wait(await client.send(sid, f"m{i}"))
        replies += [e.content for e in events if isinstance(e, AgentMessage)]
        compactions += [e for e in events if isinstance(e, ContextCompacted)]
    answers = [json.loads(r) for r in replies]
    assert answers[0] == {"seen": [], "summary": None}
    assert len(compactions) >= 2
    history = await client.history(sid)
    first = compactions[0]
    # At the third message the context holds 5 (> 4): the oldest 3 go, the newest 2 stay.
    assert first.from_seq == history[0].seq and first.messages == 3
    assert [h.seq for h in history if first.from_seq <= h.seq <= first.to_seq] == [
        h.seq for h in history[:3]
    ]
    assert first.summary.startswith("User: m0\nAgent: ") and first.summary.endswith("User: m1")
    last = answers[-1]
    assert 1 <= len(last["seen"]) <= 3 and last["seen"][-1] == replies[-2]  # the newest stay
    assert last["summary"].startswith("User: m0\n")  # the summary reaches the agent
    assert len(history) == 12  # nothing left the history


async def test_long_messages_are_compacted_by_size(nats: NatsServer, tmp_path: Path) -> None:
    """A character budget (PRAXIS_CONTEXT_CHARS) bounds the state whatever the messages'
    size, so the snapshot a resume reads stays small."""
    settings = make_settings(nats.url, tmp_path, context_chars=5000)
    async with connect(settings, nats.url, "test-small-context") as bus:
        client = SessionClient(bus)
        worker = Worker(bus, load_agents(settings.agents))
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        sid = await settled_session(client, "echo")
        for i in range(8):
            await client.wait(await client.send(sid, f"{i}" * 2000))
        ck, _ = await reading.checkpoint(client, sid)
        assert sum(len(m.content) for m in ck.context) <= 5000 + 2000
        assert len(await client.history(sid)) == 16
        stop.set()
        await running
