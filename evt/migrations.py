"""The store's format: ordered, named migrations, recorded in the store itself.

A store's format version is the number of migrations applied to it
(``PRAGMA user_version``); each applied migration is also recorded by name, with
the time, in ``evt_migrations``. A new migration is appended to ``MIGRATIONS`` and
never edited once released. A store whose version is higher than ``len(MIGRATIONS)``
was written by a newer evt and is refused.
"""

from __future__ import annotations

import sqlite3
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


def create_relay_state(conn: sqlite3.Connection) -> None:
    "Positions of relays, and messages that ingest could not store (see evt.relay.state)."
    execute_all(
        conn,
        """
        CREATE TABLE evt_relay_positions (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            position INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """
        CREATE TABLE evt_relay_dead_letters (
            id INTEGER PRIMARY KEY,
            consumer TEXT NOT NULL,
            payload TEXT NOT NULL,
            error TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1,
            first_failed_at TEXT NOT NULL,
            last_failed_at TEXT NOT NULL,
            UNIQUE (consumer, payload)
        )""",
    )


def create_append_only_triggers(conn: sqlite3.Connection) -> None:
    "The store itself refuses UPDATE and DELETE of stored events."
    for action in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER events_append_only_{action.lower()} BEFORE {action} ON events "
            "BEGIN SELECT RAISE(ABORT, 'events are append-only; evt upcast is the only sanctioned rewrite'); END"
        )


def drop_append_only_triggers(conn: sqlite3.Connection) -> None:
    execute_all(conn, "DROP TRIGGER events_append_only_update", "DROP TRIGGER events_append_only_delete")


def execute_all(conn: sqlite3.Connection, *statements: str) -> None:
    "Run statements in the caller's transaction (executescript would commit it)."
    for statement in statements:
        conn.execute(statement)


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("0001_create_event_log", create_event_log),
    ("0002_relay_state", create_relay_state),
]

FORMAT_VERSION = len(MIGRATIONS)


def apply_migrations(conn: sqlite3.Connection, current: int, applied_at: str) -> None:
    "Apply the migrations after ``current``, inside the caller's transaction."
    for name, migrate in MIGRATIONS[current:]:
        migrate(conn)
        conn.execute("INSERT INTO evt_migrations (name, applied_at) VALUES (?, ?)", (name, applied_at))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
