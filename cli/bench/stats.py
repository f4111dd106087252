"""Figures from samples: percentiles, medians by round (their spread), ratios, a table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Series:
    """Latencies in seconds, kept by round: the median of the round medians is the figure,
    their range is its spread on a shared machine."""

    name: str
    rounds: list[list[float]] = field(default_factory=list)

    def add_round(self, values: list[float]) -> None:
        if values:
            self.rounds.append(values)

    @property
    def values(self) -> list[float]:
        return [v for r in self.rounds for v in r]

    def p(self, q: float) -> float:
        return pct(self.values, q) * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.values) * 1000

    @property
    def round_p50s(self) -> list[float]:
        return [statistics.median(r) * 1000 for r in self.rounds]

    def summary(self) -> dict[str, Any]:
        if not self.values:
            return {"n": 0}
        by_round = self.round_p50s
        return {
            "n": len(self.values),
            "p10": self.p(0.10),
            "p50": self.p50,
            "p90": self.p(0.90),
            "p99": self.p(0.99),
            "mean": statistics.fmean(self.values) * 1000,
            "p50_by_round": by_round,
            "p50_spread": [min(by_round), max(by_round)],
        }


def ratio(a: Series, b: Series, q: float = 0.5) -> float:
    """``a`` over ``b`` at a percentile (p50: the median of all samples)."""
    return a.p(q) / b.p(q) if b.values and a.values else float("nan")


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def latency_rows(series: list[Series], floor: Series) -> list[list[str]]:
    rows = [["(ms)", "p10", "p50", "p90", "p99", "n", "p50 by round", "p50/floor", "p99/floor"]]
    for s in series:
        if not s.values:
            continue
        by_round = s.round_p50s
        rows.append(
            [
                s.name,
                f"{s.p(0.10):.3f}",
                f"{s.p50:.3f}",
                f"{s.p(0.90):.3f}",
                f"{s.p(0.99):.3f}",
                str(len(s.values)),
                f"{min(by_round):.2f}-{max(by_round):.2f}",
                f"{ratio(s, floor):.2f}x",
                f"{ratio(s, floor, 0.99):.2f}x",
            ]
        )
    return rows
