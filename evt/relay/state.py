"""What relays and ingests keep in the store: positions and bad messages.

A relay's position is a checkpoint like any consumer's (``evt_checkpoints``, kind
``relay``), so ``evt projections`` lists it; a message ingest could not store is a dead
letter (``evt_dead_letters``, with no position and the message as its payload), so
``evt dlq`` lists, shows, retries and discards it.
"""

from __future__ import annotations

from ..log import checkpoints
from ..log.sqlite import translate_errors
from ..log.store import Store
from ..log.timestamps import now
from ..processing import deadletters

KIND = "relay"


def load_position(store: Store, name: str) -> int:
    "The last position this relay has delivered (0 when it has never run)."
    with translate_errors(store.path):
        return checkpoints.load(store.conn, name) or 0


def save_position(store: Store, name: str, position: int) -> None:
    """Record the relay's position; call it inside ``store.transaction()``.

    It only moves forward: a relay running under the same name as another that got
    further is a Conflict (exit 3), never a position moved back."""
    checkpoints.save(store.conn, name, KIND, position)


def record_bad_message(store: Store, consumer: str, payload: str, error: str) -> None:
    "Park a message that could not be stored; the same message again counts one more attempt."
    with translate_errors(store.path), store.transaction():
        deadletters.record_message(store, consumer, payload, error, now())
