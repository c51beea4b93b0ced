"""Rendering: NDJSON, a streamed JSON array, or a rich table on a terminal.

Every renderer streams: lines are written (and flushed) as they come, so memory stays
flat however long the log, and ``evt read | head -1`` sees its line at once.
"""

from __future__ import annotations

import os
import re
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
    "Objects (dicts) in a format; ``columns`` (names, or a ``Layout``) pick and order the table's columns."
    if fmt == "table":
        return print_table(objects, columns, title)
    return write_json_lines((dumps(o) for o in objects), fmt)


_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+Z$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def cell(value: Any) -> str:
    """A value as one line of a table cell: JSON for objects and arrays, evt's
    timestamps to the second (``--format json`` has the microseconds), control
    characters (a command's stderr in an error) escaped so a row stays one line."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return dumps(value)
    text = str(value)
    stamp = _TIMESTAMP.match(text)
    if stamp:
        return stamp.group(1) + "Z"
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def natural_key(text: str) -> tuple:
    "Sorts text as people do: account-2 before account-10."
    parts = re.split(r"(\d+)", text)
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], text


def human_size(size: int) -> str:
    "A byte count as people read it: 512 B, 1.5 KiB, 23.4 MiB (binary units, as ls -h)."
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


GAP = 2  # spaces between columns
FLEX_MIN = 20  # the narrowest a flexible column (data, error) is cut to before others are left out
ELLIPSIS = "…"


class Layout:
    """A table's columns, and how the table fits a narrow terminal.

    ``keys`` are never cut or left out (the id ``evt dlq retry`` needs, a stream's
    name); ``flex`` columns take the room that is left and are cut with ``…`` (down
    to FLEX_MIN); when even that does not fit, the columns of ``drop`` are left out,
    in that order, then the flexible ones. Nothing is left out silently: a note says
    which, and ``--format json`` shows every field. ``widths`` are the least widths
    of columns whose widest value is known up front (positions: the store's head), so
    they need not widen later. By default the first column is the key and the last
    the flexible one.
    """

    def __init__(
        self,
        *names: str,
        keys: Sequence[str] | None = None,
        flex: Sequence[str] | None = None,
        drop: Sequence[str] = (),
        widths: dict[str, int] | None = None,
    ):
        self.names = list(names)
        self.keys = list(keys) if keys is not None else self.names[:1]
        self.flex = list(flex) if flex is not None else [n for n in self.names[-1:] if n not in self.keys]
        others = [n for n in self.names if n not in self.keys and n not in self.flex and n not in drop]
        self.drop = [n for n in drop if n in self.names] + others[::-1] + self.flex[::-1]
        self.widths = dict(widths or {})

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def with_widths(self, **widths: int) -> "Layout":
        "The same layout with least widths for some columns."
        layout = Layout(*self.names, keys=self.keys, flex=self.flex, widths={**self.widths, **widths})
        layout.drop = self.drop
        return layout


def fit(text: str, width: int, right: bool = False) -> str:
    "Text padded to ``width`` terminal cells, or cut to it with an ellipsis."
    size = len(text) if text.isascii() else _cells().cell_len(text)
    if size > width:
        return _cells().set_cell_size(text, width - 1) + ELLIPSIS if width > 0 else ""
    pad = " " * (width - size)
    return pad + text if right else text + pad


def _cells():
    "rich.cells (terminal cell widths: wide CJK characters, emoji), imported when a table is printed."
    import rich.cells

    return rich.cells


class TableWriter:
    """Rows printed as a plain table on stdout, as they come, with one layout for the
    whole output: the widths are fixed by the first rows written (a later value too
    wide for its column is cut with ``…``), so columns stay aligned chunk after chunk.

    Only a key column or a column of numbers ever widens, when a later value would
    otherwise be cut (neither is ever cut: a cut number would be a wrong one): the
    layout is then made again, from those rows on.
    """

    def __init__(self, layout: Layout, title: str | None = None, header: bool = True):
        self.layout = layout
        self.title = title
        self.header = header
        self.term = console()
        self.natural: dict[str, int] | None = None
        self.shown: list[str] = []
        self.width: dict[str, int] = {}
        self.right: set[str] = set()
        self.fits = True

    def write(self, rows: Sequence[dict]) -> None:
        cell_len = _cells().cell_len
        if not rows:
            return
        cells = [{name: cell(row.get(name)) for name in self.layout} for row in rows]
        if self.natural is None:
            self._start(rows, cells)
        elif self.fits:  # (a table that did not fit at first stays unprinted: it said so once)
            wider = {}
            for name in [n for n in self.layout.names if n in self.layout.keys or n in self.right]:
                size = max(cell_len(c[name]) for c in cells)
                if size > self.natural[name]:
                    wider[name] = size
            if wider:  # a key, or a number, is never cut: its column widens, from these rows on
                self.natural.update(wider)
                self._lay_out(self.shown)
        if self.fits:  # plain lines, written as one block per chunk (rich's print per line is slow)
            shown, width, right = self.shown, self.width, self.right
            lines = [self._join(fit(c[n], width[n], n in right) for n in shown) for c in cells]
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()

    def _start(self, rows: Sequence[dict], cells: list[dict]) -> None:
        cell_len = _cells().cell_len
        names = self.layout.names
        self.natural = {
            n: max([cell_len(n), self.layout.widths.get(n, 0)] + [cell_len(c[n]) for c in cells]) for n in names
        }
        self.right = {n for n in names if _numeric([row.get(n) for row in rows])}
        self._lay_out()
        if not self.fits:
            need = sum(self.natural[n] for n in self.layout.keys) + GAP * (len(self.layout.keys) - 1)
            sys.stderr.write(
                f"evt: the table does not fit in {self.term.width} columns ({', '.join(self.layout.keys)} need {need}): "
                "widen the terminal, or use --format json\n"
            )
            sys.stderr.flush()
            return
        left_out = [n for n in names if n not in self.shown]
        if left_out:
            sys.stderr.write(
                f"(not shown at {self.term.width} columns: {', '.join(left_out)}; --format json shows every field)\n"
            )
            sys.stderr.flush()
        if self.title:
            self._print(self.title, style="bold")
        if self.header:
            self._print(self._join(fit(n, self.width[n], n in self.right) for n in self.shown), style="bold")

    def _lay_out(self, shown: list[str] | None = None) -> None:
        """Which columns show, how wide, in the terminal's width.

        Once the header is out, the columns it names stay (``shown``): the flexible
        ones give up what room they can, and a row too wide after that runs past the
        terminal's edge rather than lose a column under its header.
        """
        available = self.term.width
        keep = shown is not None
        shown = list(shown if keep else self.layout.names)
        leave_out = [] if keep else list(self.layout.drop)
        while True:
            width = {n: self.natural[n] for n in shown}
            excess = sum(width.values()) + GAP * (len(shown) - 1) - available
            for name in reversed([n for n in self.layout.flex if n in shown]):
                if excess <= 0:
                    break
                least = min(width[name], max(FLEX_MIN, len(name)))
                give = min(excess, width[name] - least)
                width[name] -= give
                excess -= give
            if excess <= 0 or not leave_out:
                break
            shown.remove(leave_out.pop(0))
        self.shown, self.width = shown, width
        self.fits = keep or excess <= 0

    def _join(self, cells: Iterable[str]) -> str:
        return (" " * GAP).join(cells).rstrip()

    def _print(self, line: str, style: str | None = None) -> None:
        from rich.text import Text

        self.term.print(Text(line, style=style or "", no_wrap=True, overflow="ignore"), crop=False)


def _numeric(values: list) -> bool:
    "A column of numbers (right-aligned): every value a number, or absent."
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def print_table(
    objects: Iterable[Any],
    columns: Sequence[str] | Layout | None = None,
    title: str | None = None,
    header: bool = True,
) -> int:
    """Rows as a table, TABLE_CHUNK rows at a time, so a long listing streams too and
    memory stays flat; the widths the first chunk sets hold for the whole table."""
    count = 0
    chunk: list[dict] = []
    writer: TableWriter | None = None
    for obj in objects:
        if writer is None:
            layout = columns if isinstance(columns, Layout) else Layout(*(columns or list(obj)))
            writer = TableWriter(layout, title, header)
        chunk.append(obj)
        count += 1
        if len(chunk) >= TABLE_CHUNK:
            writer.write(chunk)
            chunk = []
    if writer is not None:
        writer.write(chunk)
    elif columns:
        console().print("[dim](nothing)[/dim]")
    return count


# An event as a table row: the position and stream are its keys; the data takes the
# room that is left; on a narrow terminal the version, revision, time and type go first.
ENVELOPE_COLUMNS = Layout(
    "pos", "stream", "rev", "type", "v", "timestamp", "data",
    keys=("pos", "stream"), flex=("data",), drop=("v", "rev", "timestamp", "type"),
)


def envelope_layout(head: int) -> Layout:
    "The envelope table for a store whose last position is ``head`` (no position is wider)."
    digits = len(str(head))
    return ENVELOPE_COLUMNS.with_widths(pos=digits, rev=digits)


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
