"""Commands over the log itself: append, read, tail, streams, stats."""

from __future__ import annotations

import itertools
from typing import Annotated, Optional

import typer

from ..log.envelope import dumps
from ..log.filters import Filter
from ..log.timestamps import parse_time_bound
from .append import AppendRequest, run_append
from .append import schema_version as schema_version_of
from .command import EvtCommand
from .context import Context
from .options import (
    Category,
    ConfigFile,
    Correlation,
    Db,
    EventFormat,
    ExactTypes,
    Format,
    From,
    Keys,
    ModelSpec,
    Raw,
    Since,
    To,
    Types,
    Until,
    at_least,
)
from .output import (
    EVENT_FORMATS,
    TABLE_CHUNK,
    Layout,
    TableWriter,
    choose_format,
    emit,
    end_if_nobody_reads,
    envelope_layout,
    envelope_row,
    human_size,
    natural_key,
    print_table,
    write_json_lines,
)

STREAM_COLUMNS = Layout(
    "stream", "category", "revision", "firstTimestamp", "lastTimestamp",
    keys=("stream",), flex=(), drop=("category", "firstTimestamp", "lastTimestamp", "revision"),
)


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(append)
    app.command(cls=EvtCommand)(read)
    app.command(cls=EvtCommand)(tail)
    app.command(cls=EvtCommand)(streams)
    app.command(cls=EvtCommand)(stats)


def append(
    stream: Annotated[Optional[str], typer.Argument(metavar="STREAM", help="The stream, e.g. order-ord_123 (no whitespace).", show_default=False)] = None,
    type: Annotated[Optional[str], typer.Argument(metavar="TYPE", help="The event type, e.g. order.placed (no whitespace).", show_default=False)] = None,
    data: Annotated[Optional[str], typer.Argument(metavar="DATA", help="A JSON object in quotes ('{\"total\": 5}'), @FILE, or - for stdin (default: {}).", show_default=False)] = None,
    ndjson: Annotated[Optional[str], typer.Option("--ndjson", metavar="FILE", help="Append a batch: one envelope per line from FILE (- for stdin), all or nothing.", show_default=False)] = None,
    id: Annotated[Optional[str], typer.Option("--id", metavar="ID", help="The event id (an idempotency key); default: a new time-ordered id.", show_default=False)] = None,
    schema_version: Annotated[str, typer.Option("--schema-version", metavar="N", help="The schema version of DATA.")] = "1",
    source: Annotated[Optional[str], typer.Option("--source", metavar="NAME", help="The originating service.", show_default=False)] = None,
    correlation_id: Annotated[Optional[str], typer.Option("--correlation-id", metavar="ID", help="The request chain's id.", show_default=False)] = None,
    causation_id: Annotated[Optional[str], typer.Option("--causation-id", metavar="ID", help="The id of what caused this event.", show_default=False)] = None,
    meta: Annotated[Optional[list[str]], typer.Option("--meta", metavar="KEY=VALUE", help="A metadata entry; repeatable.", show_default=False)] = None,
    metadata: Annotated[Optional[str], typer.Option("--metadata", metavar="JSON", help="Metadata as a JSON object.", show_default=False)] = None,
    expect: Annotated[str, typer.Option("--expect", metavar="REVISION", help="The stream's expected revision: N (0: must not exist), any, exists.")] = "any",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
    no_validate: Annotated[bool, typer.Option("--no-validate", help="Skip schema validation (trusted imports).")] = False,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Append an event (or an NDJSON batch); print what was stored.

    One call is one transaction: all of its events or none. Quote DATA for the shell:
    evt append order-1 order.placed '{"total": 5}'.
    """
    return run_append(
        AppendRequest(
            stream,
            type,
            data,
            ndjson=ndjson,
            id=id,
            schema_version=schema_version_of(schema_version),
            source=source,
            correlation_id=correlation_id,
            causation_id=causation_id,
            meta=meta or [],
            metadata=metadata,
            expect=expect,
            quiet=quiet,
            no_validate=no_validate,
            format=format,
            db=db,
            config=config,
            model=model,
            keys=keys,
        )
    )


def build_filter(
    stream: str | None,
    category: str | None = None,
    types: list[str] | None = None,
    correlation_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    start: int | None = None,
    end: int | None = None,
    limit: int | None = None,
    backwards: bool = False,
    exact_types: list[str] | None = None,
) -> Filter:
    return Filter(
        stream=stream,
        category=category,
        types=types or (),
        correlation_id=correlation_id,
        since=parse_time_bound(since, "--since") if since else None,
        until=parse_time_bound(until, "--until") if until else None,
        start=start,
        end=end,
        limit=limit,
        backwards=backwards,
        exact_types=exact_types or (),
    )


def print_envelopes(store, filter: Filter, fmt: str, raw: bool) -> None:
    if fmt == "table":
        print_table((envelope_row(e) for e in store.read(filter, raw=raw)), envelope_layout(store.head()))
    else:
        write_json_lines(store.read_json(filter, raw=raw, cloudevents=fmt.startswith("cloudevents")), fmt)


def read(
    stream: Annotated[Optional[str], typer.Argument(metavar="STREAM", help="Read one stream (default: the whole log).", show_default=False)] = None,
    category: Category = None,
    type: Types = None,
    exact_type: ExactTypes = None,
    correlation_id: Correlation = None,
    since: Since = None,
    until: Until = None,
    from_: From = None,
    to: To = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", metavar="N", callback=at_least(0), help="At most N events.", show_default=False)] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest first.")] = False,
    raw: Raw = False,
    format: EventFormat = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Print events: the whole log or one stream, filtered.

    Bounds are inclusive. On a terminal, a table; --format json or ndjson for every field.
    """
    ctx = Context(db, config, model, keys)
    fmt = choose_format(format, EVENT_FORMATS)
    filter = build_filter(stream, category, type, correlation_id, since, until, from_, to, limit, backwards, exact_type)
    print_envelopes(ctx.open(), filter, fmt, raw)


def tail(
    stream: Annotated[Optional[str], typer.Argument(metavar="STREAM", help="Tail one stream (default: the whole log).", show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", "--lines", metavar="N", callback=at_least(0), help="How many of the last events to print.")] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events as they are appended, until interrupted.")] = False,
    category: Category = None,
    type: Types = None,
    exact_type: ExactTypes = None,
    correlation_id: Correlation = None,
    raw: Raw = False,
    format: EventFormat = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Print the last N events; with -f, keep following the log.

    With -f, a stream or a store that does not exist yet is waited for.
    """
    ctx = Context(db, config, model, keys)
    fmt = choose_format(format, EVENT_FORMATS)
    filter = build_filter(stream, category, type, correlation_id, exact_types=exact_type)
    if follow:  # a store that does not exist yet is waited for, as a stream is
        store, created = ctx.open_when_created(idle=end_if_nobody_reads)
    else:
        store, created = ctx.open(), False
    window, after = store.last(filter, n, raw=raw)  # the last N, read forwards: never all in memory
    if created:
        window, after = window.replace(limit=0, stream=None), 0  # every event of a store that appeared while waiting is new
    elif follow and stream is not None and not store.stream_revision(stream):
        window = window.replace(limit=0, stream=None)  # following a stream that does not exist yet: wait for it
    if fmt == "table":  # one table, its widths set by the first rows, however long it follows
        head = store.head()  # following, positions grow: room for five digits from the start
        table = TableWriter(envelope_layout(head).with_widths(pos=max(len(str(head)), 5)))
        chunk: list[dict] = []
        for event in store.read(window, raw=raw):
            chunk.append(envelope_row(event))
            if len(chunk) >= TABLE_CHUNK:
                table.write(chunk)
                chunk = []
        table.write(chunk)
        if follow:
            for event in store.follow(filter, after=after, raw=raw, idle=end_if_nobody_reads):
                table.write([envelope_row(event)])
        return
    cloudevents = fmt.startswith("cloudevents")
    lines = store.read_json(window, raw=raw, cloudevents=cloudevents)
    if follow:
        if cloudevents:
            from ..log.cloudevents import to_json

            following = map(to_json, store.follow(filter, after=after, raw=raw, idle=end_if_nobody_reads))
        else:
            following = store.follow(filter, after=after, raw=raw, as_json=True, idle=end_if_nobody_reads)
        lines = itertools.chain(lines, following)
    write_json_lines(lines, fmt)


def streams(
    category: Category = None,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
) -> None:
    """List streams: name, category, revision, first and last time.

    A table sorts names as people do (account-2 before account-10); JSON and NDJSON
    list them in plain string order (account-10 before account-2), as SQLite sorts.
    """
    ctx = Context(db, config, keys=keys)
    rows = ctx.open(with_model=False).streams(category)
    fmt = choose_format(format)
    if fmt == "table":  # for people: account-2 before account-10
        rows = sorted(rows, key=lambda row: natural_key(row["stream"]))
    emit(rows, fmt, STREAM_COLUMNS)


def stats(
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
) -> None:
    """Summarise the store: counts by type and version, file size."""
    ctx = Context(db, config, keys=keys)
    summary = ctx.open(with_model=False).stats()
    fmt = choose_format(format)
    if fmt != "table":
        write_json_lines([dumps(summary)], "ndjson")  # one object, in either JSON format
        return
    rows = [{"key": k, "value": human_size(v) if k == "fileSize" else v} for k, v in summary.items() if k != "types"]
    print_table(rows, ("key", "value"), title="store")
    types = [
        {"type": t, "count": info["count"], "versions": ", ".join(f"v{v}: {n}" for v, n in info["versions"].items())}
        for t, info in summary["types"].items()
    ]
    print_table(types, ("type", "count", "versions"), title="events by type")
