"""What relays and ingests keep in the store: positions and bad messages.

These three functions are the only place the relay code touches its own tables, so they
can be pointed at the store's shared consumer positions and dead-letter table without
changing anything else. Their tables, ``evt_relay_positions`` and
``evt_relay_dead_letters``, are created by the migration ``0002_relay_state``
(``evt.migrations.create_relay_state``).
"""

from __future__ import annotations

from ..store import Store, translate_errors
from ..timeutil import now


def load_position(store: Store, name: str) -> int:
    "The last position this relay has delivered (0 when it has never run)."
    with translate_errors(store.path):
        row = store.conn.execute("SELECT position FROM evt_relay_positions WHERE name = ?", (name,)).fetchone()
    return row[0] if row else 0


def save_position(store: Store, name: str, kind: str, position: int) -> None:
    "Record the relay's position; call it inside ``store.transaction()``."
    store.conn.execute(
        "INSERT INTO evt_relay_positions (name, kind, position, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, position = excluded.position, "
        "updated_at = excluded.updated_at",
        (name, kind, position, now()),
    )


def record_bad_message(store: Store, consumer: str, payload: str, error: str) -> None:
    "Keep a message that could not be stored; the same message again counts one more attempt."
    at = now()
    with translate_errors(store.path), store.transaction():
        store.conn.execute(
            "INSERT INTO evt_relay_dead_letters (consumer, payload, error, attempts, first_failed_at, last_failed_at) "
            "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (consumer, payload) DO UPDATE SET "
            "attempts = attempts + 1, error = excluded.error, last_failed_at = excluded.last_failed_at",
            (consumer, payload, error, at, at),
        )
