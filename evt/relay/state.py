"""What relays and ingests keep in the store: positions and bad messages.

A relay's position is a checkpoint like any consumer's (``evt_checkpoints``, kind
``relay``), so ``evt projections`` lists it; a message ingest could not store is a dead
letter (``evt_dead_letters``, with no position and the message as its payload), so
``evt dlq`` lists, shows, retries and discards it.
"""

from __future__ import annotations

from ..log.sqlite import translate_errors
from ..log.store import Store
from ..log.timestamps import now
from ..processing import deadletters

KIND = "relay"


def load_position(store: Store, name: str) -> int:
    "The last position this relay has delivered (0 when it has never run)."
    with translate_errors(store.path):
        row = store.conn.execute("SELECT position FROM evt_checkpoints WHERE name = ?", (name,)).fetchone()
    return row[0] if row else 0


def save_position(store: Store, name: str, position: int) -> None:
    "Record the relay's position; call it inside ``store.transaction()``."
    store.conn.execute(
        "INSERT INTO evt_checkpoints (name, kind, position, last_run_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, last_run_at = excluded.last_run_at",
        (name, KIND, position, now()),
    )


def record_bad_message(store: Store, consumer: str, payload: str, error: str) -> None:
    "Park a message that could not be stored; the same message again counts one more attempt."
    with translate_errors(store.path), store.transaction():
        deadletters.record_message(store.conn, consumer, payload, error, now())
