"""The stateless worker process: take work, run sessions, drain on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg

from praxis.bus import Bus, PullLoop, SessionClient, metrics, subjects
from praxis.bus.partitions import share
from praxis.bus.retention import Outcome, SweepLock, candidates, sweep
from praxis.bus.tasks import cancel_and_wait
from praxis.schemas import Interface, WorkerInfo, check_token, new_id
from praxis.workers.agents import AgentRegistry
from praxis.workers.session import RunContext, SessionRunner
from praxis.workers.session.ownership import Ownership, forwarded

log = logging.getLogger("praxis.worker")


class Worker:
    """Serves many sessions at once; holds no session state beyond a running turn."""

    def __init__(
        self,
        bus: Bus,
        registry: AgentRegistry,
        worker_id: str | None = None,
        *,
        dedicated: bool = True,
    ) -> None:
        self.bus = bus
        self.dedicated = dedicated
        self.registry = registry
        self.worker_id = worker_id or new_id("wrk")
        self.ctx = RunContext(bus, registry, self.worker_id)
        self._runners: dict[str, SessionRunner] = {}
        self._sharing = dedicated and not bus.settings.worker_partitions
        """Whether this worker takes a share of the partitions (see ``partitions.share``)."""
        self._taken = self._partitions_to_take()
        self._pull = PullLoop(
            bus.nc,
            [(bus.partitions.stream(k), bus.settings.consumer) for k in self._taken],
            self._on_trigger,
            capacity=bus.settings.worker_concurrency,
            # A CLI's own worker stops when the command ends: keep that wait short.
            expires=1.0 if dedicated else 0.2,
            full=self.ctx.crowded,
        )
        self.ctx.resting = self._pull.resting
        self._started = datetime.now(UTC)
        self._stopped = False
        self._saturations_seen = 0
        self.metrics_url: str | None = None

    def _partitions_to_take(self, sharing: list[str] | None = None) -> list[int]:
        """The partitions this worker takes work from: ``worker_partitions`` (those the bus
        has); else its share with the live workers ``sharing`` them (all until it knows
        them; a CLI's own worker: all)."""
        have = self.bus.partitions.all()
        chosen = self.bus.settings.worker_partitions
        if not chosen and self._sharing and sharing is not None:
            return share(self.bus.partitions.count, sharing, self.worker_id)
        if not chosen:
            return list(have)
        missing = sorted(set(chosen) - set(have))
        if missing:
            log.warning(
                "PRAXIS_WORKER_PARTITIONS names %s, which the bus does not have (yet): the "
                "bus has %d partitions",
                missing,
                len(have),
            )
        return sorted(set(chosen) & set(have))

    async def _watch_partitions(self) -> None:
        """Take work from the partitions this worker should now: those added to the bus
        while it runs (the bus reads its partitioning again now and then), and its share as
        workers come and go; stop taking from those another worker takes now."""
        sharing: list[str] | None = None
        if self._sharing and self.bus.partitions.count > 1:
            try:
                live = await SessionClient(self.bus).workers()
            except Exception as e:  # as it was, until the next heartbeat
                log.debug("reading the workers failed: %s", e)
                return
            sharing = [w.worker_id for w in live if w.sharing and w.dedicated]
        wanted = self._partitions_to_take(sharing)
        consumer = self.bus.settings.consumer
        for k in wanted:
            if k not in self._taken:
                self._pull.add_source(self.bus.partitions.stream(k), consumer)
                log.info("worker %s takes work from partition %d", self.worker_id, k)
        for k in self._taken:
            if k not in wanted:
                self._pull.remove_source(self.bus.partitions.stream(k))
                log.info("worker %s leaves partition %d to another worker", self.worker_id, k)
        self._taken = wanted

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain: stop taking work, finish or hand back."""
        metrics.worker_in_process = True  # an edge in this process exports ours too
        log.info(
            "worker %s started with agents %s", self.worker_id, self.registry.names(unlisted=True)
        )
        port = self.bus.settings.metrics_port
        if port is not None and self.dedicated:
            self.metrics_url = metrics.serve(port, self.bus.settings.metrics_host)
        beat = asyncio.create_task(self._heartbeat_loop())
        pulling = asyncio.create_task(self._pull.run())
        janitor = asyncio.create_task(self._janitor_loop())
        purges = await self.bus.nc.subscribe(
            subjects.PURGE_REQUESTS, queue=self.bus.settings.consumer, cb=self._on_purge
        )
        # Other workers' triggers for the sessions running here, and their requests for
        # the leases this worker keeps between a session's runs. A runner learns of new
        # commands from triggers only (its own, or these): no worker receives every
        # session's commands.
        handovers = await self.bus.nc.subscribe(
            subjects.lease_handover(self.worker_id), cb=self._on_handover
        )
        keeper = asyncio.create_task(self._kept_leases_loop())
        try:
            await self.heartbeat()
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({stopper, pulling}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
        finally:
            with contextlib.suppress(Exception):
                await purges.unsubscribe()
            await cancel_and_wait(janitor)
            await self.stop(pulling, beat)
            await cancel_and_wait(keeper)
            with contextlib.suppress(Exception):
                await handovers.unsubscribe()
            await self.ctx.kept.release_all()
            await self.ctx.listing.flush()
            await self.registry.close()  # the agents' MCP servers, after the last turn

    async def stop(self, pulling: asyncio.Task[None], beat: asyncio.Task[None]) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("worker %s draining (%d sessions running)", self.worker_id, len(self._runners))
        self._pull.stop()
        self.ctx.stopping.set()
        await self._pull.wait_idle(self.bus.settings.drain_grace)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pulling
        await cancel_and_wait(beat)
        with contextlib.suppress(Exception):
            await self.bus.workers.delete(self.worker_id)
        log.info("worker %s stopped", self.worker_id)

    async def _on_trigger(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):  # the metadata of a well-formed delivery
            if msg.metadata.num_delivered > 1:
                metrics.REDELIVERIES.inc()
        try:
            sid = subjects.session_of(msg.subject)
        except ValueError:
            await msg.term()
            return
        self.ctx.deliveries.add(sid, msg)  # in the order delivered: nothing awaited before
        while (running := self._runners.get(sid)) is not None and not running.done.is_set():
            if running.accepting:
                running.take(msg)  # the running loop reads every pending input
                return
            await running.done.wait()  # it is releasing the session: take it over after
        if await self._forwarded(sid, msg):
            return
        runner = SessionRunner(self.ctx, sid)
        runner.add_trigger(msg)
        self._runners[sid] = runner
        metrics.ACTIVE_SESSIONS.inc()
        try:
            await runner.run()
        finally:
            metrics.ACTIVE_SESSIONS.dec()
            if self._runners.get(sid) is runner:
                del self._runners[sid]

    async def _forwarded(self, sid: str, msg: Msg) -> bool:
        """Hand the trigger straight to the worker that took this session's last ones (it
        runs it), with no claim tried here first; whether it took it. A lease it hands
        over instead is kept here for the run that follows."""
        holder = self.ctx.holders.pop(sid)
        if holder is None:
            return False
        got = await Ownership(self.bus, sid, self.worker_id).forward(holder, [msg])
        if got is True:
            self.ctx.holders.put(sid, holder)
            return True  # it acknowledges the trigger
        if got is not False:
            self.ctx.kept.keep(got)  # young: the run takes it without a claim
        return False

    async def _on_handover(self, msg: Msg) -> None:
        """Another worker's trigger for a session (it could not claim it: this worker holds
        the lease): taken if a runner here is on the session, or if this worker keeps the
        lease between runs (a run starts here with it); a draining worker hands a kept
        lease over instead (the other worker runs the session). A request without a
        trigger asks for a kept lease only."""
        found = forwarded(self.bus, msg)
        if found is None:
            await self.ctx.kept.serve(msg)
            return
        sid, trigger = found
        running = self._runners.get(sid)
        answer: dict[str, object] = {"taken": True}
        if running is not None and running.accepting and not running.done.is_set():
            running.take(trigger)
        elif self.ctx.kept.holds(sid) and not self._stopped:
            # Kept between runs (this worker is busy): run it here, where its state is in
            # the cache and its lease needs no claim, rather than move it to the asker.
            self._pull.adopt(trigger)
        else:
            answer = {"revision": self.ctx.kept.hand_over(sid)}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(answer).encode())

    async def _on_purge(self, msg: Msg) -> None:
        """Remove a session for a caller that may not purge the stream itself (the edge);
        the caller has checked that it may see the session."""
        if not subjects.is_inbox(msg.reply):
            return  # the answer would be published with this worker's rights
        try:
            sid = check_token(json.loads(msg.data)["session_id"], "session id")
            await SessionClient(self.bus, Interface.SYSTEM).purge(sid)
            answer: dict[str, str] = {}
        except Exception as e:  # told to the caller; nothing to retry here
            log.warning("purge request %r failed: %s", msg.data[:200], e)
            answer = {"error": str(e) or type(e).__name__}
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps(answer).encode())

    async def _kept_leases_loop(self) -> None:
        """Release the leases kept between runs once they are old (see ``KeptLeases``),
        and write the session records coalesced while busy (see ``Listing``)."""
        s = self.bus.settings
        period = min(s.lease_ttl / 6, max(s.record_interval / 2, 0.1))
        while not self._stopped:
            await asyncio.sleep(period)
            self.ctx.listing.flush_due()
            try:
                await self.ctx.kept.release_old()
            except Exception as e:  # those not released expire
                log.warning("releasing kept leases failed: %s", e)

    async def _janitor_loop(self) -> None:
        """Automatic retention: now and then, if no other worker is at it and nobody swept
        within ``retention_interval``, purge the sessions that ended longer than
        ``session_retention`` ago. Only dedicated workers sweep (not a CLI's own)."""
        s = self.bus.settings
        if not self.dedicated or s.session_retention <= 0:
            return
        lock: SweepLock | None = None
        while not self._stopped:
            # Wake at random within the interval so that workers do not all ask at once.
            await asyncio.sleep(s.retention_interval * random.uniform(0.1, 0.3))
            try:
                lock = lock or await SweepLock.open(self.bus.js, s, self.worker_id)
                await self.sweep_once(lock)
            except Exception as e:  # the next wake tries again
                log.warning("retention sweep failed: %s", e)

    async def sweep_once(self, lock: SweepLock) -> list[Outcome] | None:
        """One sweep if this worker gets the lock; what it did, or ``None`` if it did not."""
        s = self.bus.settings
        if not await lock.acquire(interval=s.retention_interval, stale=3 * s.lease_ttl):
            return None
        done: list[Outcome] = []
        finished = False
        try:
            before = datetime.now(UTC) - timedelta(seconds=s.session_retention)
            client = SessionClient(self.bus)
            picked = await candidates(client, before=before)
            async for outcome in sweep(client, picked, export_dir=s.export_dir):
                done.append(outcome)
                r = outcome.record
                log.info(
                    "retention: %s %s (%s since %s)%s",
                    outcome.action,
                    r.session_id,
                    r.state.value,
                    r.updated_at.isoformat(),
                    f": {outcome.reason}" if outcome.reason else "",
                )
                if self._stopped or not await lock.beat():
                    return done  # stopping, or another worker took over a stale lock
            finished = True
            return done
        finally:
            with contextlib.suppress(Exception):
                await lock.release(finished=finished)

    async def _heartbeat_loop(self) -> None:
        while not self._stopped:  # as well as the cancel: see praxis.bus.tasks
            await asyncio.sleep(self.bus.settings.heartbeat_interval)
            try:
                await self.heartbeat()
            except Exception as e:
                log.warning("heartbeat failed: %s", e)
            await self._watch_partitions()

    async def heartbeat(self) -> None:
        """Tell the bus this worker is alive and what it offers."""
        saturations = self._pull.saturations
        busy = self.ctx.crowded.is_set() or saturations != self._saturations_seen
        self._saturations_seen = saturations
        info = WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started,
            seen_at=datetime.now(UTC),
            agents=self.registry.infos(),
            active_sessions=len(self._runners),
            capacity=self.bus.settings.worker_concurrency,
            dedicated=self.dedicated,
            busy=busy,
            metrics_url=self.metrics_url,
            sharing=self._sharing,
            partitions=self._taken,
        )
        await self.bus.workers.put(self.worker_id, info.model_dump_json().encode())


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (a second one leaves the default behaviour)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, loop, sig, stop)


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s: draining", sig.name)
    stop.set()
    loop.remove_signal_handler(sig)
