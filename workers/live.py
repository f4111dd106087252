"""The turn in flight: its text so far, its task, and who may cancel it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from praxis.schemas import Snapshot, TokenDelta


@dataclass
class LiveTurn:
    session_id: str
    turn_id: str
    index: int = 0
    pieces: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    cancelled_by: str | None = None
    why: str = "cancelled"
    """How the turn's end reads when it was stopped: 'cancelled by <command id>'."""

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, piece: str) -> int:
        """Add the next piece of the reply; its delta's index."""
        self.index += 1
        self.pieces.append(piece)
        return self.index

    def delta(self, index: int, piece: str) -> TokenDelta:
        return TokenDelta(session_id=self.session_id, turn_id=self.turn_id, index=index, text=piece)

    def snapshot(self) -> Snapshot:
        return Snapshot(turn_id=self.turn_id, index=self.index, text=self.text)

    def cancel(self, command_id: str, why: str = "cancelled") -> None:
        if self.task is not None and not self.task.done():
            self.cancelled_by = command_id
            self.why = why
            self.task.cancel()
