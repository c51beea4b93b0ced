"""Redaction: ``evt redact``, the sanctioned rewrite that takes values out of stored events.

For what was not encrypted (crypto-shredding is ``evt forget``): the chosen events —
by stream, id or position — get the chosen values of their ``data`` and ``metadata``
replaced by ``PLACEHOLDER``, in one checked rewrite (``evt.ops.rewrite``: a backup
first, the append-only triggers lifted and restored inside the transaction, the result
verified before it commits), with an audit record in ``evt_redactions`` that says when,
who, why, which positions and which fields — never what was there. The snapshots of the
affected streams go in the same transaction (they hold state folded from the old values).

Then ``scrub`` makes the old bytes unrecoverable in the store's files: the rewrite runs
with ``PRAGMA secure_delete`` (freed space is zeroed), and afterwards the WAL is
checkpointed and truncated, the file vacuumed (rebuilt from what is live) and the WAL
truncated again. The backup, and any copy taken before, still hold the old values.

A field is a path into the stored JSON: ``data`` or ``metadata``, then keys joined by
dots (``data.customer.email``); a number picks an array element (``data.items.0``) and
``*`` every member or element (``data.items.*.email``). ``data`` (or ``metadata``) alone
means every member of it: the object keeps its keys, every value becomes the
placeholder. A path an event does not have leaves that event alone.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..errors import NotFound, StreamNotFound, UsageError
from ..log import chain
from ..log.envelope import dumps, loads
from ..log.sqlite import translate_errors
from ..log.timestamps import now
from .dependents import drop_snapshots
from .rewrite import RewriteRefused, check_integrity, lifted_triggers, rewriting

if TYPE_CHECKING:
    from ..log.store import Store

PLACEHOLDER = "[redacted]"
COLUMNS = ("data", "metadata")
WHOLE = ("data", "metadata")  # the fields redacted when none are named
EVERY = "*"

ROW = "position, id, stream, revision, type, version, timestamp, source, correlation_id, causation_id, data, metadata"


# -- what to redact ---------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    "The events to redact: every event of these streams, with these ids, at these positions."

    streams: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    positions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not (self.streams or self.ids or self.positions):
            raise UsageError("evt redact needs events to redact: --stream STREAM, --id ID or --position N")


@dataclass(frozen=True)
class Field:
    "A path into an event's stored ``data`` or ``metadata``."

    text: str
    column: str
    steps: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Field":
        column, *steps = text.split(".")
        if column not in COLUMNS or any(not step for step in steps):
            raise UsageError(
                f"cannot redact field {text!r}: a field is data or metadata, then keys joined by dots (data.customer.email)"
            )
        return cls(text, column, tuple(steps) or (EVERY,))

    @property
    def whole(self) -> bool:
        return self.steps == (EVERY,)

    def redact(self, documents: dict[str, Any], changed: list[str]) -> bool:
        """Replace what this field names in ``documents`` (``{"data": …, "metadata": …}``)
        by the placeholder, adding each path replaced to ``changed``; whether it is there."""
        return _blank(documents[self.column], self.steps, self.column, changed)


def fields_of(paths: Iterable[str]) -> tuple[Field, ...]:
    "The fields named (duplicates once), or the whole data and metadata when none are."
    named = list(dict.fromkeys(paths)) or list(WHOLE)
    return tuple(Field.parse(path) for path in named)


class _Redacted:
    "One selected event: its row, and its data and metadata with the fields replaced."

    def __init__(self, row: tuple, fields: tuple[Field, ...], found: set[str]):
        self.row = row
        self.documents = {"data": loads(row[10]), "metadata": loads(row[11])}
        self.changed: list[str] = []
        for field in fields:
            if field.redact(self.documents, self.changed):
                found.add(field.text)

    @property
    def position(self) -> int:
        return self.row[0]

    @cached_property
    def texts(self) -> tuple[str, str]:
        "The new stored texts (what changed nothing keeps its text as stored)."
        data, metadata = self.documents["data"], self.documents["metadata"]
        return (
            dumps(data) if any(path.startswith("data.") for path in self.changed) else self.row[10],
            dumps(metadata) if any(path.startswith("metadata.") for path in self.changed) else self.row[11],
        )

    def change(self) -> dict:
        return {"position": self.position, "stream": self.row[2], "fields": self.changed}


def _blank(node: Any, steps: tuple[str, ...], path: str, changed: list[str]) -> bool:
    "Replace what ``steps`` leads to in ``node`` by the placeholder; whether it leads anywhere."
    step, rest = steps[0], steps[1:]
    found = False
    for key, child in _children(node, step):
        where = f"{path}.{key}"
        if rest:
            found = _blank(child, rest, where, changed) or found
            continue
        found = True
        if child != PLACEHOLDER:
            node[key] = PLACEHOLDER
            changed.append(where)
    return found


def _children(node: Any, step: str) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        if step == EVERY:
            return list(node.items())
        return [(step, node[step])] if step in node else []
    if isinstance(node, list):
        if step == EVERY:
            return list(enumerate(node))
        if step.isascii() and step.isdigit() and int(step) < len(node):
            return [(int(step), node[int(step)])]
    return []


def _selected_rows(conn: sqlite3.Connection, selection: Selection) -> list[tuple]:
    "The selected events' rows in position order; NotFound for a stream, id or position that has none."
    rows: dict[int, tuple] = {}
    for stream in dict.fromkeys(selection.streams):
        found = conn.execute(f"SELECT {ROW} FROM events WHERE stream = ? ORDER BY revision", (stream,)).fetchall()
        if not found:
            raise StreamNotFound(f"stream {stream!r} has no events; nothing redacted")
        rows.update((row[0], row) for row in found)
    for event_id in dict.fromkeys(selection.ids):
        row = conn.execute(f"SELECT {ROW} FROM events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise NotFound(f"no event has id {event_id!r}; nothing redacted")
        rows[row[0]] = row
    for position in dict.fromkeys(selection.positions):
        row = conn.execute(f"SELECT {ROW} FROM events WHERE position = ?", (position,)).fetchone()
        if row is None:
            raise NotFound(f"no event at position {position}; nothing redacted")
        rows[row[0]] = row
    return [rows[p] for p in sorted(rows)]


def _plan(conn: sqlite3.Connection, selection: Selection, fields: tuple[Field, ...]) -> tuple[int, list[_Redacted]]:
    """(how many events the selection holds, those a redaction changes). NotFound when a
    named path (not ``data`` or ``metadata`` whole) is in none of the selected events."""
    found: set[str] = set()
    selected = [_Redacted(row, fields, found) for row in _selected_rows(conn, selection)]
    missing = [f.text for f in fields if not f.whole and f.text not in found]
    if missing:
        raise NotFound(f"no selected event has {' or '.join(missing)}; nothing redacted")
    return len(selected), [event for event in selected if event.changed]


def _result(mode: str, store: "Store", fields: tuple[Field, ...], selected: int, events: list[_Redacted], **more: Any) -> dict:
    return {
        "mode": mode,
        "store": store.path,
        **more,
        "fields": [f.text for f in fields],
        "placeholder": PLACEHOLDER,
        "selected": selected,
        "redacted": len(events),
        "unchanged": selected - len(events),
        "changes": [event.change() for event in events],
    }


# -- dry run ----------------------------------------------------------------------------


def dry_run(store: "Store", selection: Selection, fields: tuple[Field, ...]) -> dict:
    "What a redaction would change — positions and field paths, never values — changing nothing."
    conn = store.conn
    with translate_errors(store.path):
        conn.execute("BEGIN")
        try:
            selected, events = _plan(conn, selection, fields)
        finally:
            conn.execute("ROLLBACK")
    return _result("dry-run", store, fields, selected, events)


# -- the redaction -------------------------------------------------------------------------


def who() -> str:
    "The user running evt (the login name, or the numeric user id where there is none)."
    try:
        return getpass.getuser()
    except Exception:  # no login name, no USER variable, no passwd entry (a bare container)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def redact(
    store: "Store",
    selection: Selection,
    fields: tuple[Field, ...],
    *,
    reason: str,
    by: str | None = None,
    on_backup: Callable[[str], None] | None = None,
) -> dict:
    """Redact the fields of the selected events in the store itself.

    One checked rewrite (see the module's docstring); NotFound (nothing written) when a
    stream, id, position or named field is not there. Returns the summary: the
    redaction's id, the backup, who, why, the snapshots dropped, and per changed event its
    position, stream and the paths replaced. When nothing would change (redacted already),
    nothing is written: no backup, no record (``redaction`` and ``backup`` are None).
    Call ``scrub`` after.
    """
    if not reason.strip():
        raise UsageError("evt redact needs a --reason (it is kept in the audit record)")
    by = by if by is not None else who()
    with rewriting(store, on_backup) as run:
        conn = run.conn
        selected, events = _plan(conn, selection, fields)
        if not events:
            return _result("redact", store, fields, selected, events, redaction=None, backup=None, reason=reason, by=by, snapshotsDropped=0)
        backup = run.backup()
        before = _extent(conn)
        with secure_delete(conn):  # what the rewrite frees is zeroed, not left in free space
            _rewrite(conn, events)
            redaction = _record(conn, fields, events, reason=reason, by=by, backup=backup)
            snapshots = drop_snapshots(conn, streams_of(events))  # folded from the old values: they go with them
        _verify(conn, events, before)
    return _result("redact", store, fields, selected, events, redaction=redaction, backup=backup, reason=reason, by=by, snapshotsDropped=snapshots)


def streams_of(events: Iterable[_Redacted]) -> list[str]:
    return sorted({event.row[2] for event in events})


@contextmanager
def secure_delete(conn: sqlite3.Connection) -> Iterator[None]:
    "SQLite overwrites what it deletes or frees with zeros meanwhile."
    previous = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(previous)}")


def _rewrite(conn: sqlite3.Connection, events: list[_Redacted]) -> None:
    "The new texts in place."
    with lifted_triggers(conn):
        cursor = conn.executemany(
            "UPDATE main.events SET data = ?, metadata = ? WHERE position = ?",
            ((*event.texts, event.position) for event in events),
        )
        if cursor.rowcount != len(events):
            raise RewriteRefused(f"{len(events)} events were to be redacted, {cursor.rowcount} were")


def _record(conn: sqlite3.Connection, fields: tuple[Field, ...], events: list[_Redacted], *, reason: str, by: str, backup: str) -> int:
    "The audit record: when, who, why, which fields and positions, and the backup; no redacted content."
    cursor = conn.execute(
        "INSERT INTO main.evt_redactions (redacted_at, redacted_by, reason, fields, positions, events, backup) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now(), by, reason, dumps([f.text for f in fields]), dumps([e.position for e in events]), len(events), os.path.abspath(backup)),
    )
    redaction = cursor.lastrowid
    # The chain keeps the digests of the texts as appended: an event redacted again keeps
    # those of its first redaction (OR IGNORE), so evt verify still chains it.
    conn.executemany(
        "INSERT OR IGNORE INTO main.evt_redacted_events (position, redaction, data_sha256, metadata_sha256) VALUES (?, ?, ?, ?)",
        ((e.position, redaction, chain.digest(e.row[10]), chain.digest(e.row[11])) for e in events),
    )
    return redaction


def _verify(conn: sqlite3.Connection, events: list[_Redacted], before: tuple) -> None:
    """The redacted events hold the new texts and nothing else of them changed; the log
    has the same events; SQLite's integrity check passes. RewriteRefused otherwise."""
    after = _extent(conn)
    if after != before:
        raise RewriteRefused(f"the log changed while redacting ({before[0]} events before, {after[0]} after)")
    for chunk in _chunks(events, 500):
        marks = ", ".join("?" for _ in chunk)
        stored = {row[0]: row for row in conn.execute(f"SELECT {ROW} FROM events WHERE position IN ({marks})", [e.position for e in chunk])}
        for event in chunk:
            if stored.get(event.position) != (*event.row[:10], *event.texts):
                raise RewriteRefused(f"the event at position {event.position} is not as redacted")
    check_integrity(conn)


def _extent(conn: sqlite3.Connection) -> tuple[int, int | None]:
    "How many events, and the head."
    return conn.execute("SELECT count(*), max(position) FROM events").fetchone()


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- making the old bytes unrecoverable ------------------------------------------------------


def scrub(store: "Store") -> bool:
    """Leave no old bytes in the store's files: the WAL checkpointed into the file and
    truncated, the file vacuumed (rebuilt from its live content: no free pages, no
    slack), then the WAL (which the vacuum wrote through) checkpointed and truncated
    again. With the write lock held, so no writer adds to the WAL meanwhile. Returns False
    when a reader kept the WAL from being truncated past the busy timeout (old pages may
    then remain in ``-wal`` until the next checkpoint: run it again).
    """
    conn = store.conn
    with translate_errors(store.path), store.queue.turn(store.busy_timeout), secure_delete(conn):
        _checkpoint(conn)
        conn.execute("VACUUM")
        return _checkpoint(conn)


def _checkpoint(conn: sqlite3.Connection) -> bool:
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0
