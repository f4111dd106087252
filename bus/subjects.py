"""Subject names. Every token that comes from outside is validated before use."""

from __future__ import annotations

import re

from praxis.schemas import check_token

PURGE_REQUESTS = "praxis.purge"
"""Request/reply, answered by one worker (a queue group): remove a session. For callers
that may drive sessions but not purge the stream themselves (the edge, on DELETE)."""


LEASE_HANDOVERS = "praxis.lease.*"


def lease_handover(worker_id: str) -> str:
    """Request/reply to one worker: hand over the lease of a session it keeps between runs
    (a busy worker keeps a session's lease after its turn, for its next one)."""
    return f"praxis.lease.{check_token(worker_id, 'worker id')}"


def _in(partition: int) -> str:
    """The token between a session's id and ``in``/``out`` (none in partition 0)."""
    return "" if partition == 0 else f"p{partition}."


def input_wildcard(partition: int) -> str:
    """Every session's inputs in one partition (what its stream and consumer take)."""
    return f"sess.*.{_in(partition)}in"


def output_wildcard(partition: int) -> str:
    return f"sess.*.{_in(partition)}out.>"


def inputs(session_id: str, partition: int) -> str:
    """Commands and user input for a session (stored, deduplicated by command id)."""
    return f"sess.{check_token(session_id, 'session id')}.{_in(partition)}in"


def command_msg_id(session_id: str, command_id: str) -> str:
    """The ``Nats-Msg-Id`` of a command: its command id scoped by its session.

    JetStream's duplicate window is stream-wide, while a command id is an idempotency key
    within one session: the bare command id would make another session's command with the
    same id a 'duplicate', dropped while its sender is told it was stored."""
    return f"{check_token(session_id, 'session id')}.{check_token(command_id, 'command id')}"


def import_msg_id(session_id: str, run_id: str, index: int) -> str:
    """The ``Nats-Msg-Id`` of an imported event: scoped by the session and by the import
    run, so that importing the same file again (after a purge, or a failed try) is stored
    again rather than dropped as a repeat of the earlier run. Two dots: never a
    :func:`command_msg_id`."""
    return f"{check_token(session_id, 'session id')}.{run_id}.{index}"


def events(session_id: str, partition: int) -> str:
    """Durable events, written by the session's owner only, fenced."""
    return f"sess.{check_token(session_id, 'session id')}.{_in(partition)}out.evt"


def checkpoint(session_id: str, partition: int) -> str:
    """The latest checkpoint (rolled up), written with every commit."""
    return f"sess.{check_token(session_id, 'session id')}.{_in(partition)}out.ckpt"


def timer(session_id: str, partition: int) -> str:
    """The session's expiry timer: one JetStream message schedule (a new one replaces it)
    that publishes an ``expire`` command to :func:`inputs` when it is due."""
    return f"sess.{check_token(session_id, 'session id')}.{_in(partition)}out.timer"


def outputs(session_id: str, partition: int) -> str:
    """Everything the owner writes: the subject the fence is checked on."""
    return f"sess.{check_token(session_id, 'session id')}.{_in(partition)}out.>"


def session_all(session_id: str) -> str:
    return f"sess.{check_token(session_id, 'session id')}.>"


def live(session_id: str) -> str:
    """Commit notices and token deltas (core NATS, not stored)."""
    return f"live.{check_token(session_id, 'session id')}"


def snapshot(session_id: str) -> str:
    """Request/reply: the owner answers with the text of the turn in flight."""
    return f"snap.{check_token(session_id, 'session id')}"


_INBOX = re.compile(r"_INBOX[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+")


def is_inbox(subject: str | None) -> bool:
    """Whether a request's reply subject is an inbox (``_INBOX.…``, or a role's own prefix
    such as ``_INBOX_edge.…``). A worker answers only those: it would publish the answer
    with its own rights, so a reply subject naming the JetStream API or a session's
    events would make it do what the requester may not."""
    return subject is not None and _INBOX.fullmatch(subject) is not None


def session_of(subject: str) -> str:
    """The session id in a ``sess.<id>.…`` subject."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "sess":
        raise ValueError(f"not a session subject: {subject!r}")
    return check_token(parts[1], "session id")


# -- KV buckets: each is a JetStream stream; reading or purging it directly needs these ----


def kv_stream(bucket: str) -> str:
    """The stream that holds KV bucket ``bucket``."""
    return f"KV_{bucket}"


def kv_key(bucket: str, key: str) -> str:
    """The subject of ``key`` (or a wildcard: ``*``, ``>``) in KV bucket ``bucket``."""
    return f"$KV.{bucket}.{key}"
