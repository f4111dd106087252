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


REFUSED_BACKOFF = 0.1
"""Seconds before asking a consumer again that refused a pull (no leader, during an
election): a pull asked at once would be refused at once, as fast as the loop runs."""


class _Source:
    """One consumer a loop takes from: its pull requests' inbox and what it has learnt."""

    def __init__(self, stream: str, consumer: str) -> None:
        self.stream = stream
        self.api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.stopping = asyncio.Event()
        """Set when the loop stops, or stops taking from this source alone."""
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.backlog = 0
        """Messages waiting on the server (the last one delivered said how many)."""
        self.refused = False
        """The last pull was refused (no leader): the next waits a moment."""
        self.hint = 0
        """How many to ask for next when the loop shares its slots with other sources:
        doubled after a full batch, down to what came after one that ran dry."""


class PullLoop:
    """Run ``handler`` for each message of one or more consumers (``sources``: stream and
    consumer names), at most ``capacity`` at a time in all."""

    def __init__(
        self,
        nc: Client,
        sources: list[tuple[str, str]],
        handler: Handler,
        *,
        capacity: int,
        expires: float = 1.0,
        full: asyncio.Event | None = None,
    ) -> None:
        self._nc = nc
        self._sources = [_Source(stream, consumer) for stream, consumer in sources]
        self._handler = handler
        self._capacity = capacity
        self._expires = expires
        self._silence = expires + 1.0  # no answer at all by then: the pull is gone
        self._tasks: set[asyncio.Task[None]] = set()
        self._free = asyncio.Event()
        self._free.set()
        self._asked = 0
        """Slots promised to pull requests still open (sources share the capacity)."""
        self.full = full or asyncio.Event()
        """Set while every slot is taken, or more messages wait on the server (the last
        one delivered said how many) than there are free slots: work waits for this loop."""
        self._resting = 0
        self.saturations = 0
        """How many times the loop became full (work waiting) so far."""
        self.refusals = 0
        """Pull requests refused so far (a consumer without a leader)."""
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._started = False

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
        """Take work from every source until :meth:`stop` (and from those added meanwhile)."""
        self._started = True
        for source in self._sources:
            self._start(source)
        try:
            while self._running:
                done, _ = await asyncio.wait(
                    set(self._running), return_when=asyncio.FIRST_COMPLETED
                )
                errors = [e for t in done if not t.cancelled() and (e := t.exception())]
                if errors:  # a source's loop broke: stop the others, and say why
                    self.stop()
                    if self._running:
                        await asyncio.wait(set(self._running))
                    raise errors[0]
        finally:
            await asyncio.gather(*(cancel_and_wait(task) for task in set(self._running)))

    def add_source(self, stream: str, consumer: str) -> None:
        """Take work from one more consumer too (the bus grew, or it is this worker's now)."""
        source = _Source(stream, consumer)
        self._sources.append(source)
        if self._started and not self._stopping.is_set():
            self._start(source)

    def remove_source(self, stream: str) -> None:
        """Stop taking work from ``stream``'s consumer (what its last pull still delivers
        goes back); what it handed over keeps running."""
        for source in [s for s in self._sources if s.stream == stream]:
            self._sources.remove(source)
            source.stopping.set()
        self._free.set()

    @property
    def streams(self) -> list[str]:
        """The streams whose consumers this loop takes work from."""
        return [source.stream for source in self._sources]

    def _start(self, source: _Source) -> None:
        task = asyncio.create_task(self._take(source))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _take(self, source: _Source) -> None:
        inbox = self._nc.new_inbox()

        async def _put(msg: Msg) -> None:
            source.queue.put_nowait(msg)

        sub = await self._nc.subscribe(inbox, cb=_put)
        try:
            while not source.stopping.is_set():
                await self._wait_for_slot(source)
                if source.stopping.is_set():
                    break
                await self._pull(source, inbox, self._share(source))
                if source.refused:  # its consumer has no leader yet: ask again soon, not now
                    source.refused = False
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(source.stopping.wait(), REFUSED_BACKOFF)
            await self._return_outstanding(source)
        finally:
            await sub.unsubscribe()

    def _share(self, source: _Source) -> int:
        """How many messages ``source`` asks for: every free slot when it is the only
        source; else a part that grows while it keeps delivering full batches, so that a
        busy partition gets the slots quiet ones leave."""
        free = self._capacity - self.in_flight - self._asked
        if len(self._sources) <= 1:
            return free
        if source.hint == 0:
            source.hint = max(1, free // len(self._sources))
        return max(1, min(free, source.hint))

    def stop(self) -> None:
        """Stop taking work; messages already handed over keep running."""
        self._stopping.set()
        for source in self._sources:
            source.stopping.set()
        self._free.set()

    async def wait_idle(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running handlers, then cancel them."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            await asyncio.gather(*(cancel_and_wait(task) for task in pending))

    async def _wait_for_slot(self, source: _Source) -> None:
        while self.in_flight + self._asked >= self._capacity and not source.stopping.is_set():
            self._free.clear()
            await self._free.wait()

    async def _pull(self, source: _Source, inbox: str, want: int) -> None:
        """One pull request for ``want`` messages; its slots are promised to it (no other
        source asks for them) until it delivers or ends."""
        request = {"batch": want, "expires": int(self._expires * 1e9)}
        self._asked += want
        received = 0
        stop = asyncio.ensure_future(source.stopping.wait())
        try:
            await self._nc.publish(source.api, json.dumps(request).encode(), reply=inbox)
            while received < want:
                get = asyncio.ensure_future(source.queue.get())
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
                        source.backlog = 0
                        source.hint = max(1, received)
                        self._update()
                    else:  # 409 leadership change, 503 no leader (an election): not at once
                        source.refused = True
                        self.refusals += 1
                    return  # a new pull is issued
                received += 1
                self._asked -= 1  # the slot is the handler's now
                with contextlib.suppress(Exception):  # metadata of a well-formed delivery
                    source.backlog = msg.metadata.num_pending
                self._spawn(msg)
            source.hint = min(self._capacity, 2 * want)  # a full batch: ask for more
        finally:
            self._asked -= want - received
            self._free.set()
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
        backlog = sum(source.backlog for source in self._sources)
        if self.in_flight >= self._capacity or backlog > self._capacity - self.in_flight:
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

    async def _return_outstanding(self, source: _Source) -> None:
        """After stop: messages of the last pull still arriving go straight back (nak)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self._silence
        while loop.time() < end:
            try:
                msg = await asyncio.wait_for(source.queue.get(), end - loop.time())
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
