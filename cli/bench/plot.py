"""``praxis bench --plot FILE.png``: latency percentiles against the floor, and throughput
and latency against load. Drawn with matplotlib, an optional extra (``plot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from praxis import install_hint
from praxis.bus.errors import BusError


class PlotUnavailableError(BusError):
    def __init__(self) -> None:
        super().__init__(f"--plot needs matplotlib: {install_hint('plot')} (or matplotlib itself)")


def check_available() -> None:
    """Fail before measuring, not after, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailableError() from None


def plot(report: dict[str, Any], path: Path) -> None:
    """Draw what ``report`` (the ``--json`` document) holds into ``path``: one panel for
    the latencies (p50, p90, p99 of each, and the floor), two for load (turns/s, and p50
    and p99 latency, against concurrent sessions), as far as the run measured them."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    latency = {"raw JetStream loop (floor)": report["floor_ms"], **report["latency_ms"]}
    latency = {k: v for k, v in latency.items() if v.get("n")}
    praxis = [r for r in report["load"] if r["name"] == "praxis"]
    floor = [r for r in report["load"] if r["name"] == "floor"]
    panels = (1 if len(latency) > 1 else 0) + (2 if praxis else 0)
    if not panels:
        raise ValueError("nothing to plot: run create, turn or load")
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5), squeeze=False)
    ax_iter = iter(axes[0])
    if len(latency) > 1:
        ax = next(ax_iter)
        names = list(latency)
        for i, q in enumerate(("p50", "p90", "p99")):
            ax.barh(
                [y + (i - 1) * 0.27 for y in range(len(names))],
                [latency[n][q] for n in names],
                height=0.27,
                label=q,
            )
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ms")
        ax.set_title("Latency (floor: the raw JetStream loop)")
        ax.legend()
    if praxis:
        ax = next(ax_iter)
        for rows, label in ((floor, "floor"), (praxis, "praxis")):
            ax.plot(
                [r["sessions"] for r in rows], [r["turns_per_s"] for r in rows], "o-", label=label
            )
        _sessions_axis(ax, praxis)
        ax.set_ylabel("turns/s")
        ax.set_title("Throughput against load")
        ax.legend()
        ax = next(ax_iter)
        for rows, label in ((floor, "floor"), (praxis, "praxis")):
            sessions = [r["sessions"] for r in rows]
            for q, style in (("p50", "o-"), ("p99", "x--")):
                ax.plot(
                    sessions, [r["turn_ms"].get(q, 0) for r in rows], style, label=f"{label} {q}"
                )
        _sessions_axis(ax, praxis)
        ax.set_yscale("log")
        ax.set_ylabel("turn latency, ms")
        ax.set_title("Latency against load")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sessions_axis(ax: Any, rows: list[dict[str, Any]]) -> None:
    sessions = sorted({r["sessions"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(sessions, [f"{n:,}" for n in sessions])
    ax.minorticks_off()
    ax.set_xlabel("concurrent sessions (closed loops)")
