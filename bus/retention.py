"""Clean-up of old sessions: choose, export (optionally), purge; and the sweep lock that
lets many workers share automatic retention with one of them sweeping at a time.

A purge removes everything of a session from the bus (see :meth:`SessionClient.purge`).
A session a worker holds the lease of is never purged (it is being worked on); an export
that fails leaves the session in place, so nothing is lost that was not written first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from praxis.bus import leases
from praxis.bus.client import SessionClient
from praxis.bus.errors import SessionNotFoundError
from praxis.bus.provision import ensure_bucket, janitor_bucket
from praxis.bus.settings import Settings
from praxis.bus.transfer import dumps_line, export_session
from praxis.schemas import TERMINAL, SessionRecord, SessionState

log = logging.getLogger("praxis.retention")

ENDED: frozenset[SessionState] = TERMINAL
"""What automatic retention purges: sessions that have ended (completed, failed, expired)."""

Action = Literal["purged", "would purge", "skipped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    record: SessionRecord
    action: Action
    reason: str = ""
    exported: Path | None = None


def chosen(
    records: Collection[SessionRecord], *, before: datetime, states: Collection[SessionState]
) -> list[SessionRecord]:
    """The sessions in ``states`` last changed before ``before``, oldest first."""
    picked = [r for r in records if r.state in states and r.updated_at < before]
    return sorted(picked, key=lambda r: (r.updated_at, r.session_id))


async def candidates(
    client: SessionClient, *, before: datetime, states: Collection[SessionState] = ENDED
) -> list[SessionRecord]:
    """The sessions :func:`chosen` picks among all of them (for :func:`sweep`)."""
    return list(chosen(await client.records(), before=before, states=states))


async def sweep(
    client: SessionClient,
    records: Iterable[SessionRecord],
    *,
    export_dir: Path | None = None,
    dry_run: bool = False,
) -> AsyncIterator[Outcome]:
    """Purge ``records`` (from :func:`candidates`), each after its export if
    ``export_dir`` is given; yield what happened to each."""
    if export_dir is not None and not dry_run:
        await asyncio.to_thread(export_dir.mkdir, parents=True, exist_ok=True)
    for record in records:
        sid = record.session_id
        holder = await leases.holder(client.bus.leases_of(sid), sid)
        if holder is not None:
            yield Outcome(record, "skipped", f"worker {holder} is working on it")
            continue
        if dry_run:
            yield Outcome(record, "would purge")
            continue
        path = None
        if export_dir is not None:
            try:
                path = await export_to(client, sid, export_dir)
            except SessionNotFoundError:
                continue  # purged meanwhile by somebody else
            except OSError as e:
                yield Outcome(record, "skipped", f"export failed: {e}")
                continue
        await client.purge(sid)
        yield Outcome(record, "purged", exported=path)


async def export_to(client: SessionClient, session_id: str, directory: Path) -> Path:
    """Write the session as ``DIR/ID.jsonl`` (the import format), durably, and return
    the path. A partial file never takes the final name."""
    line = dumps_line(await export_session(client, session_id)) + "\n"
    path = directory / f"{session_id}.jsonl"
    await asyncio.to_thread(_write_durably, path, line)
    return path


def _write_durably(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)


# -- one sweeper at a time ---------------------------------------------------------------

SWEEP_KEY = "sweep"


@dataclass(slots=True)
class SweepLock:
    """The right to sweep, held by one worker: a KV entry changed only by revision.

    Its value says who holds it, when they last showed life (``beat``) and when the last
    sweep finished (``finished``). A worker may take it when nobody holds it (or its holder
    has not shown life for ``stale`` seconds) and the last sweep finished at least
    ``interval`` seconds ago, so the whole deployment sweeps once per interval, whatever
    the number of workers. Times are the workers' wall clocks.
    """

    kv: KeyValue
    worker_id: str
    revision: int = 0
    finished: float = 0.0

    @classmethod
    async def open(cls, js: JetStreamContext, settings: Settings, worker_id: str) -> SweepLock:
        return cls(await ensure_bucket(js, janitor_bucket(settings)), worker_id)

    async def acquire(self, *, interval: float, stale: float) -> bool:
        now = time.time()
        try:
            entry = await self.kv.get(SWEEP_KEY)
            state = json.loads(entry.value or b"{}")
            last = entry.revision or 0
        except NotFoundError:
            state, last = {}, 0
        if state.get("holder") and now - float(state.get("beat", 0)) < stale:
            return False  # somebody is sweeping
        if now - float(state.get("finished", 0)) < interval:
            return False  # swept recently
        self.finished = float(state.get("finished", 0))
        return await self._write(last, holder=self.worker_id)

    async def beat(self) -> bool:
        """Show life while sweeping; ``False`` if the lock was taken over (stop sweeping)."""
        return await self._write(self.revision, holder=self.worker_id)

    async def release(self, *, finished: bool) -> None:
        """Give the lock up; ``finished`` records that a whole sweep was done."""
        if finished:
            self.finished = time.time()
        await self._write(self.revision, holder=None)

    async def _write(self, last: int, *, holder: str | None) -> bool:
        value = {"holder": holder, "beat": time.time(), "finished": self.finished}
        try:
            self.revision = await self.kv.update(SWEEP_KEY, json.dumps(value).encode(), last=last)
        except KeyWrongLastSequenceError:
            return False
        return True
