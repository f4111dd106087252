"""What a worker knows of the order of the work messages it receives: enough to tell,
without asking the stream, that a trigger's input is its session's next one.

The work consumer numbers its deliveries (the consumer sequence, one per delivery to any
worker) and delivers every input the first time in the order it was stored. So while a
worker receives deliveries numbered without a gap, no other worker received anything
meanwhile; and an input stored after the first one delivered in that run of deliveries
was delivered here (the first time) before any later input. A worker that has seen no
other input of a session stored after its cursor and before a trigger's knows that
trigger's input is the next one, and takes it as delivered: no direct get.

Anything else (a gap, a redelivery or a forwarded trigger in the way, a session whose
deliveries were forgotten to bound the memory) falls back to reading the next input
from the stream, as every trigger did before. A consumer that restarts or changes leader
goes on from the deliveries it had stored: what it had not is delivered again, in the
same order, and a number it gives twice is a gap here (never one after the last).
"""

from __future__ import annotations

from collections import OrderedDict

from nats.aio.msg import Msg

KEEP_PER_SESSION = 8
"""Stream sequences remembered per session (a session with more deliveries in one run is
not known: its next input is read from the stream)."""


class Deliveries:
    """The deliveries of the work consumers (one per partition) to this worker: each
    consumer numbers its own, so each is followed on its own."""

    def __init__(self, sessions: int = 10_000) -> None:
        self._sessions = sessions
        self._runs: dict[str, _Run] = {}

    def _run(self, msg: Msg) -> _Run | None:
        try:
            stream = msg.metadata.stream
        except Exception:  # not a delivery (no metadata)
            return None
        run = self._runs.get(stream)
        if run is None:
            run = self._runs[stream] = _Run(self._sessions)
        return run

    def add(self, session_id: str, msg: Msg) -> None:
        """A delivery of a work consumer to this worker, in the order received."""
        run = self._run(msg)
        if run is not None:
            run.add(session_id, msg)

    def is_next(self, session_id: str, cursor: int, msg: Msg) -> bool:
        """Whether ``msg``, a trigger of ``session_id`` delivered here, is for the input
        right after ``cursor`` (the session's latest input handled)."""
        run = self._run(msg)
        return run is not None and run.is_next(session_id, cursor, msg)


class _Run:
    """The deliveries of one work consumer to this worker since its last gap."""

    def __init__(self, sessions: int) -> None:
        self._sessions = sessions
        self._last: int | None = None
        """The consumer sequence of the latest delivery here."""
        self._since: int | None = None
        """The consumer sequence from which every delivery came here."""
        self._first: int | None = None
        """The stream sequence of the first input delivered the first time since then:
        every input stored at or after it was delivered here before any later one."""
        self._seen: OrderedDict[str, list[int]] = OrderedDict()
        """Per session, the stream sequences of its deliveries since ``_since`` (the
        latest ``KEEP_PER_SESSION``)."""
        self._forgotten = 0
        """The highest stream sequence of a delivery forgotten (its session dropped, or
        more than ``KEEP_PER_SESSION`` of it): nothing is known below it."""

    def add(self, session_id: str, msg: Msg) -> None:
        """A delivery of the work consumer to this worker, in the order received."""
        try:
            meta = msg.metadata
            consumer, stream = meta.sequence.consumer, meta.sequence.stream
            first = meta.num_delivered == 1
        except Exception:  # not a delivery (no metadata): nothing is known from here
            self._last = None
            return
        if self._last is None or consumer != self._last + 1:
            self._since, self._first = consumer, None  # another worker got some: start over
            self._seen.clear()
            self._forgotten = 0
        self._last = consumer
        if first and self._first is None:
            self._first = stream
        seqs = self._seen.pop(session_id, [])
        seqs.append(stream)
        if len(seqs) > KEEP_PER_SESSION:
            self._forgotten = max(self._forgotten, seqs.pop(0))
        self._seen[session_id] = seqs
        if len(self._seen) > self._sessions:
            _, dropped = self._seen.popitem(last=False)
            self._forgotten = max(self._forgotten, *dropped)

    def is_next(self, session_id: str, cursor: int, msg: Msg) -> bool:
        """Whether ``msg``, a trigger of ``session_id`` delivered here, is for the input
        right after ``cursor`` (the session's latest input handled)."""
        if self._since is None or self._last is None or self._first is None:
            return False
        try:
            meta = msg.metadata
            consumer, stream = meta.sequence.consumer, meta.sequence.stream
            if meta.num_delivered != 1:
                return False
        except Exception:
            return False
        if not self._since <= consumer <= self._last:
            return False  # delivered before the latest gap (or to another worker)
        if cursor + 1 < self._first or cursor < self._forgotten or stream <= cursor:
            return False  # an input after the cursor may have been delivered elsewhere
        return not any(cursor < s < stream for s in self._seen.get(session_id, ()))
