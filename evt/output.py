"""Rendering: NDJSON, a streamed JSON array, or a rich table on a terminal.

Every renderer streams: lines are written (and flushed) as they come, so memory stays
flat however long the log, and ``evt read | head -1`` sees its line at once.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Sequence

from .envelope import dumps
from .errors import UsageError

FORMATS = ("table", "json", "ndjson")
TABLE_CHUNK = 500


def choose_format(requested: str | None) -> str:
    "The format asked for, else a table on a terminal and NDJSON in a pipe."
    if requested is None:
        return "table" if sys.stdout.isatty() else "ndjson"
    if requested not in FORMATS:
        raise UsageError(f"unknown format {requested!r} (choose from {', '.join(FORMATS)})")
    return requested


def write_json_lines(lines: Iterable[str], fmt: str) -> int:
    "JSON texts as NDJSON or as one JSON array; returns how many were written."
    out = sys.stdout
    count = 0
    if fmt == "json":
        out.write("[")
        for line in lines:
            out.write(",\n" if count else "\n")
            out.write(line)
            out.flush()
            count += 1
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
    styles: dict[str, Callable[[Any], str]] | None = None,
) -> int:
    "Rows as rich tables of TABLE_CHUNK rows each, so a long listing streams too."
    from rich.table import Table

    term = console()
    count = 0
    chunk: list[dict] = []

    def flush(header: bool) -> None:
        table = Table(title=title if header else None, show_header=header, box=None, pad_edge=False)
        for name in columns or []:
            table.add_column(name, overflow="fold", no_wrap=name != "data")
        for row in chunk:
            table.add_row(*(cell(row.get(name)) for name in columns or []))
        term.print(table)
        chunk.clear()

    for obj in objects:
        if columns is None:
            columns = list(obj)
        chunk.append(obj)
        count += 1
        if len(chunk) >= TABLE_CHUNK:
            flush(count <= TABLE_CHUNK)
    if chunk:
        flush(count <= TABLE_CHUNK)
    elif count == 0 and columns:
        term.print("[dim](nothing)[/dim]")
    return count


ENVELOPE_COLUMNS = ("position", "stream", "revision", "type", "version", "timestamp", "data")
