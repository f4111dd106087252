"""Export and import as a backup: a restore brings a session back as it was, an import can
be run again, and lines for agents no worker offers any more do not block the others."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from praxis.bus import BusError, Scope, SessionClient, SessionNotFoundError, Settings, leases
from praxis.bus import transfer as transfer_module
from praxis.bus.transfer import Conversation, import_conversation
from praxis.schemas import Owner, SessionState
from tests.conftest import (
    InProcessWorker,
    env_for,
    eventually,
    praxis,
    remnants,
    settled_session,
)

ANN = Scope(Owner(principal="ann", tenant="acme"))


def _conversation(sid: str, messages: int) -> Conversation:
    roles = ("user", "assistant")
    return Conversation.model_validate(
        {
            "session_id": sid,
            "messages": [{"role": roles[i % 2], "content": f"m{i}"} for i in range(messages)],
        }
    )


async def test_importing_a_file_again_after_a_purge_imports_it_again(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """Each import run has its own message ids: the same file imported within the stream's
    duplicate window is stored again, not dropped as a repeat of the first run."""
    conv = _conversation("ses_reimported", 2)
    first = await import_conversation(client, conv, agent="echo", task_id=None)
    assert first.counters.user_messages + first.counters.agent_messages == 2
    await client.purge("ses_reimported")
    again = await import_conversation(client, conv, agent="echo", task_id=None)
    assert again.counters.user_messages + again.counters.agent_messages == 2
    assert [h.content for h in await client.history("ses_reimported")] == ["m0", "m1"]


async def test_an_import_that_failed_half_way_can_be_tried_again(
    client: SessionClient, worker: InProcessWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the first batch of events was stored removes the session; trying
    again stores every message (with fixed ids, the first batch was dropped as repeats)."""
    size = transfer_module.PIPELINE + 88
    conv = _conversation("ses_half_imported", size)
    renew = transfer_module.leases.renew
    calls = 0

    async def lost_once(*args: Any, **kwargs: Any) -> bool:
        nonlocal calls
        calls += 1
        return False if calls == 1 else await renew(*args, **kwargs)

    monkeypatch.setattr(transfer_module.leases, "renew", lost_once)
    with pytest.raises(BusError, match="lost the session's lease"):
        await import_conversation(client, conv, agent="echo", task_id=None)
    assert await remnants(client, "ses_half_imported") == {}
    record = await import_conversation(client, conv, agent="echo", task_id=None)
    assert record.counters.user_messages + record.counters.agent_messages == size
    history = await client.history("ses_half_imported")
    assert [h.content for h in history] == [f"m{i}" for i in range(size)]


async def test_rolled_back_and_interrupted_messages_are_restored_as_such(
    client: SessionClient, worker: InProcessWorker
) -> None:
    line = {
        "session_id": "ses_marks",
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "cut sho", "interrupted": True},
            {"role": "user", "content": "two", "rolled_back": True},
            {"role": "assistant", "content": "dropped", "rolled_back": True},
            {"role": "user", "content": "three"},
        ],
    }
    await import_conversation(client, Conversation.model_validate(line), agent="echo", task_id=None)
    history = await client.history("ses_marks")
    assert [(h.content, h.interrupted, h.rolled_back) for h in history] == [
        ("one", False, False),
        ("cut sho", True, False),
        ("two", False, True),
        ("dropped", False, True),
        ("three", False, False),
    ]
    exported = await transfer_module.export_session(client, "ses_marks")
    assert [m.get("rolled_back", False) for m in exported["messages"]] == [0, 0, 1, 1, 0]


def _shown(env: dict[str, str], sid: str) -> dict[str, Any]:
    out = praxis(env, "agent", "show-session", sid, "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _comparable(shown: dict[str, Any]) -> dict[str, Any]:
    """What a restore keeps: all but where the events are (their cursors and count)."""
    out = {**shown, "counters": {**shown["counters"]}}
    out["counters"].pop("events")
    out["history"] = [{k: v for k, v in h.items() if k != "seq"} for h in shown["history"]]
    return out


async def _sessions_to_back_up(client: SessionClient) -> list[str]:
    """An owner's completed session with a failed turn, and a suspended one that expires."""
    ann = client.scoped(ANN, actor="ann")
    record, made = await ann.create("boom", metadata={"ticket": 7})
    await ann.wait(made)
    await ann.wait(await ann.send(record.session_id, "will fail"))
    await ann.complete(record.session_id, reason="done")
    paused = await settled_session(client, "echo", idle_timeout=3600, task_id="task_backup")
    await client.wait(await client.send(paused, "remember me"))
    await client.suspend(paused)
    return [record.session_id, paused]


async def test_a_session_restored_from_its_export_is_the_session_it_was(
    client: SessionClient, worker: InProcessWorker, settings: Settings, tmp_path: Path
) -> None:
    done, paused = await _sessions_to_back_up(client)
    env = env_for(settings)
    before = {sid: await asyncio.to_thread(_shown, env, sid) for sid in (done, paused)}
    assert before[done]["owner"] == {"principal": "ann", "tenant": "acme"}
    assert before[done]["counters"]["failed_turns"] == 1

    exports = tmp_path / "backup"

    async def let_go() -> bool:  # cleanup skips a session a worker is still on
        return all(
            [await leases.holder(client.bus.leases_of(s), s) is None for s in (done, paused)]
        )

    await eventually(let_go, what="the worker to let the sessions go")
    swept = await asyncio.to_thread(
        praxis, env, "agent", "cleanup", "--older-than", "0", "--state", "any",
        "--export", str(exports),
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    for sid in (done, paused):
        with pytest.raises(SessionNotFoundError):
            await client.get(sid)

    for sid in (done, paused):
        back = await asyncio.to_thread(
            praxis, env, "agent", "import", str(exports / f"{sid}.jsonl")
        )
        assert back.returncode == 0, back.stderr
    after = {sid: await asyncio.to_thread(_shown, env, sid) for sid in (done, paused)}
    for sid in (done, paused):
        assert _comparable(after[sid]) == _comparable(before[sid])
    # The owner sees it again (and nobody else does); the suspended one can be resumed.
    assert (await client.scoped(ANN).get(done)).state is SessionState.COMPLETED
    other = client.scoped(Scope(Owner(principal="bob", tenant="acme")))
    with pytest.raises(SessionNotFoundError):
        await other.get(done)
    assert (await client.resume(paused)).state is SessionState.ACTIVE
    await client.wait(await client.send(paused, "still here?"))
    assert [h.content for h in await client.history(paused)][-2:] == ["still here?"] * 2


async def test_lines_for_agents_no_longer_offered(
    client: SessionClient, worker: InProcessWorker, settings: Settings
) -> None:
    """A line whose session could still take messages needs an offered agent: without one
    nothing is imported, unless --skip-unknown (which reports it). An ended session is
    restored whatever its agent."""
    fine = {
        "session_id": "ses_fine",
        "agent": "echo",
        "messages": [{"role": "user", "content": "a"}],
    }
    retired = {**fine, "session_id": "ses_retired_live", "agent": "retired"}
    ended = {**retired, "session_id": "ses_retired_done", "state": "COMPLETED"}
    lines = "".join(json.dumps(x) + "\n" for x in (fine, retired, ended))
    env = env_for(settings)
    refused = await asyncio.to_thread(praxis, env, "agent", "import", "-", stdin=lines)
    assert refused.returncode == 1
    assert "line 2: unknown agent 'retired'" in refused.stderr
    # the agents a user may name, as 'agent run' and REST list them (not the bench's)
    assert "known agents: boom, crash, echo, hang, hello-world, recall, slow (" in refused.stderr
    assert "--skip-unknown" in refused.stderr
    for sid in ("ses_fine", "ses_retired_live", "ses_retired_done"):
        with pytest.raises(SessionNotFoundError):
            await client.get(sid)
    done = await asyncio.to_thread(
        praxis, env, "agent", "import", "-", "--skip-unknown", stdin=lines
    )
    assert done.returncode == 0, done.stderr
    assert "skipped line 2: unknown agent 'retired'" in done.stderr
    assert "2 conversation(s) imported, 1 skipped" in done.stderr
    assert (await client.get("ses_fine")).state is SessionState.ACTIVE
    assert (await client.get("ses_retired_done")).state is SessionState.COMPLETED
    with pytest.raises(SessionNotFoundError):
        await client.get("ses_retired_live")
