"""The dead-letter table: events a projection or consumer failed on, kept to retry.

Each file a projection writes into holds its own ``evt_dead_letters`` table (so a dead
letter is committed in the same transaction as the projection's tables and
checkpoint); shell consumers keep theirs in the events store. Ids are unique across
all those files: they are drawn from one counter in the events store.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable, Iterator

from ..errors import NotFound
from ..log.migrations import BOOKKEEPING, BOOKKEEPING_COLUMNS

FIELDS = ("id", "consumer", "position", "eventId", "type", "error", "attempts", "firstFailedAt", "lastFailedAt")
SELECT = (
    "SELECT id, consumer, position, event_id, type, error, attempts, first_failed_at, last_failed_at, stream, payload, {detail} "
    "FROM evt_dead_letters"
)

# How much of a failing command's stderr a dead letter keeps.
STDERR_LIMIT = 2000


class DeadLetterNotFound(NotFound):
    "No dead letter has that id"


class DeadLetter:
    "One parked event: which consumer failed on which event, how, how often, when."

    __slots__ = ("id", "consumer", "position", "event_id", "type", "error", "attempts", "first_failed_at", "last_failed_at", "stream", "payload", "detail", "path")

    def __init__(self, row: tuple, path: str):
        (self.id, self.consumer, self.position, self.event_id, self.type, self.error,
         self.attempts, self.first_failed_at, self.last_failed_at, self.stream, self.payload, self.detail) = row
        self.path = path

    def to_dict(self) -> dict:
        "The dead letter as evt prints it, fields in the documented order."
        return dict(zip(FIELDS, (
            self.id, self.consumer, self.position, self.event_id, self.type, self.error,
            self.attempts, self.first_failed_at, self.last_failed_at,
        )))


def create_bookkeeping(conn: sqlite3.Connection) -> None:
    "The checkpoint and dead-letter tables, with every column of this evt (idempotent; inside the caller's transaction)."
    for statement in BOOKKEEPING:
        conn.execute(statement)
    for table, column, statement in BOOKKEEPING_COLUMNS:  # a file made by an older evt
        if column not in columns(conn, table):
            conn.execute(statement)


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def next_id(store) -> int:
    """A new dead-letter id from the events store's counter.

    In the caller's transaction when it holds one on the store (the dead letter goes
    there); else in a short one of its own (an id lost to a crash leaves a gap, never a
    duplicate).
    """
    sql = "UPDATE evt_sequences SET value = value + 1 WHERE name = 'dead_letters' RETURNING value"
    if store.in_transaction:
        return store.conn.execute(sql).fetchone()[0]
    with store.transaction() as conn:
        return conn.execute(sql).fetchone()[0]


def record(
    conn: sqlite3.Connection, id: int, consumer: str, event, error: str, attempts: int, first: str, last: str, detail: str | None = None
) -> None:
    "Park an event for a consumer (in the caller's transaction); ``detail`` is the full error, where ``error`` is its one line."
    conn.execute(
        "INSERT INTO evt_dead_letters (id, consumer, position, event_id, stream, type, error, attempts, "
        "first_failed_at, last_failed_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (id, consumer, event.position, event.id, event.stream, event.type, error, attempts, first, last, detail),
    )


def record_message(store, consumer: str, payload: str, error: str, at: str) -> int:
    """Park a message that never became an event (in the caller's transaction on the store).

    The same message parked again by the same consumer (a redelivery) counts one more
    attempt on its entry instead of making a second one. Returns the entry's id.
    """
    store_conn = store.conn
    found = store_conn.execute(
        "SELECT id FROM evt_dead_letters WHERE consumer = ? AND position IS NULL AND payload = ?", (consumer, payload)
    ).fetchone()
    if found:
        failed_again(store_conn, found[0], error, at)
        return found[0]
    id = next_id(store)
    event_id, stream, type_ = _envelope_fields(payload)
    store_conn.execute(
        "INSERT INTO evt_dead_letters (id, consumer, position, event_id, stream, type, payload, error, attempts, "
        "first_failed_at, last_failed_at) VALUES (?, ?, NULL, ?, ?, ?, ?, ?, 1, ?, ?)",
        (id, consumer, event_id, stream, type_, payload, error, at, at),
    )
    return id


def _envelope_fields(payload: str) -> tuple:
    "The id, stream and type of a payload, where it is an envelope (or a CloudEvent) that names them."
    import json

    try:
        envelope = json.loads(payload)
    except ValueError:
        return None, None, None
    if not isinstance(envelope, dict):
        return None, None, None
    stream = envelope.get("subject") if "specversion" in envelope else envelope.get("stream")  # a CloudEvent's stream is its subject
    return tuple(v if isinstance(v, str) else None for v in (envelope.get("id"), stream, envelope.get("type")))


def has_table(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'evt_dead_letters'").fetchone() is not None


def entries(conn: sqlite3.Connection, path: str, consumer: str | None = None) -> list[DeadLetter]:
    "The dead letters in one file, oldest event first."
    if not has_table(conn):
        return []
    where, params = (" WHERE consumer = ?", (consumer,)) if consumer else ("", ())
    # A projection's file that an older evt made, and no replay has opened since, has no
    # detail column yet; reading it changes nothing.
    detail = "detail" if "detail" in columns(conn, "evt_dead_letters") else "NULL"
    rows = conn.execute(SELECT.format(detail=detail) + where + " ORDER BY position IS NULL, position, id", params).fetchall()
    return [DeadLetter(row, path) for row in rows]


def count(conn: sqlite3.Connection, consumer: str) -> int:
    if not has_table(conn):
        return 0
    return conn.execute("SELECT count(*) FROM evt_dead_letters WHERE consumer = ?", (consumer,)).fetchone()[0]


def parked_streams(conn: sqlite3.Connection, consumer: str) -> dict[str, int]:
    "Streams with a dead letter of this consumer: stream -> the id of its first dead letter."
    rows = conn.execute(
        "SELECT stream, min(id) FROM evt_dead_letters WHERE consumer = ? GROUP BY stream", (consumer,)
    ).fetchall()
    return dict(rows)


def blocker(conn: sqlite3.Connection, entry: DeadLetter) -> int | None:
    "The id of an earlier dead letter of the same consumer and stream, if any."
    row = conn.execute(
        "SELECT min(id) FROM evt_dead_letters WHERE consumer = ? AND stream = ? AND position < ?",
        (entry.consumer, entry.stream, entry.position),
    ).fetchone()
    return row[0]


def delete(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
    conn.executemany("DELETE FROM evt_dead_letters WHERE id = ?", [(i,) for i in ids])


def delete_consumer(conn: sqlite3.Connection, consumer: str) -> None:
    if has_table(conn):
        conn.execute("DELETE FROM evt_dead_letters WHERE consumer = ?", (consumer,))


def failed_again(conn: sqlite3.Connection, id: int, error: str, at: str, detail: str | None = None) -> None:
    conn.execute(
        "UPDATE evt_dead_letters SET error = ?, detail = ?, attempts = attempts + 1, last_failed_at = ? WHERE id = ?",
        (error, detail, at, id),
    )


def held_back(conn: sqlite3.Connection, id: int, error: str) -> None:
    "A retry that could not run (the entry waits for another): the reason, and no attempt counted."
    conn.execute("UPDATE evt_dead_letters SET error = ?, detail = NULL WHERE id = ?", (error, id))


def select(found: Iterable[DeadLetter], ids: Iterable[int]) -> list[DeadLetter]:
    "The dead letters with these ids; DeadLetterNotFound naming the first unknown one."
    by_id = {entry.id: entry for entry in found}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DeadLetterNotFound(f"no dead letter with id {missing[0]} (evt dlq list shows them)")
    return [by_id[i] for i in dict.fromkeys(ids)]


def truncate(text: str, limit: int = STDERR_LIMIT) -> str:
    "The end of a long text (where the error usually is), marked as cut."
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def by_position(items: Iterable[DeadLetter]) -> Iterator[DeadLetter]:
    # Messages that never became events (no position) come after events, oldest first.
    return iter(sorted(items, key=lambda e: (e.position is None, e.position or 0, e.id)))
