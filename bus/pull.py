"""A pull consumer loop that hands each message over as soon as it arrives.

nats-py's ``fetch(batch>1)`` waits for the whole batch, which adds latency to every turn;
this loop keeps one pull request outstanding for as many messages as there are free slots,
and re-issues it when it ends (expiry, a status, or silence past the expiry). Stopping
waits at most one expiry, handing back (nak) whatever the last pull still delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator

from nats.aio.client import Client
from nats.aio.msg import Msg

from praxis.bus.tasks import cancel_and_wait

log = logging.getLogger("praxis.bus.pull")

Handler = Callable[[Msg], Awaitable[None]]


class PullLoop:
    """Run ``handler`` for each message, at most ``capacity`` at a time."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        handler: Handler,
        *,
        capacity: int,
        expires: float = 1.0,
        full: asyncio.Event | None = None,
    ) -> None:
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._handler = handler
        self._capacity = capacity
        self._expires = expires
        self._silence = expires + 1.0  # no answer at all by then: the pull is gone
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._free = asyncio.Event()
        self._free.set()
        self.full = full or asyncio.Event()
        """Set while every slot is taken, or more messages wait on the server (the last
        one delivered said how many) than there are free slots: work waits for this loop."""
        self._backlog = 0
        self._resting = 0
        self.saturations = 0
        """How many times the loop became full (work waiting) so far."""
        self._stopping = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Handlers at work (those resting, see :meth:`resting`, take no slot)."""
        return len(self._tasks) - self._resting

    @contextlib.contextmanager
    def resting(self) -> Iterator[None]:
        """A handler that waits without working (a worker keeping a session a moment for
        its next input) gives its slot back meanwhile."""
        self._resting += 1
        self._free.set()
        self._update()
        try:
            yield
        finally:
            self._resting -= 1
            self._update()

    async def run(self) -> None:
        inbox = self._nc.new_inbox()

        async def _put(msg: Msg) -> None:
            self._queue.put_nowait(msg)

        sub = await self._nc.subscribe(inbox, cb=_put)
        try:
            while not self._stopping.is_set():
                await self._wait_for_slot()
                if self._stopping.is_set():
                    break
                await self._pull(inbox, self._capacity - self.in_flight)
            await self._return_outstanding()
        finally:
            await sub.unsubscribe()

    def stop(self) -> None:
        """Stop taking work; messages already handed over keep running."""
        self._stopping.set()
        self._free.set()

    async def wait_idle(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running handlers, then cancel them."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            await asyncio.gather(*(cancel_and_wait(task) for task in pending))

    async def _wait_for_slot(self) -> None:
        while self.in_flight >= self._capacity and not self._stopping.is_set():
            self._free.clear()
            await self._free.wait()

    async def _pull(self, inbox: str, want: int) -> None:
        request = {"batch": want, "expires": int(self._expires * 1e9)}
        await self._nc.publish(self._api, json.dumps(request).encode(), reply=inbox)
        received = 0
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while received < want:
                get = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait(
                    {get, stop}, timeout=self._silence, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    return  # stopping, or the pull went silent (server restart): re-issue
                msg = get.result()
                status = msg.headers.get("Status") if msg.headers else None
                if status == "100":
                    continue
                if status is not None:
                    if status in ("404", "408"):  # nothing (more) to deliver
                        self._backlog = 0
                        self._update()
                    return  # 408 expired, 409 leadership change, ...: issue a new pull
                received += 1
                with contextlib.suppress(Exception):  # metadata of a well-formed delivery
                    self._backlog = msg.metadata.num_pending
                self._spawn(msg)
        finally:
            stop.cancel()

    def adopt(self, msg: Msg) -> None:
        """Run the handler for a message this loop did not pull (handed over by another
        process): it takes a slot like the others, so the loop pulls less meanwhile."""
        self._spawn(msg)

    def _spawn(self, msg: Msg) -> None:
        task = asyncio.create_task(self._run_one(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        self._update()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._free.set()
        self._update()

    def _update(self) -> None:
        if self.in_flight >= self._capacity or self._backlog > self._capacity - self.in_flight:
            if not self.full.is_set():
                self.saturations += 1
            self.full.set()
        else:
            self.full.clear()

    async def _run_one(self, msg: Msg) -> None:
        try:
            await self._handler(msg)
        except asyncio.CancelledError:
            await _quiet_nak(msg)
            raise
        except Exception:
            log.exception("handler failed for %s; message returned for redelivery", msg.subject)
            await _quiet_nak(msg, delay=1.0)

    async def _return_outstanding(self) -> None:
        """After stop: messages of the last pull still arriving go straight back (nak)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self._silence
        while loop.time() < end:
            try:
                msg = await asyncio.wait_for(self._queue.get(), end - loop.time())
            except TimeoutError:
                return
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                await _quiet_nak(msg)
            elif status != "100":
                return


async def _quiet_nak(msg: Msg, delay: float | None = None) -> None:
    try:
        await msg.nak(delay=delay)
    except Exception as e:  # already acked, or connection gone: redelivery happens anyway
        log.debug("nak failed: %s", e)
