"""``praxis dead-letters``: commands parked after failing repeatedly; list, show, replay, drop."""

from __future__ import annotations

import json
import sys
from typing import Annotated

from cyclopts import App, Parameter

from praxis.cli.chat import TurnError
from praxis.cli.common import JsonFlag
from praxis.cli.render import dead_letter_rows, print_turn
from praxis.cli.runtime import load_settings, runs, runtime
from praxis.cli.term import table

dead_app = App(
    name="dead-letters",  # its help: praxis.cli.app
)

LetterId = Annotated[str, Parameter(name="ID", help="Dead letter id (SESSION.SEQ).")]


@dead_app.default
@runs("WARNING")
async def dead_list(
    *,
    session: Annotated[str | None, Parameter(help="Only this session's.")] = None,
    all_: Annotated[bool, Parameter(name="--all", help="Replayed ones too.")] = False,
    json_: JsonFlag = False,
) -> None:
    """List parked commands, oldest first."""
    async with runtime(load_settings(), with_worker=False) as rt:
        found = await rt.client.dead_letters(session, include_replayed=all_)
        if json_:
            print(json.dumps([x.model_dump(mode="json") for x in found], indent=2))
        elif found:
            table(dead_letter_rows(found))
        else:
            print("No dead letters.", file=sys.stderr)


@dead_app.command(name="show")
@runs("WARNING")
async def dead_show(letter_id: LetterId, /, *, json_: JsonFlag = False) -> None:
    """Show a dead letter: the command, its error and what became of it."""
    async with runtime(load_settings(), with_worker=False) as rt:
        x = await rt.client.dead_letter(letter_id)
        if json_:
            print(x.model_dump_json(indent=2))
            return
        print(f"Dead letter: {x.id} ({x.status})")
        print(f"Session:     {x.session_id}")
        print(f"Task:        {x.task_id}")
        print(f"Command:     {x.command_kind} {x.command_id} (#{x.seq} of the session)")
        print(f"Parked:      {x.parked_at.isoformat()} by {x.worker_id}")
        print(f"Attempts:    {x.attempts}")
        print(f"Error:       {x.error}")
        if x.replayed_as:
            print(f"Replayed as: {x.replayed_as} at {x.replayed_at}")
        print(json.dumps(x.command, indent=2))


@dead_app.command(name="replay")
@runs("WARNING")
async def dead_replay(
    letter_id: LetterId,
    /,
    *,
    wait: Annotated[
        bool, Parameter(help="Wait for the outcome and print it.", negative="--no-wait")
    ] = True,
) -> None:
    """Send a parked command again (after its cause is fixed), at the end of its
    session's queue, under a new command id."""
    async with runtime(load_settings(), with_worker=wait) as rt:
        letter, receipt = await rt.client.replay(letter_id)
        print(f"Replayed {letter.id} as {receipt.command_id}", file=sys.stderr)
        if not wait:
            return
        outcome = await print_turn(rt.client.follow(receipt), sys.stdout, "Agent: ")
        if outcome.failure:
            raise TurnError(outcome.failure)


@dead_app.command(name="drop")
@runs("WARNING")
async def dead_drop(letter_id: LetterId, /) -> None:
    """Forget a dead letter without replaying it (the session's history keeps the event)."""
    async with runtime(load_settings(), with_worker=False) as rt:
        letter = await rt.client.drop_dead_letter(letter_id)
        print(f"Dropped {letter.id}", file=sys.stderr)
