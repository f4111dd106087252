"""Issue 9: property-based fuzzing of the bus command decoder. Whatever lands on a
session's command subject — bytes that are not JSON, JSON of any shape, commands with the
right kind and wrong fields — the worker stays up, every stored event is well formed, and
the session still answers a good message. Bounded: a few batches of a few dozen commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import nats
import nats.js.errors
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from praxis.bus import Settings, direct, subjects
from praxis.schemas import decode_record
from tests.conftest import WorkerProcess

KINDS = [
    "create_session",
    "user_message",
    "suspend",
    "resume",
    "complete",
    "cancel_turn",
    "expire",
    "decide_tool_call",
    "nonsense",
]
SID = "<sid>"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
odd_text = st.one_of(
    st.text(max_size=60),
    st.just(""),
    st.just("a.b"),
    st.just("*"),
    st.just(">"),
    st.just("x" * 300),
    st.just("\u0000\ud7ff\U0001f600"),
)
plausible = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS), "session_id": st.just(SID)},
    optional={
        "task_id": odd_text,
        "command_id": odd_text,
        "content": odd_text | json_values,
        "agent": odd_text,
        "message": odd_text,
        "reply_to": odd_text,
        "call_id": odd_text,
        "approve": json_values,
        "on_busy": odd_text,
        "queue": json_values,
        "idle_timeout": json_values,
        "interface": odd_text,
        "actor": odd_text,
        "owner": json_values,
        "v": json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    plausible.map(lambda d: json.dumps(d).encode()),
)


async def _batch(url: str, stream: str, batch: list[bytes]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # the worker process provisions the stream as it starts
            try:
                await js.stream_info(stream)
                break
            except nats.js.errors.NotFoundError:
                assert asyncio.get_running_loop().time() < deadline, "no stream"
                await asyncio.sleep(0.05)
        sid = f"ses_{uuid.uuid4().hex}"
        base = {"session_id": sid, "task_id": "fuzz"}
        inbox = nc.new_inbox()
        replies = await nc.subscribe(inbox)
        create = {**base, "kind": "create_session", "agent": "echo", "reply_to": inbox}
        await js.publish(subjects.inputs(sid, 0), json.dumps(create).encode())
        assert json.loads((await replies.next_msg(timeout=20)).data)["outcome"] == "done"
        for i, payload in enumerate(batch):
            data = payload.replace(SID.encode(), sid.encode())
            await js.publish(subjects.inputs(sid, 0), data, headers={"Nats-Msg-Id": f"f{i}{sid}"})
        ping_id = f"cmd_ping{uuid.uuid4().hex}"
        ping = {**base, "kind": "user_message", "content": "ping", "command_id": ping_id}
        await js.publish(subjects.inputs(sid, 0), json.dumps({**ping, "reply_to": inbox}).encode())
        while True:  # a fuzzed command cannot name our inbox: this is the ping's outcome
            outcome = json.loads((await replies.next_msg(timeout=30)).data)
            if outcome["command_id"] == ping_id:
                break
        if outcome["outcome"] == "completed":
            assert outcome["reply"] == "ping"
        else:  # a fuzzed suspend or complete took effect: the ping is refused for that
            assert outcome["outcome"] == "rejected", outcome
            assert outcome["state"] in ("SUSPENDED", "COMPLETED"), outcome
        msgs = await direct.read_subject(nc, stream, subjects.events(sid, 0), after=0, timeout=5)
        # every stored record is well formed
        events = [e for m in msgs for _, e in decode_record(m.seq, m.data)]
        assert events[0].type == "session.created"
        assert all(e.session_id == sid for e in events)
    finally:
        await nc.close()


def test_no_command_on_the_bus_breaks_a_worker_or_a_history(
    settings: Settings, worker_processes: Callable[..., list[WorkerProcess]]
) -> None:
    [proc] = worker_processes(1)
    url = settings.nats_url
    assert url is not None
    seen = {"batches": 0, "commands": 0}

    @hsettings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(payloads, min_size=10, max_size=30))
    def run(batch: list[bytes]) -> None:
        asyncio.run(_batch(url, settings.stream, batch))
        seen["batches"] += 1
        seen["commands"] += len(batch)
        assert proc.proc.poll() is None, "the worker died"

    run()
    assert seen["batches"] >= 15 and proc.proc.poll() is None
