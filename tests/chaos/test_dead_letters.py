"""Scenario 7 (rest): a command that keeps failing is parked as a dead letter, the session
goes on, and ``praxis dead-letters`` lists it and replays it once the cause is fixed.

Two causes: a bug in the worker's handling of one command (injected into an in-process
worker, the stand-in for any bug), and an agent that kills its worker process every time
(real worker processes, restarted as an operator's supervisor would).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from praxis.bus import AlreadyReplayedError, DeadLetterNotFoundError, SessionClient, Settings
from praxis.bus.embedded import NatsServer
from praxis.schemas import (
    AgentMessage,
    Checkpoint,
    Command,
    CommandDeadLettered,
    CommandFailed,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from praxis.workers.session import policy
from tests.conftest import (
    InProcessWorker,
    WorkerProcess,
    env_for,
    live_workers,
    make_settings,
    praxis,
    remnants,
    settled_session,
)

pytestmark = pytest.mark.partitions(1, 3)


@pytest.fixture
def settings(nats: NatsServer, tmp_path: Path) -> Settings:
    return make_settings(nats.url, tmp_path, command_attempts=3, turn_attempts=2)


def inject_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deciding on a message that says "poison" raises, on every worker of this process."""
    decide = policy.decide

    def buggy(
        state: Checkpoint, cmd: Command, ctx: policy.CommandContext, facts: policy.Facts
    ) -> policy.Decision:
        if isinstance(cmd, UserMessage) and "poison" in cmd.content:
            raise KeyError("injected bug")
        return decide(state, cmd, ctx, facts)

    monkeypatch.setattr(policy, "decide", buggy)


async def test_a_command_that_keeps_failing_is_parked_then_replayed_after_the_fix(
    client: SessionClient,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inject_bug(monkeypatch)
    worker = await start_worker()
    sid = await settled_session(client, "echo")
    receipt = await client.send(sid, "poison pill")
    events = await client.wait(receipt)

    # Two recorded failures, tried again, then parked: one final event names the letter.
    failures = [e for e in events if isinstance(e, CommandFailed)]
    assert [(f.attempt, f.retry) for f in failures] == [(1, True), (2, True)]
    assert all("KeyError" in f.error and "injected bug" in f.error for f in failures)
    parked = events[-1]
    assert isinstance(parked, CommandDeadLettered) and parked.attempts == 3
    assert parked.command_id == receipt.command_id and parked.final

    # The session goes on: the next message is answered (the bug still in place).
    after = await client.wait(await client.send(sid, "hello"))
    assert [e.content for e in after if isinstance(e, AgentMessage)] == ["hello"]

    [letter] = await client.dead_letters()
    assert letter.id == parked.dead_letter_id == f"{sid}.{parked.input_seq}"
    assert letter.session_id == sid and letter.command_kind == "user_message"
    assert letter.command["content"] == "poison pill" and letter.attempts == 3
    assert "injected bug" in letter.error and letter.status == "parked"
    assert await client.dead_letters("sess_other") == []

    # The CLI lists it (table and JSON) and shows it.
    env = env_for(settings)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(praxis, env, *args)

    listed = await cli("dead-letters")
    assert listed.returncode == 0 and letter.id in listed.stdout, listed.stderr
    as_json = json.loads((await cli("dead-letters", "--json")).stdout)
    assert [x["id"] for x in as_json] == [letter.id]
    shown = await cli("dead-letters", "show", letter.id)
    assert "poison pill" in shown.stdout and "injected bug" in shown.stdout

    # The fix is deployed (a worker without the bug); the operator replays from the CLI.
    await worker.stop()
    monkeypatch.undo()
    await start_worker()
    replayed = await cli("dead-letters", "replay", letter.id)
    assert replayed.returncode == 0, replayed.stderr
    assert "Agent: poison pill" in replayed.stdout
    history = [(h.role, h.content) for h in await client.history(sid)]
    assert history == [
        ("user", "hello"),
        ("agent", "hello"),
        ("user", "poison pill"),
        ("agent", "poison pill"),
    ]
    done = await client.dead_letter(letter.id)
    assert done.status == "replayed" and done.replayed_as is not None
    assert await client.dead_letters() == []
    assert [x.id for x in await client.dead_letters(include_replayed=True)] == [letter.id]

    # Replaying twice would send the message twice: refused, from the client and the CLI.
    with pytest.raises(AlreadyReplayedError):
        await client.replay(letter.id)
    again = await cli("dead-letters", "replay", letter.id)
    assert again.returncode == 1 and "already replayed" in again.stderr

    # Dropping forgets it; unknown and malformed ids are clear errors.
    assert (await cli("dead-letters", "drop", letter.id)).returncode == 0
    with pytest.raises(DeadLetterNotFoundError):
        await client.dead_letter(letter.id)
    for bad in ("nope", f"{sid}.x", "bad id.3"):
        out = await cli("dead-letters", "show", bad)
        assert out.returncode == 1 and "praxis: error:" in out.stderr, out


async def test_purging_a_session_removes_its_dead_letters(
    client: SessionClient,
    start_worker: Callable[[], Awaitable[InProcessWorker]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inject_bug(monkeypatch)
    await start_worker()
    sid = await settled_session(client, "echo")
    await client.wait(await client.send(sid, "poison"))
    assert len(await client.dead_letters(sid)) == 1
    assert "KV_praxis_dead_letters" in await remnants(client, sid)
    await client.purge(sid)
    assert await client.dead_letters(sid, include_replayed=True) == []
    assert await remnants(client, sid) == {}


async def test_a_turn_whose_workers_keep_dying_is_parked_and_the_session_goes_on(
    client: SessionClient,
    worker_processes: Callable[[int], list[WorkerProcess]],
) -> None:
    """The agent kills its worker on one message. A restarted worker takes the turn over
    after the lease time and dies too; with ``turn_attempts`` (2) used up, the next one
    parks the command instead of starting the turn a third time. The first worker dies
    inside the turn's group-commit window, before anything of the turn is stored: its
    attempt is counted from the command's redelivery, and the second one's start is stored
    at once, as attempt 2."""
    [first] = worker_processes(1)
    await live_workers(client, 1)
    sid = await settled_session(client, "crash")
    receipt = await client.send(sid, "crash please")
    assert await asyncio.to_thread(first.proc.wait, 30) == 17  # the agent's os._exit
    [second] = worker_processes(1)
    assert await asyncio.to_thread(second.proc.wait, 30) == 17  # took it over, died too
    worker_processes(1)
    events = await client.wait(receipt)
    assert [e.attempt for e in events if isinstance(e, TurnStarted)] == [2]
    assert not any(isinstance(e, AgentMessage) for e in events)
    failed = next(e for e in events if isinstance(e, TurnFailed))
    assert "gave up after 2 attempts" in failed.reason and not failed.final
    parked = events[-1]
    assert isinstance(parked, CommandDeadLettered) and "gave up" in parked.reason
    [letter] = await client.dead_letters(sid)
    assert letter.command["content"] == "crash please" and letter.attempts == 2

    after = await client.wait(await client.send(sid, "fine now"))
    assert [e.content for e in after if isinstance(e, AgentMessage)] == ["about to fine now"]
    record = await client.get(sid)
    assert record.counters.failed_turns == 1 and record.state.value == "ACTIVE"
