"""``praxis agent export`` and ``praxis agent import``: sessions as JSON Lines, a full backup."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter

from praxis.bus import UnknownAgentError
from praxis.bus.transfer import (
    Conversation,
    LineError,
    dumps_line,
    export_session,
    import_conversation,
    parse_lines,
)
from praxis.cli.runtime import load_settings as _settings
from praxis.cli.runtime import run_coro as _run
from praxis.cli.runtime import runs, runtime
from praxis.cli.runtime import setup_logging as _logging
from praxis.cli.term import progress
from praxis.workers import registry_for


def agent_import(
    file: Annotated[
        str,
        Parameter(
            name="FILE",
            help="JSON lines, one conversation each ('-': stdin).",
            allow_leading_hyphen=True,
        ),
    ],
    /,
    *,
    agent: Annotated[str | None, Parameter(help="Agent for lines that name none.")] = None,
    task_id: Annotated[str | None, Parameter(help="Task for lines that name none.")] = None,
    skip_unknown: Annotated[
        bool,
        Parameter(
            help="Skip (and report) lines whose agent no worker offers, instead of importing "
            "nothing."
        ),
    ] = False,
) -> int:
    """The ``praxis agent import`` command (its help text: :mod:`praxis.cli.app`)."""
    _logging("WARNING")
    if file == "-":
        text = sys.stdin.read()
    else:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    good, bad = parse_lines(text.splitlines())
    for err in bad:
        print(f"praxis: error: {file}: {err}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} bad line(s): nothing imported", file=sys.stderr)
        return 1

    async def main() -> None:
        async with runtime(_settings(), with_worker=False) as rt:
            offered = await rt.client.known_agents()
            known = set(offered)  # those used by name only (synthetic) too
            listed = {name for name, info in offered.items() if info.listed}
            if not offered:
                local = registry_for(_settings())
                known, listed = set(local.names(unlisted=True)), set(local.names())
            chosen = _importable(good, agent, (known, listed), skip_unknown)
            with progress(f"Importing {len(chosen)} conversation(s)", len(chosen)) as advance:
                for _, conv in chosen:
                    record = await import_conversation(
                        rt.client, conv, agent=agent, task_id=task_id
                    )
                    messages = record.counters.user_messages + record.counters.agent_messages
                    print(f"{record.session_id}\t{record.task_id}\t{messages} messages")
                    advance(1)
            skipped = len(good) - len(chosen)
            print(
                f"{len(chosen)} conversation(s) imported"
                + (f", {skipped} skipped" if skipped else ""),
                file=sys.stderr,
            )

    return _run(main())


def _importable(
    lines: list[tuple[int, Conversation]],
    agent: str | None,
    agents: tuple[set[str], set[str]],
    skip: bool,
) -> list[tuple[int, Conversation]]:
    """The lines to import, given the agents known and those listed (named in errors, as
    everywhere else); raises for the first line that cannot be (unless ``skip``, for an
    unknown agent: that line is reported on stderr and left out)."""
    known, listed = agents
    out: list[tuple[int, Conversation]] = []
    for number, conv in lines:
        name = conv.agent or agent
        if name is None:
            raise LineError(number, "no agent: give --agent or an 'agent' in the line")
        if name in known or not conv.needs_agent:
            out.append((number, conv))
            continue
        if not skip:
            unknown = UnknownAgentError(name, sorted(listed))
            raise LineError(number, f"{unknown} (--skip-unknown skips the line)")
        print(f"skipped line {number}: unknown agent {name!r}", file=sys.stderr)
    return out


@runs("WARNING")
async def agent_export(
    session_ids: Annotated[list[str], Parameter(name="ID", help="Session id(s).")],
    /,
) -> None:
    """The ``praxis agent export`` command (its help text: :mod:`praxis.cli.app`)."""
    async with runtime(_settings(), with_worker=False) as rt:
        for sid in session_ids:
            print(dumps_line(await export_session(rt.client, sid)))
