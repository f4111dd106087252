"""``praxis agent cleanup``: purge ended or expired sessions (exporting them first if asked)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter

from praxis.bus.retention import ENDED, Outcome, candidates, sweep
from praxis.cli.common import JsonFlag, parse_duration, parse_state
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import runs, runtime
from praxis.cli.term import progress
from praxis.schemas import SessionState


@runs("WARNING")
async def agent_cleanup(
    *,
    older_than: Annotated[
        str, Parameter(help="Unchanged for at least this long (30m, 12h, 7d, 2w; 0 for any).")
    ] = "7d",
    state: Annotated[
        str,
        Parameter(
            help="Which sessions: 'ended' (completed, failed or expired), a state, or 'any'."
        ),
    ] = "ended",
    export: Annotated[
        Path | None,
        Parameter(help="Write each session to DIR/ID.jsonl (the import format) before purging."),
    ] = None,
    dry_run: Annotated[bool, Parameter(help="Only list what would be purged.")] = False,
    json_: JsonFlag = False,
) -> None:
    """The ``praxis agent cleanup`` command (its help text: :mod:`praxis.cli.app`)."""
    age = parse_duration(older_than)
    if state.lower() == "ended":
        states: frozenset[SessionState] = ENDED
    elif state.lower() == "any":
        states = frozenset(SessionState)
    else:
        picked = parse_state(state)
        assert picked is not None
        states = frozenset({picked})
    async with runtime(_settings(), with_worker=False) as rt:
        before = datetime.now(UTC) - age
        out: list[dict[str, Any]] = []
        done = 0
        chosen = await candidates(rt.client, before=before, states=states)
        doing = "Checking" if dry_run else "Purging"
        with progress(f"{doing} {len(chosen)} session(s)", len(chosen)) as advance:
            async for o in sweep(rt.client, chosen, export_dir=export, dry_run=dry_run):
                advance(1)
                done += o.action != "skipped"
                if json_:
                    out.append(_cleanup_row(o))
                else:
                    _print_cleanup(o)
        if json_:
            print(json.dumps(out, indent=2))
        verb = "would be purged" if dry_run else "purged"
        print(f"{done} session(s) {verb}", file=sys.stderr)


def _cleanup_row(o: Outcome) -> dict[str, Any]:
    r = o.record
    return {
        "session_id": r.session_id,
        "task_id": r.task_id,
        "state": r.state.value,
        "updated_at": r.updated_at.isoformat(),
        "action": o.action,
        "reason": o.reason or None,
        "exported": str(o.exported) if o.exported else None,
    }


def _print_cleanup(o: Outcome) -> None:
    r = o.record
    if o.action == "skipped":
        print(f"skipped {r.session_id}: {o.reason}", file=sys.stderr)
        return
    print(
        f"{o.action} {r.session_id} ({r.state.value}, updated {r.updated_at.isoformat()})"
        + (f" -> {o.exported}" if o.exported else "")
    )
