"""The tables of a benchmark run, for people (``--json`` gives the same for machines)."""

from __future__ import annotations

from typing import Any

from praxis.cli.bench.report import Report
from praxis.cli.bench.stats import latency_rows, table


def text(report: Report) -> str:
    parts = []
    if report.latency:
        parts.append(table(latency_rows([report.floor, *report.latency], report.floor)))
    if report.load:
        parts.append(table(_load_rows(report.load)))
    if report.scale:
        parts.append(table(_scale_rows(report.scale)))
    if report.grid:
        parts.append(table(_grid_rows(report.grid)))
    if report.resume:
        parts.append(table(_resume_rows(report.resume)))
    parts += [_fanout_line(kind, found) for kind, found in report.fanout.items()]
    if report.stream:
        parts.append(table(_stream_rows(report.stream)))
    return "\n\n".join(parts)


def _stream_rows(found: dict[str, Any]) -> list[list[str]]:
    head = ["stream", "deltas", "deltas/s", "delay p50 ms", "p99 ms", "whole", "errors"]
    rows = [[*head, "CPU ms/delta"]]
    for name, r in found.items():
        cpu = r["cpu_ms_per_delta"]
        rows.append(
            [
                name,
                str(r["deltas"]),
                f"{r['deltas_per_s']:.0f}",
                f"{r['delay_ms'].get('p50', 0):.2f}",
                f"{r['delay_ms'].get('p99', 0):.2f}",
                str(r["complete_streams"]),
                str(r["errors"]),
                " ".join(f"{k} {v:.3f}" for k, v in cpu.items()),
            ]
        )
    return rows


def _load_rows(load: list[dict[str, Any]]) -> list[list[str]]:
    rows = [
        [
            "load",
            "sessions",
            "turns/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "of floor",
            "worker MB",
            "writes/turn",
            "turns/session",
            "CPU ms/turn",
            "server/turn",
        ]
    ]
    for r in load:
        rss = r.get("worker_rss_mb")
        rows.append(
            [
                r["name"],
                str(r["sessions"]),
                f"{r['turns_per_s']:.0f}",
                f"{r['turn_ms'].get('p50', 0):.2f}",
                f"{r['turn_ms'].get('p99', 0):.2f}",
                str(r["errors"]),
                f"{r.get('of_floor', 1.0):.0%}",
                f"{rss['before']:.0f} -> {rss['after']:.0f}" if rss else "",
                f"{r['writes_per_turn']:.2f}" if "writes_per_turn" in r else "",
                _spread(r.get("turns_per_session")),
                _cpu(r.get("cpu_ms_per_turn")),
                _server(r.get("server_per_turn")),
            ]
        )
    return rows


def _server(found: dict[str, float] | None) -> str:
    """What a turn cost the server: messages in/out, KB in/out, subscription changes,
    deliveries of work (1: none redelivered)."""
    if not found:
        return ""
    text = (
        f"msgs {found['msgs_in']:.1f}/{found['msgs_out']:.1f} "
        f"KB {found['kb_in']:.1f}/{found['kb_out']:.1f} subs {found['sub_changes']:.1f}"
    )
    if "deliveries" in found:
        text += f" deliveries {found['deliveries']:.2f}"
    return text


def _spread(counts: dict[str, int] | None) -> str:
    """Turns per session: fewest, median, most (a fair load gives each about as many)."""
    return f"{counts['min']}/{counts['p50']}/{counts['max']}" if counts else ""


def _cpu(cpu: dict[str, float] | None) -> str:
    """CPU milliseconds per turn: in all, then by process group (those that took any)."""
    if not cpu:
        return ""
    parts = " ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005)
    return f"{sum(cpu.values()):.2f} ({parts})"


def _scale_rows(scale: list[dict[str, Any]]) -> list[list[str]]:
    head = ["scale", "workers", "sessions", "turns/s", "p50 ms", "vs 1 worker", "CPU ms/turn"]
    rows = [[*head, "server/turn"]]
    for r in scale:
        rows.append(
            [
                "praxis",
                str(r["workers"]),
                str(r["sessions"]),
                f"{r['turns_per_s']:.0f}",
                f"{r['turn_ms'].get('p50', 0):.2f}",
                f"{r['vs_one']:.2f}x",
                _cpu(r.get("cpu_ms_per_turn")),
                _server(r.get("server_per_turn")),
            ]
        )
    return rows


def _grid_rows(grid: list[dict[str, Any]]) -> list[list[str]]:
    head = ["nodes", "partitions", "workers", "sessions", "turns/s", "p50 ms", "p99 ms"]
    rows = [[*head, "server CPU ms/turn", "by node (share)"]]
    for r in grid:
        nodes = r.get("node_cpu_ms_per_turn", {})
        shares = r.get("node_share", {})
        rows.append(
            [
                str(r["nodes"]),
                str(r["partitions"]),
                str(r["workers"]),
                str(r["sessions"]),
                f"{r['turns_per_s']:.0f}",
                f"{r['turn_ms'].get('p50', 0):.2f}",
                f"{r['turn_ms'].get('p99', 0):.2f}",
                f"{r.get('cpu_ms_per_turn', {}).get('server', 0):.3f}",
                " ".join(f"{k} {v:.3f} ({shares[k]:.0%})" for k, v in nodes.items()),
            ]
        )
    return rows


def _resume_rows(resume: list[dict[str, Any]]) -> list[list[str]]:
    head = ["messages", "resume p50", "p99", "vs smallest", "turn p50", "p99", "vs smallest"]
    rows = [[*head, "worker MB"]]
    for r in resume:
        mem = r["worker_rss_mb"]
        rows.append(
            [
                f"{r['messages']:,}",
                f"{r['resume_ms']['p50']:.2f}",
                f"{r['resume_ms']['p99']:.2f}",
                f"{r['resume_vs_smallest']:.2f}x",
                f"{r['turn_ms']['p50']:.2f}",
                f"{r['turn_ms']['p99']:.2f}",
                f"{r['turn_vs_smallest']:.2f}x",
                f"{mem:.1f}" if mem is not None else "-",
            ]
        )
    return rows


def _fanout_line(kind: str, found: dict[str, Any]) -> str:
    return (
        f"{kind} fan-out: {found['subscribers_with_every_event']} of {found['subscribers']} "
        f"subscribers got every event; connected in {found['connect_all_s']:.1f} s, all "
        f"turns delivered in {found['all_turns_delivered_s']:.1f} s (delivery p50 "
        f"{found['delivery_ms'].get('p50', 0):.0f} ms)"
        + (
            f"; {found['failed']} failed, the first: {found['first_failure']}"
            if found.get("failed")
            else ""
        )
    )
