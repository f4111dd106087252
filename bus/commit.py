"""The fenced append: a turn's events and its checkpoint, stored together or not at all.

One JetStream atomic batch (ADR-50) per commit. The first message carries
``Nats-Expected-Last-Subject-Sequence`` over ``sess.<id>.out.>``: the server stores the
batch only if nothing was written under the session's outputs since the checkpoint the
writer read. A writer that lost its lease can therefore never write.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from bus import direct, subjects
from bus.errors import FenceRejectedError, MessageTooLargeError, PublishError

WRONG_LAST_SEQUENCE = 10071
COMMIT_ID_HEADER = "Praxis-Commit-Id"


@dataclass(frozen=True, slots=True)
class Committed:
    first_seq: int
    checkpoint_seq: int

    def event_seqs(self, count: int) -> list[int]:
        return list(range(self.first_seq, self.first_seq + count))


async def append(
    nc: Client,
    stream: str,
    session_id: str,
    *,
    events: list[bytes],
    checkpoint: bytes,
    commit_id: str,
    expected_seq: int,
    max_bytes: int,
    timeout: float,
    deadline: float = 10.0,
) -> Committed:
    """Append ``events`` then ``checkpoint``; raise :class:`FenceRejectedError` if stale.

    A commit whose answer is lost (timeout, leader change) is resolved by reading the
    checkpoint back: its ``Praxis-Commit-Id`` header tells whether this commit landed.
    """
    for payload in (*events, checkpoint):
        if len(payload) > max_bytes:
            raise MessageTooLargeError(len(payload), max_bytes)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    delay = 0.05
    while True:
        try:
            return await _append_once(
                nc, stream, session_id, events, checkpoint, commit_id, expected_seq, timeout
            )
        except (NatsTimeoutError, NoRespondersError, asyncio.TimeoutError, PublishError) as e:
            landed = await _landed(nc, stream, session_id, commit_id, expected_seq, timeout)
            if landed is not None:
                return Committed(landed - len(events), landed)
            if loop.time() + delay > end:
                raise PublishError(f"commit to session {session_id!r} failed: {e!r}") from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def _append_once(
    nc: Client,
    stream: str,
    session_id: str,
    events: list[bytes],
    checkpoint: bytes,
    commit_id: str,
    expected_seq: int,
    timeout: float,
) -> Committed:
    batch_id = uuid.uuid4().hex
    evt_subject = subjects.events(session_id)
    total = len(events) + 1
    for i, payload in enumerate(events, start=1):
        headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
        if i == 1:
            headers.update(_fence(session_id, expected_seq))
        await nc.publish(evt_subject, payload, headers=headers)
    headers = {
        "Nats-Batch-Id": batch_id,
        "Nats-Batch-Sequence": str(total),
        "Nats-Batch-Commit": "1",
        "Nats-Rollup": "sub",
        COMMIT_ID_HEADER: commit_id,
    }
    if total == 1:
        headers.update(_fence(session_id, expected_seq))
    resp = await nc.request(subjects.checkpoint(session_id), checkpoint, headers=headers, timeout=timeout)
    ack = json.loads(resp.data or b"{}")
    err = ack.get("error")
    if err:
        if err.get("err_code") == WRONG_LAST_SEQUENCE:
            raise FenceRejectedError(session_id, expected_seq, err.get("description", ""))
        if err.get("code") == 503:
            raise PublishError(err.get("description", "unavailable"))
        raise PublishError(f"commit to {session_id!r} refused: {err.get('description', err)}")
    seq = int(ack["seq"])
    return Committed(first_seq=seq - len(events), checkpoint_seq=seq)


def _fence(session_id: str, expected_seq: int) -> dict[str, str]:
    return {
        "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
        "Nats-Expected-Last-Subject-Sequence-Subject": subjects.outputs(session_id),
    }


async def _landed(
    nc: Client, stream: str, session_id: str, commit_id: str, expected_seq: int, timeout: float
) -> int | None:
    """The checkpoint sequence if ``commit_id`` is the latest checkpoint; else ``None``.

    Raises :class:`FenceRejectedError` when another commit landed instead.
    """
    try:
        last = await direct.last_by_subject(nc, stream, subjects.checkpoint(session_id), timeout)
    except Exception:
        return None
    if last is None or last.seq == expected_seq:
        return None
    if last.headers.get(COMMIT_ID_HEADER) == commit_id:
        return last.seq
    raise FenceRejectedError(session_id, expected_seq, f"session moved on to {last.seq}")
