"""The store's format: ordered, named migrations, recorded in the store itself.

A store's format version is the number of migrations applied to it
(``PRAGMA user_version``); each applied migration is also recorded by name, with
the time, in ``evt_migrations``. A new migration is appended to ``MIGRATIONS`` and
never edited once released. A store whose version is higher than ``len(MIGRATIONS)``
was written by a newer evt and is refused.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Callable

# "evt\0": marks a SQLite file as an evt store (PRAGMA application_id).
APPLICATION_ID = 0x65767400


def create_event_log(conn: sqlite3.Connection) -> None:
    execute_all(
        conn,
        """
        CREATE TABLE evt_migrations (
            name TEXT PRIMARY KEY,
            applied_at TEXT NOT NULL
        )""",
        """
        CREATE TABLE events (
            position INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            revision INTEGER NOT NULL,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            timestamp TEXT NOT NULL,
            source TEXT,
            correlation_id TEXT,
            causation_id TEXT,
            data TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            category TEXT GENERATED ALWAYS AS (
                substr(stream, 1, CASE instr(stream, '-') WHEN 0 THEN length(stream) ELSE instr(stream, '-') - 1 END)
            ) VIRTUAL,
            UNIQUE (stream, revision)
        )""",
        "CREATE INDEX events_category ON events (category, position)",
        "CREATE INDEX events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL",
        "CREATE INDEX events_timestamp ON events (timestamp)",
    )
    create_append_only_triggers(conn)


# The store itself refuses UPDATE and DELETE of stored events: name -> the statement (as
# SQLite keeps it in sqlite_schema, where evt verify compares it).
APPEND_ONLY_TRIGGERS = {
    f"events_append_only_{action.lower()}": (
        f"CREATE TRIGGER events_append_only_{action.lower()} BEFORE {action} ON events "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only; evt upcast is the only sanctioned rewrite'); END"
    )
    for action in ("UPDATE", "DELETE")
}


def create_append_only_triggers(conn: sqlite3.Connection) -> None:
    "The store itself refuses UPDATE and DELETE of stored events."
    for statement in APPEND_ONLY_TRIGGERS.values():
        conn.execute(statement)


def drop_append_only_triggers(conn: sqlite3.Connection) -> None:
    execute_all(conn, "DROP TRIGGER events_append_only_update", "DROP TRIGGER events_append_only_delete")


def execute_all(conn: sqlite3.Connection, *statements: str) -> None:
    "Run statements in the caller's transaction (executescript would commit it)."
    for statement in statements:
        conn.execute(statement)


def create_upcast_runs(conn: sqlite3.Connection) -> None:
    "Migration: the audit trail of upcast runs (``evt upcast run --in-place`` and ``--out``)."
    conn.execute(
        """
        CREATE TABLE evt_upcast_runs (
            id INTEGER PRIMARY KEY,
            ran_at TEXT NOT NULL,
            mode TEXT NOT NULL,
            source TEXT NOT NULL,
            backup TEXT,
            upcasters TEXT NOT NULL,
            changes TEXT NOT NULL,
            events INTEGER NOT NULL,
            upcast INTEGER NOT NULL
        )"""
    )


def create_snapshots(conn: sqlite3.Connection) -> None:
    "Aggregate snapshots (evt/snapshots.py): one per aggregate and stream, with its code's fingerprint."
    conn.execute(
        """
        CREATE TABLE snapshots (
            aggregate TEXT NOT NULL,
            stream TEXT NOT NULL,
            revision INTEGER NOT NULL,
            position INTEGER NOT NULL,
            timestamp TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL,
            taken_at TEXT NOT NULL,
            PRIMARY KEY (aggregate, stream)
        )"""
    )


# Bookkeeping tables of every file a projection or consumer writes into (the store, and
# a projection's own target file): its checkpoint and its dead letters.
BOOKKEEPING = (
    """CREATE TABLE IF NOT EXISTS evt_checkpoints (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        position INTEGER NOT NULL DEFAULT 0,
        command TEXT,
        last_run_at TEXT
    )""",
    # position, event_id, stream and type are null for a message that never became an
    # event (evt ingest could not store it); payload keeps such a message as received.
    """CREATE TABLE IF NOT EXISTS evt_dead_letters (
        id INTEGER PRIMARY KEY,
        consumer TEXT NOT NULL,
        position INTEGER,
        event_id TEXT,
        stream TEXT,
        type TEXT,
        payload TEXT,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_failed_at TEXT NOT NULL,
        last_failed_at TEXT NOT NULL,
        UNIQUE (consumer, position)
    )""",
)

# Only in the events store: the counter dead-letter ids are drawn from.
ID_COUNTER = (
    "CREATE TABLE evt_sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO evt_sequences (name, value) VALUES ('dead_letters', 0)",
)


def create_projection_bookkeeping(conn: sqlite3.Connection) -> None:
    "Checkpoints of projections and consumers, their dead letters, and the dead-letter id counter."
    execute_all(conn, *BOOKKEEPING, *ID_COUNTER)


def redact_broker_secrets(conn: sqlite3.Connection) -> None:
    """Migration: names made of a broker URL lose the secrets in its query string.

    A relay is named after its broker URL (``redis://host:6379/0?password=…#events``) unless
    given ``--name``, and ingest names its dead letters the same way. The user-info password
    was always hidden, but not ``?password=`` and other credential parameters: they were
    printed and stored in ``evt_checkpoints`` (kind ``relay``) and ``evt_dead_letters``
    (messages ingest could not store, with no position). Renaming them in place keeps each
    relay's position (a relay computes the same redacted name from its URL now) and takes
    the secret out of the file. Two old names that become one (the same URL with two
    passwords) keep the lower position: a relay then publishes some events again, which
    Redis refuses as already there and RabbitMQ consumers deduplicate by message id, where
    the higher one could skip events.

    Self-contained on purpose: a released migration never changes, whatever evt's URL
    handling becomes (evt/relay/urls.py ``redact`` does the same to a query string).
    """
    previous = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = ON")  # the old names' bytes are overwritten, not left in free space
    try:
        rows = conn.execute("SELECT name, position, last_run_at FROM evt_checkpoints WHERE kind = 'relay'").fetchall()
        for name, position, last_run_at in rows:
            new = _redacted_name(name)
            if new == name:
                continue
            taken = conn.execute("SELECT position, last_run_at FROM evt_checkpoints WHERE name = ?", (new,)).fetchone()
            if taken is None:
                conn.execute("UPDATE evt_checkpoints SET name = ? WHERE name = ?", (new, name))
                continue
            conn.execute(
                "UPDATE evt_checkpoints SET position = ?, last_run_at = ? WHERE name = ?",
                (min(position, taken[0]), max(last_run_at or "", taken[1] or "") or None, new),
            )
            conn.execute("DELETE FROM evt_checkpoints WHERE name = ?", (name,))
        consumers = conn.execute("SELECT DISTINCT consumer FROM evt_dead_letters WHERE position IS NULL").fetchall()
        for (consumer,) in consumers:
            new = _redacted_name(consumer)
            if new != consumer:
                conn.execute("UPDATE evt_dead_letters SET consumer = ? WHERE consumer = ? AND position IS NULL", (new, consumer))
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(previous)}")


_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps")
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "credential")


def _redacted_name(name: str) -> str:
    "A relay or ingest name (URL, then '#' and a key or queue) with credential query parameters as ***."
    from urllib.parse import unquote_plus

    scheme, sep, rest = name.partition("://")
    if not sep or scheme.lower() not in _BROKER_SCHEMES:
        return name
    head, question, tail = rest.partition("?")
    if not question:
        return name
    query, hash_, suffix = tail.partition("#")
    pieces = query.split("&")
    hiding = False
    for i, piece in enumerate(pieces):
        key, equals, value = piece.partition("=")
        if not equals:  # the rest of a secret holding an unencoded '&'
            if hiding and piece:
                pieces[i] = "***"
            continue
        param, text = unquote_plus(key).lower(), unquote_plus(value).strip().lower()
        hiding = bool(value) and (
            any(word in param for word in _SECRET_WORDS) or (text.startswith("{") and any(word in text for word in _SECRET_WORDS))
        )
        if hiding:
            pieces[i] = f"{key}=***"
    return f"{scheme}://{head}?{'&'.join(pieces)}{hash_}{suffix}"


# The full error of a dead letter — a Python handler's traceback, a command's stderr, the
# failing SQL statement — where ``error`` is one line. NULL when there is no more to say
# than ``error``, and in entries made before it existed.
DEAD_LETTER_DETAIL = "ALTER TABLE evt_dead_letters ADD COLUMN detail TEXT"


def add_dead_letter_detail(conn: sqlite3.Connection) -> None:
    "Migration: the dead letters' full error (``detail``)."
    conn.execute(DEAD_LETTER_DETAIL)


# Columns added to the bookkeeping tables since BOOKKEEPING was released (BOOKKEEPING itself,
# which migration 0004 runs, never changes). A projection's own target file has no format
# version: where one made by an older evt lacks a column, it is added when a replay opens
# the file (CREATE TABLE IF NOT EXISTS leaves an existing table as it was). In order:
# (table, column, the statement that adds it).
BOOKKEEPING_COLUMNS = (
    ("evt_dead_letters", "detail", DEAD_LETTER_DETAIL),
)


def create_causation_index(conn: sqlite3.Connection) -> None:
    "Migration: events by the id of what caused them, so evt trace finds an event's effects without a scan."
    conn.execute("CREATE INDEX IF NOT EXISTS events_causation ON events (causation_id) WHERE causation_id IS NOT NULL")


def add_event_hashes(conn: sqlite3.Connection) -> None:
    """Migration: the hash chain (``evt/log/chain.py``) — each event's hash, computed here for
    the events already stored, in order — and the events a redaction rewrote, with the
    digests of their texts before it (``evt verify`` chains those instead)."""
    from . import chain

    if "hash" not in {row[1] for row in conn.execute("PRAGMA table_xinfo(events)")}:  # idempotent, as 0007 is
        conn.execute("ALTER TABLE events ADD COLUMN hash BLOB")
    execute_all(
        conn,
        """
        CREATE TABLE IF NOT EXISTS evt_redacted_events (
            position INTEGER PRIMARY KEY,
            redaction INTEGER NOT NULL,
            data_sha256 BLOB NOT NULL,
            metadata_sha256 BLOB NOT NULL
        )""",
    )
    if conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None:
        drop_append_only_triggers(conn)
        chain.rehash(conn)
        create_append_only_triggers(conn)


def create_subject_keys(conn: sqlite3.Connection) -> None:
    """Migration: the subject keys personal fields are encrypted with (when no key file is
    configured: ``evt.log.keys``), and the audit of ``evt forget`` — when, the SHA-256 of
    the subject, the destroyed key's id and how many events it had encrypted; no personal data."""
    from .keys import KEY_TABLE

    execute_all(
        conn,
        KEY_TABLE.format(schema=""),
        """
        CREATE TABLE IF NOT EXISTS evt_forgotten (
            id INTEGER PRIMARY KEY,
            forgotten_at TEXT NOT NULL,
            subject_sha256 BLOB NOT NULL,
            key_id BLOB,
            events INTEGER NOT NULL,
            first_position INTEGER
        )""",
        "CREATE INDEX IF NOT EXISTS evt_forgotten_key ON evt_forgotten (key_id) WHERE key_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS evt_forgotten_subject ON evt_forgotten (subject_sha256)",
    )


def create_redactions(conn: sqlite3.Connection) -> None:
    """Migration: the audit trail of ``evt redact`` — when, by whom, why, which events and
    fields, and the backup taken first; never what was redacted."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS evt_redactions (
            id INTEGER PRIMARY KEY,
            redacted_at TEXT NOT NULL,
            redacted_by TEXT NOT NULL,
            reason TEXT NOT NULL,
            fields TEXT NOT NULL,
            positions TEXT NOT NULL,
            events INTEGER NOT NULL,
            backup TEXT
        )"""
    )


def create_seals(conn: sqlite3.Connection) -> None:
    """Migration: signed heads of the hash chain (``evt seal``), append-only like the events.

    ``hash`` is the chain hash at ``position`` (32 bytes), ``key_id`` the SHA-256 (hex) of
    the signer's raw Ed25519 public key, ``signature`` 64 bytes over the text
    ``evt.ops.seals.message`` builds."""
    execute_all(
        conn,
        """
        CREATE TABLE IF NOT EXISTS evt_seals (
            id INTEGER PRIMARY KEY,
            position INTEGER NOT NULL,
            hash BLOB NOT NULL,
            signed_at TEXT NOT NULL,
            key_id TEXT NOT NULL,
            signature BLOB NOT NULL
        )""",
        "CREATE TRIGGER IF NOT EXISTS evt_seals_append_only_update BEFORE UPDATE ON evt_seals "
        "BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS evt_seals_append_only_delete BEFORE DELETE ON evt_seals "
        "BEGIN SELECT RAISE(ABORT, 'seals are append-only'); END",
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001_create_event_log", create_event_log),
    ("0002_upcast_runs", create_upcast_runs),
    ("0003_snapshots", create_snapshots),
    ("0004_projections_and_consumers", create_projection_bookkeeping),
    ("0005_redact_broker_secrets", redact_broker_secrets),
    ("0006_dead_letter_detail", add_dead_letter_detail),
    ("0007_causation_index", create_causation_index),
    ("0008_event_hashes", add_event_hashes),
    ("0009_subject_keys", create_subject_keys),
    ("0010_redactions", create_redactions),
    ("0011_seals", create_seals),
]

FORMAT_VERSION = len(MIGRATIONS)


@lru_cache(maxsize=None)
def own_tables() -> frozenset[str]:
    "The names (lower case) of the tables and views evt itself keeps in a store."
    conn = sqlite3.connect(":memory:")
    try:
        for _, migrate in MIGRATIONS:
            migrate(conn)
        rows = conn.execute("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')").fetchall()
    finally:
        conn.close()
    return frozenset(name.lower() for (name,) in rows)


def apply_migrations(conn: sqlite3.Connection, current: int, applied_at: str, until: int | None = None) -> None:
    """Apply the migrations after ``current``, inside the caller's transaction; ``until``
    stops at an earlier format (a store as an older evt made it, for tests and benchmarks)."""
    if until is None:
        until = len(MIGRATIONS)
    for name, migrate in MIGRATIONS[current:until]:
        migrate(conn)
        conn.execute("INSERT INTO evt_migrations (name, applied_at) VALUES (?, ?)", (name, applied_at))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {until}")


def format_of(name_suffix: str) -> int:
    "The format version a migration (named ``…{name_suffix}``, numbers aside) brings a store to."
    return next(i + 1 for i, (name, _) in enumerate(MIGRATIONS) if name.endswith(name_suffix))
