"""The chaos harness: a steady load of turns, faults by pid, and a check of every history.

Each session runs a closed loop of ``echo`` turns with unique texts. A message counts as
*accepted* when ``SessionClient.send`` returned (JetStream stored it); it is *answered*
when its command's final event arrived. After the load, every session's history is read
back and compared with what was accepted: nothing lost, nothing twice, in order, and each
message answered by exactly one reply.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from praxis.bus import SessionClient
from praxis.bus.connection import RetryCount
from praxis.schemas import HistoryItem, TurnFailed

# Where each scenario's figures go as JSON, when set (the README's table is made from them).
_REPORTS = os.environ.get("PRAXIS_CHAOS_REPORT_DIR")
REPORT_DIR = Path(_REPORTS) if _REPORTS else None


@dataclass
class Turn:
    session_id: str
    text: str
    sent: float
    accepted: bool = False
    answered: float | None = None
    failed: bool = False


@dataclass
class Load:
    """``sessions`` closed loops of turns until :meth:`stop`, or ``turns`` each."""

    client: SessionClient
    sessions: int
    turns: int | None = None
    agent: str = "echo"
    answer_within: float = 60.0
    session_ids: list[str] = field(default_factory=list)
    log: list[Turn] = field(default_factory=list)
    faults: list[float] = field(default_factory=list)
    retries_before: int = field(default_factory=lambda: RetryCount.value)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> asyncio.Task[None]:
        """Create the sessions (with the ids in ``session_ids``, if given) and start."""
        chosen: list[str | None] = [*self.session_ids] or [None] * self.sessions
        self.session_ids = []
        for sid in chosen:
            record, receipt = await self.client.create(self.agent, session_id=sid)
            await self.client.wait(receipt)
            self.session_ids.append(record.session_id)
        return asyncio.create_task(self._run())

    def stop(self) -> None:
        self._stop.set()

    def fault(self) -> None:
        """Mark the moment a fault was injected (for the recovery times)."""
        self.faults.append(time.monotonic())

    async def _run(self) -> None:
        await asyncio.gather(*(self._loop(sid) for sid in self.session_ids))

    async def _loop(self, sid: str) -> None:
        i = 0
        while not self._stop.is_set() and (self.turns is None or i < self.turns):
            turn = Turn(sid, f"{sid}-m{i}", time.monotonic())
            self.log.append(turn)
            i += 1
            try:
                receipt = await self.client.send(sid, turn.text)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            turn.accepted = True
            await self._await_answer(turn, receipt)

    async def _await_answer(self, turn: Turn, receipt: Any) -> None:
        deadline = time.monotonic() + self.answer_within
        while time.monotonic() < deadline:
            try:
                events = await self.client.wait(receipt)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            turn.answered = time.monotonic()
            turn.failed = isinstance(events[-1], TurnFailed)
            return

    @property
    def accepted(self) -> list[Turn]:
        return [t for t in self.log if t.accepted]


@dataclass
class Report:
    scenario: str
    accepted: int
    answered: int
    lost: int
    duplicated: int
    out_of_order: int
    failed_turns: int
    faults: int
    recovery_p99_s: float | None
    recovery_max_s: float | None
    recovery_by_fault_s: list[float]
    turn_p50_ms: float
    turn_p99_ms: float
    publish_retries: int
    """Client publishes retried through a JetStream outage (a leader change): each stored once."""
    problems: list[str]

    def save(self) -> None:
        line = json.dumps(self.__dict__)
        print(f"CHAOS {line}")
        if REPORT_DIR is not None:
            REPORT_DIR.mkdir(parents=True, exist_ok=True)
            (REPORT_DIR / f"{self.scenario}.json").write_text(line)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _check_session(
    sid: str, history: list[HistoryItem], accepted: list[str], problems: list[str]
) -> tuple[int, int, int]:
    """(lost, duplicated, out of order) for one session."""
    users = [h.content for h in history if h.role == "user"]
    replies = Counter(h.content for h in history if h.role == "agent")
    seen = Counter(users)
    lost = [text for text in accepted if seen[text] == 0]
    problems += [f"{sid}: accepted {text!r} is not in the history" for text in lost]
    duplicated = 0
    for text, n in seen.items():
        extra = (n - 1) + max(0, replies[text] - 1)
        if extra:
            duplicated += extra
            problems.append(f"{sid}: {text!r} stored {n} times, answered {replies[text]}")
    wanted = set(accepted)
    in_order = [u for u in users if u in wanted] == [a for a in accepted if seen[a]]
    if not in_order:
        problems.append(f"{sid}: messages out of the order they were accepted in")
    return len(lost), duplicated, 0 if in_order else 1


async def check(load: Load, scenario: str) -> Report:
    """Compare every session's history with what its clients were told was accepted."""
    problems: list[str] = []
    lost = duplicated = out_of_order = 0
    accepted_by_session: dict[str, list[str]] = {}
    for t in load.accepted:
        accepted_by_session.setdefault(t.session_id, []).append(t.text)
    for sid in load.session_ids:
        history = await load.client.history(sid)
        found = _check_session(sid, history, accepted_by_session.get(sid, []), problems)
        lost, duplicated, out_of_order = (
            a + b for a, b in zip((lost, duplicated, out_of_order), found, strict=True)
        )
    answered = [t for t in load.accepted if t.answered is not None]
    latencies = [t.answered - t.sent for t in answered if t.answered is not None]
    recoveries: list[float] = []
    for f in load.faults:
        hit = [t.answered - f for t in answered if t.answered and t.sent <= f <= t.answered]
        if hit:
            recoveries.append(max(hit))
    return Report(
        scenario=scenario,
        accepted=len(load.accepted),
        answered=len(answered),
        lost=lost,
        duplicated=duplicated,
        out_of_order=out_of_order,
        failed_turns=sum(t.failed for t in answered),
        faults=len(load.faults),
        recovery_p99_s=_pct(recoveries, 0.99) if recoveries else None,
        recovery_max_s=max(recoveries) if recoveries else None,
        recovery_by_fault_s=[round(r, 3) for r in recoveries],
        turn_p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        turn_p99_ms=_pct(latencies, 0.99) * 1000 if latencies else 0.0,
        publish_retries=RetryCount.value - load.retries_before,
        problems=problems[:20],
    )


async def finish(load: Load, running: asyncio.Task[None], scenario: str, within: float) -> Report:
    """Stop the load, let it end, check every history and save the figures; nothing may
    be lost, repeated or out of order, and every accepted turn must be answered."""
    load.stop()
    async with asyncio.timeout(within):
        await running
    report = await check(load, scenario)
    report.save()
    assert report.lost == 0 and report.duplicated == 0 and report.out_of_order == 0, report
    assert report.answered == report.accepted and report.failed_turns == 0, report
    return report
