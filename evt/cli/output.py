"""Rendering: NDJSON, a streamed JSON array, or a rich table on a terminal.

Every renderer streams: lines are written (and flushed) as they come, so memory stays
flat however long the log, and ``evt read | head -1`` sees its line at once.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Sequence

from ..errors import UsageError
from ..log.envelope import dumps

FORMATS = ("table", "json", "ndjson")
# Commands that print events (read, tail) also speak CloudEvents: one structured event
# per line, or one JSON array of them (the CloudEvents JSON batch format).
EVENT_FORMATS = FORMATS + ("cloudevents", "cloudevents-json")
ARRAY_FORMATS = ("json", "cloudevents-json")
TABLE_CHUNK = 500
UNBOUNDED = 1_000_000  # columns: to measure a table's natural width


def choose_format(requested: str | None, allowed: Sequence[str] = FORMATS) -> str:
    "The format asked for, else a table on a terminal and NDJSON in a pipe."
    if requested is None:
        return "table" if sys.stdout.isatty() else "ndjson"
    if requested not in allowed:
        raise UsageError(f"unknown format {requested!r} (choose from {', '.join(allowed)})")
    return requested


def end_if_nobody_reads() -> None:
    """End quietly, as a write would, once stdout is a pipe whose reader has gone.

    ``evt tail -f | head -1`` then ends with ``head`` instead of at the next event.
    """
    import select
    import signal

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        gone = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return
    if gone:
        os.kill(os.getpid(), signal.SIGPIPE)


def write_json_lines(lines: Iterable[str], fmt: str) -> int:
    "JSON texts as NDJSON or as one JSON array (``json``, ``cloudevents-json``); returns how many were written."
    out = sys.stdout
    count = 0
    if fmt in ARRAY_FORMATS:
        out.write("[")
        try:
            for line in lines:
                out.write(",\n" if count else "\n")
                out.write(line)
                out.flush()
                count += 1
        except KeyboardInterrupt:  # Ctrl-C ends `evt tail -f`: what was written stays one array
            out.write("\n]\n" if count else "]\n")
            out.flush()
            raise
        out.write("\n]\n" if count else "]\n")
    else:
        for line in lines:
            out.write(line)
            out.write("\n")
            out.flush()
            count += 1
    out.flush()
    return count


def emit(objects: Iterable[Any], fmt: str, columns: Sequence[str] | None = None, title: str | None = None) -> int:
    "Objects (dicts) in a format; ``columns`` pick and order the table's columns."
    if fmt == "table":
        return print_table(objects, columns, title)
    return write_json_lines((dumps(o) for o in objects), fmt)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return dumps(value)
    return str(value)


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_table(
    objects: Iterable[Any],
    columns: Sequence[str] | None = None,
    title: str | None = None,
    header: bool = True,
) -> int:
    "Rows as rich tables of TABLE_CHUNK rows each, so a long listing streams too."
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    term = console()
    count = 0
    chunk: list[dict] = []

    def flush(first: bool) -> None:
        show = header and first
        table = Table(title=title if show else None, show_header=show, box=None, pad_edge=False)
        rows = [[cell(row.get(name)) for name in names] for row in chunk]
        for i, name in enumerate(names):
            if i == len(names) - 1:  # the last column takes what room is left
                table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
            else:
                table.add_column(name, no_wrap=True, min_width=max([len(name)] + [len(r[i]) for r in rows]))
        for r in rows:
            table.add_row(*(Text(c) for c in r))  # as text: brackets in data are not rich markup
        # Too wide for the terminal: the last column gives up the room (cut with an
        # ellipsis); left to itself, rich shrinks every column and drops the narrow ones.
        table.expand = Measurement.get(term, term.options.update_width(UNBOUNDED), table).maximum > term.width
        term.print(table)
        chunk.clear()

    names: list[str] = list(columns or [])
    for obj in objects:
        if not names:
            names = list(obj)
        chunk.append(obj)
        count += 1
        if len(chunk) >= TABLE_CHUNK:
            flush(count <= TABLE_CHUNK)
    if chunk:
        flush(count <= TABLE_CHUNK)
    elif count == 0 and names:
        term.print("[dim](nothing)[/dim]")
    return count


ENVELOPE_COLUMNS = ("pos", "stream", "rev", "type", "v", "timestamp", "data")


def envelope_row(event) -> dict:
    "An event as a table row (short headers leave the data column room on a terminal)."
    return {
        "pos": event.position,
        "stream": event.stream,
        "rev": event.revision,
        "type": event.type,
        "v": event.version,
        "timestamp": event.timestamp,
        "data": event.data,
    }
