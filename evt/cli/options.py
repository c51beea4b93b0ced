"""Options shared by many commands, declared once.

Every argument and option has a metavar a person reads (``STREAM``, ``N``, ``SECONDS``),
never a Python type. Bounds are checked by ``at_least`` rather than typer's ``min=``,
which would print ``[x>=0]`` in the help.
"""

from __future__ import annotations

from typing import Annotated, Callable, Optional

import typer

from ..config import MAX_SECONDS


def at_least(minimum: float) -> Callable:
    """An option callback: the value (each, of a repeatable option) must be ``minimum`` or
    more (None passes); a float (seconds) must also be a number no larger than MAX_SECONDS."""

    def check(value):
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, float) and not one <= MAX_SECONDS:  # nan fails every comparison
                raise typer.BadParameter(f"must be a number of seconds from {minimum:g} to {MAX_SECONDS:g}, not {one}")
            if one is not None and one < minimum:
                raise typer.BadParameter(f"must be {minimum} or more, not {one}")
        return value

    return check


def format_names(incomplete: str) -> list[str]:
    "Shell completion of --format."
    from .output import FORMATS

    return [name for name in FORMATS if name.startswith(incomplete)]


def event_format_names(incomplete: str) -> list[str]:
    "Shell completion of --format for commands that print events (CloudEvents too)."
    from .output import EVENT_FORMATS

    return [name for name in EVENT_FORMATS if name.startswith(incomplete)]


Db = Annotated[Optional[str], typer.Option("--db", metavar="PATH", help="The store file (env EVT_DB; evt.toml db; default ./events.db).", show_default=False)]
ConfigFile = Annotated[Optional[str], typer.Option("--config", metavar="FILE", help="Use this evt.toml instead of the nearest one.", show_default=False)]
Keys = Annotated[Optional[str], typer.Option("--keys", metavar="FILE", help="The key file of personal fields (env EVT_KEYS; evt.toml keys; default: keys kept in the store).", show_default=False)]
ModelSpec = Annotated[Optional[str], typer.Option("--model", metavar="MODEL", help="The user's model: a .py path or a dotted module (env EVT_MODEL; evt.toml model).", show_default=False)]
Format = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="table, json or ndjson (default: table on a terminal, ndjson in a pipe).",
        show_default=False,
        autocompletion=format_names,
    ),
]
EventFormat = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="table, json, ndjson, cloudevents (one structured CloudEvent per line) or cloudevents-json (one array) (default: table on a terminal, ndjson in a pipe).",
        show_default=False,
        autocompletion=event_format_names,
    ),
]
Raw = Annotated[bool, typer.Option("--raw", help="Show events as stored, without upcasting.")]


def not_empty(value):
    """An option given an empty string is an error, never "not given": ``--since "$UNSET"``
    must not read everything, as ``--db "$UNSET"`` must not write to ./events.db."""
    values = value if isinstance(value, list) else [value]
    if any(v is not None and not v.strip() for v in values):
        raise typer.BadParameter("needs a value, not an empty string")
    return value


Category = Annotated[Optional[str], typer.Option("--category", metavar="CATEGORY", callback=not_empty, help="Only streams of this category (the part of the name before the first '-').", show_default=False)]
Types = Annotated[Optional[list[str]], typer.Option("--type", metavar="TYPE", callback=not_empty, help="Only these event types; globs like 'order.*'; repeatable.", show_default=False)]
ExactTypes = Annotated[Optional[list[str]], typer.Option("--exact-type", metavar="TYPE", callback=not_empty, help="Only this event type, matched exactly (no globs: for a type holding '*', '?' or '['); repeatable, and adds to --type.", show_default=False)]
Correlation = Annotated[Optional[str], typer.Option("--correlation-id", metavar="ID", callback=not_empty, help="Only this request chain, across streams.", show_default=False)]
Since = Annotated[Optional[str], typer.Option("--since", metavar="TIME", callback=not_empty, help="From this time: RFC 3339 or an age (30s, 15m, 2h, 7d, 1w).", show_default=False)]
Until = Annotated[Optional[str], typer.Option("--until", metavar="TIME", callback=not_empty, help="Up to this time: RFC 3339 or an age.", show_default=False)]
From = Annotated[Optional[int], typer.Option("--from", metavar="N", callback=at_least(0), help="From this revision (in a stream) or position.", show_default=False)]
To = Annotated[Optional[int], typer.Option("--to", metavar="N", callback=at_least(0), help="Up to this revision (in a stream) or position.", show_default=False)]
