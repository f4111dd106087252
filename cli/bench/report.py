"""What a benchmark run measured (``render`` makes its tables, ``--json`` gives it whole)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from praxis.cli.bench.stats import Series


@dataclass
class Report:
    """What a run measured, as a table for people and JSON for machines."""

    latency: list[Series] = field(default_factory=list)
    floor: Series = field(default_factory=lambda: Series("raw JetStream loop (floor)"))
    load: list[dict[str, Any]] = field(default_factory=list)
    scale: list[dict[str, Any]] = field(default_factory=list)
    grid: list[dict[str, Any]] = field(default_factory=list)
    """scale over NATS nodes x partitions x workers x sessions."""
    fanout: dict[str, Any] = field(default_factory=dict)
    resume: list[dict[str, Any]] = field(default_factory=list)
    stream: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "floor_ms": self.floor.summary(),
            "latency_ms": {s.name: s.summary() for s in self.latency if s.values},
            "over_floor_p50": {
                s.name: s.p50 / self.floor.p50
                for s in self.latency
                if s.values and self.floor.values
            },
            "load": self.load,
            "scale": self.scale,
            "grid": self.grid,
            "fanout": self.fanout,
            "resume": self.resume,
            "stream": self.stream,
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }
