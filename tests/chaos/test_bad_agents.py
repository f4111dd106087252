"""Scenario 7 (part): an agent that raises or hangs. The turn fails with a reason within a
bounded time, the partial reply is kept (marked interrupted), and the session goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from praxis.bus import SessionClient, Settings
from praxis.bus.embedded import NatsServer
from praxis.schemas import AgentMessage, CommandFailed, SessionState, TurnFailed
from tests.conftest import InProcessWorker, make_settings, settled_session

pytestmark = pytest.mark.partitions(1, 3)

TURN_TIMEOUT = 1.5


@pytest.fixture
def settings(nats: NatsServer, tmp_path: Path) -> Settings:
    return make_settings(nats.url, tmp_path, turn_timeout=TURN_TIMEOUT)


async def test_an_agent_that_raises_fails_the_turn_and_the_session_goes_on(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid = await settled_session(client, "boom")
    events = await client.wait(await client.send(sid, "please"))
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and "the model fell over" in failed.reason
    partial = next(e for e in events if isinstance(e, AgentMessage))
    assert partial.interrupted and partial.content == "partial text "
    again = await client.wait(await client.send(sid, "and again"))
    assert isinstance(again[-1], TurnFailed)  # it still takes messages and answers them


async def test_an_agent_that_hangs_fails_the_turn_in_bounded_time(
    client: SessionClient, worker: InProcessWorker
) -> None:
    sid = await settled_session(client, "hang")
    t0 = time.monotonic()
    events = await client.wait(await client.send(sid, "hang on"))
    took = time.monotonic() - t0
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and "timed out" in failed.reason
    assert TURN_TIMEOUT <= took < TURN_TIMEOUT + 2
    after = await client.wait(await client.send(sid, "still there?"))
    reply = next(e for e in after if isinstance(e, AgentMessage))
    assert reply.content == "still there?" and not reply.interrupted


async def test_an_agent_whose_greeting_raises_at_once_fails_that_turn_only(
    client: SessionClient, worker: InProcessWorker
) -> None:
    """Agent code that raises before any stream exists is still the agent failing (a
    turn.failed), not the worker's handling of the command (which would be retried)."""
    record, receipt = await client.create("boom", metadata={"fail_greeting": True})
    events = await client.wait(receipt)
    failed = events[-1]
    assert isinstance(failed, TurnFailed) and "the greeting broke" in failed.reason
    assert not any(isinstance(e, CommandFailed) for e in events)
    again = await client.wait(await client.send(record.session_id, "hello?"))
    assert isinstance(again[-1], TurnFailed) and "the model fell over" in again[-1].reason
    assert (await client.get(record.session_id)).state is SessionState.ACTIVE
