"""Commands over the user's model: ``evt schema`` and ``evt aggregate``."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import UsageError
from ..log.envelope import dumps
from ..log.timestamps import parse_time_bound
from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, Keys, ModelSpec, at_least, not_empty
from .output import Layout, choose_format, console, emit, write_json_lines


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(schema)
    app.command(cls=EvtCommand, no_args_is_help=True)(aggregate)


# -- evt schema -------------------------------------------------------------------


def schema(
    type: Annotated[Optional[str], typer.Argument(metavar="TYPE", help="Print this event type's JSON Schema (without it: list every type and version).", show_default=False)] = None,
    version: Annotated[Optional[int], typer.Option("--version", metavar="N", callback=at_least(1), help="The schema version to print (default: the highest registered).", show_default=False)] = None,
    format: Format = None,
    config: ConfigFile = None,
    model: ModelSpec = None,
) -> None:
    """List the model's schemas, or print one type's JSON Schema."""
    from ..model.schemas import json_schema, list_schemas

    registry = Context(None, config, model).require_model()
    fmt = choose_format(format)
    if type is None:
        if version is not None:
            raise UsageError("--version needs a TYPE (evt schema TYPE --version N)")
        emit(list_schemas(registry), fmt, Layout("type", "version", "schema", "fields", keys=("type", "version"), drop=("schema",)))
        return
    print_document(json_schema(registry, type, version), fmt)


def esc(text: str) -> str:
    "Text shown as it is in a rich view (no [markup] inside it)."
    from rich.markup import escape

    return escape(text)


def print_document(document: Any, fmt: str) -> None:
    "One JSON document: a line (ndjson), indented (json), or highlighted (a terminal)."
    if fmt == "ndjson":
        write_json_lines([dumps(document)], fmt)
    elif fmt == "json":
        import json

        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        from rich.json import JSON

        console().print(JSON(dumps(document)))


# -- evt aggregate ----------------------------------------------------------------


def aggregate(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The aggregate, as registered in the model (@model.aggregate(NAME)).", show_default=False)],
    stream: Annotated[str, typer.Argument(metavar="STREAM", help="The stream to fold, e.g. account-7.", show_default=False)],
    at_revision: Annotated[Optional[int], typer.Option("--at-revision", metavar="N", help="The state after the stream's N-th event (exit 4 if the stream has no revision N).", show_default=False)] = None,
    at: Annotated[Optional[str], typer.Option("--at", metavar="TIME", callback=not_empty, help="The state as it was at this time: RFC 3339 or an age (30s, 15m, 2h, 7d, 1w).", show_default=False)] = None,
    history: Annotated[bool, typer.Option("--history", help="Every event with the state after it and what changed.")] = False,
    find: Annotated[Optional[str], typer.Option("--find", help="The first event after which EXPR holds over the state, e.g. 'balance < 0' (exit 4 if none).", metavar="EXPR", show_default=False)] = None,
    snapshot: Annotated[bool, typer.Option("--snapshot", help="Store a snapshot of the state now (snapshots are also taken every snapshot_every events).")] = False,
    no_snapshots: Annotated[bool, typer.Option("--no-snapshots", help="Fold from the first event; neither use nor store snapshots.")] = False,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Fold a stream into an aggregate's state; travel in time.

    --history shows every event with the state after it; --find the first event after
    which an expression holds (what broke an invariant).
    """
    from ..model import aggregates

    check_aggregate_options(history, find, snapshot, no_snapshots, at_revision, at)
    ctx = Context(db, config, model, keys)
    agg = aggregates.get_aggregate(ctx.require_model(), name)
    fmt = choose_format(format)
    at_time = parse_time_bound(at, "--at") if at else None
    store = ctx.open(write=snapshot)
    if history:
        steps = aggregates.history(store, agg, stream, at_revision=at_revision, at=at_time)
        print_history(steps, fmt)
    elif find is not None:
        from ..model.expressions import Expression

        step = aggregates.find(store, agg, stream, Expression(find), at_revision=at_revision, at=at_time)
        print_found(step, find, fmt)
    elif snapshot:
        folded = aggregates.snapshot(store, agg, stream)
        print_state(folded, fmt)
        sys.stderr.write(f"snapshot of {name} {stream} at revision {folded.revision} stored\n")
    else:
        folded = aggregates.load(store, agg, stream, at_revision=at_revision, at=at_time, use_snapshots=not no_snapshots)
        print_state(folded, fmt)
        unhandled = aggregates.unhandled_types(store, agg, folded)
        if unhandled is not None:
            listed = ", ".join(unhandled[:5]) + (", …" if len(unhandled) > 5 else "")
            sys.stderr.write(
                f"evt: no event of {stream} has a handler in aggregate {name!r} (its types: {listed}); "
                "the state is the initial one\n"
            )
            sys.stderr.flush()


def check_aggregate_options(history, find, snapshot, no_snapshots, at_revision, at) -> None:
    modes = [flag for flag, on in (("--history", history), ("--find", find is not None), ("--snapshot", snapshot)) if on]
    if len(modes) > 1:
        raise UsageError(f"{' and '.join(modes)} cannot be combined; choose one")
    if snapshot and (at_revision is not None or at is not None or no_snapshots):
        raise UsageError("--snapshot stores the state at the stream's head; drop --at, --at-revision and --no-snapshots")


def print_state(folded, fmt: str) -> None:
    if fmt != "table":
        print_document(folded.state, fmt)
        return
    title = f"[bold]{esc(folded.aggregate)}[/bold] {esc(folded.stream)} at revision {folded.revision} ({folded.timestamp})"
    print_state_view(folded.state, title)


def print_state_view(state: Any, title: str) -> None:
    "A state on a terminal: one row per top-level field, nested values as JSON."
    from rich.table import Table

    term = console()
    term.print(title)
    if not isinstance(state, dict):
        term.print(esc(dumps(state)))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in state.items():
        table.add_row(esc(key), esc(dumps(value)))
    term.print(table)


def print_history(steps, fmt: str) -> None:
    if fmt == "table":
        print_steps(steps)
    else:
        write_json_lines((dumps(step.to_dict()) for step in steps), fmt)


def print_steps(steps) -> None:
    """Steps as tables of TABLE_CHUNK rows, so a long history starts printing at once
    and memory stays flat. Every column but the revision may wrap, so the table fits
    the terminal (an 80-column one too) without cutting text off."""
    from itertools import islice

    from .output import TABLE_CHUNK

    steps = iter(steps)
    first = True
    while chunk := list(islice(steps, TABLE_CHUNK)):
        console().print(steps_table(chunk, header=first))
        first = False


def steps_table(steps, header: bool = True):
    from rich.table import Table

    from ..model.diff import describe

    table = Table(box=None, pad_edge=False, show_header=header)
    table.add_column("revision", no_wrap=True, justify="right", min_width=len("revision"))
    table.add_column("time (UTC)")  # wraps at the space: date, then time
    table.add_column("type", overflow="fold")
    table.add_column("data", overflow="fold", min_width=8, ratio=1)
    table.add_column("changes", overflow="fold", min_width=8, ratio=1)
    for step in steps:
        event = step.event
        when = event.timestamp[:19].replace("T", " ")
        changes = esc("\n".join(describe(c) for c in step.changes)) or "[dim](none)[/dim]"
        table.add_row(str(event.revision), when, esc(event.type), esc(dumps(event.data)), changes)
    return table


def print_found(step, expression: str, fmt: str) -> None:
    if fmt != "table":
        print_document(step.to_dict(), fmt)
        return
    event = step.event
    term = console()
    term.print(f"[bold]{esc(expression)}[/bold] first holds after revision {event.revision} of {esc(event.stream)}:")
    print_steps([step])
    print_state_view(step.state, "state after it:")
