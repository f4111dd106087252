"""The snapshot subscriptions of one worker: ``snap.<id>`` for each session it holds, the
answer to a follower that joins a turn in flight (the text so far).

A subscription is made when a run starts and kept for as long as the worker holds the
session's lease, between runs too (a busy worker keeps the lease after each turn): it then
answers that no turn is in flight, which is true, for no other worker may run the session
while this one holds it. It goes when the lease does (released, handed over, or the run's
end without keeping it): no subscribe and unsubscribe per turn of a busy worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from praxis.bus import subjects

Answer = Callable[[], bytes]


def _nothing() -> bytes:
    return b""  # no turn in flight


class Snapshots:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._subs: dict[str, Subscription | None] = {}
        self._answers: dict[str, Answer] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._subs)

    async def serve(self, session_id: str, answer: Answer) -> None:
        """Answer the session's snapshot requests with ``answer()`` from now on."""
        self._answers[session_id] = answer
        if session_id in self._subs:
            return
        self._subs[session_id] = None  # being made

        async def respond(msg: Msg) -> None:
            if not subjects.is_inbox(msg.reply):
                return
            body = self._answers.get(session_id, _nothing)()
            with contextlib.suppress(Exception):
                await msg.respond(body)

        try:
            self._subs[session_id] = await self.nc.subscribe(
                subjects.snapshot(session_id), cb=respond
            )
        except BaseException:
            self._subs.pop(session_id, None)
            raise

    def idle(self, session_id: str) -> None:
        """The run ended and the lease is kept: no turn is in flight."""
        if session_id in self._subs:
            self._answers[session_id] = _nothing

    def drop(self, session_id: str) -> None:
        """The worker no longer holds the session: stop answering for it."""
        self._answers.pop(session_id, None)
        sub = self._subs.pop(session_id, None)
        if sub is not None:
            task = asyncio.create_task(_unsubscribe(sub))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _unsubscribe(sub: Subscription) -> None:
    with contextlib.suppress(Exception):  # the connection closed meanwhile
        await sub.unsubscribe()
