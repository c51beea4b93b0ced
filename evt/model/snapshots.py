"""Snapshots: an aggregate's state at a revision, stored so a long stream loads fast.

One snapshot per (aggregate, stream) in the store's ``snapshots`` table, with the
fingerprint of the aggregate code that made it. A snapshot is only a cache: one made
by other code, or that does not match the stream, is ignored (never trusted), and
failing to save one (a read-only or busy store) is not an error for a reader.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import StoreUnavailable
from ..log.envelope import dumps
from ..log.sqlite import translate_errors
from ..log.timestamps import now

# A reader saving a snapshot waits this long (seconds) for the write lock, then gives up.
READER_WAIT = 0.2

UPSERT = """
    INSERT INTO snapshots (aggregate, stream, revision, position, timestamp, fingerprint, state, taken_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (aggregate, stream) DO UPDATE SET
        revision = excluded.revision, position = excluded.position, timestamp = excluded.timestamp,
        fingerprint = excluded.fingerprint, state = excluded.state, taken_at = excluded.taken_at
    WHERE excluded.revision > snapshots.revision OR excluded.fingerprint != snapshots.fingerprint
"""


class Snapshot(NamedTuple):
    aggregate: str
    stream: str
    revision: int
    position: int
    timestamp: str
    fingerprint: str
    state: str  # JSON text
    taken_at: str


def stored(store, aggregate: str, stream: str) -> Snapshot | None:
    "The stored snapshot of an aggregate's stream, trusted or not."
    with translate_errors(store.path):
        row = store.conn.execute(
            f"SELECT {', '.join(Snapshot._fields)} FROM snapshots WHERE aggregate = ? AND stream = ?", (aggregate, stream)
        ).fetchone()
    return Snapshot(*row) if row else None


def usable(store, aggregate, stream: str, target: int) -> Snapshot | None:
    """The stream's snapshot if it can stand in for folding up to ``target``.

    It must have been made by this aggregate code (same fingerprint), lie at or before
    the target, and still match the stream (the event at its revision has its position).
    """
    if aggregate.fingerprint is None:
        return None
    snapshot = stored(store, aggregate.name, stream)
    if snapshot is None or snapshot.fingerprint != aggregate.fingerprint or snapshot.revision > target:
        return None
    with translate_errors(store.path):
        row = store.conn.execute(
            "SELECT position FROM events WHERE stream = ? AND revision = ?", (stream, snapshot.revision)
        ).fetchone()
    return snapshot if row is not None and row[0] == snapshot.position else None


def due(aggregate, snapshot: Snapshot | None, revision: int) -> bool:
    "Whether ``snapshot_every`` events have passed since the usable snapshot (or the start)."
    if aggregate.snapshot_every is None or aggregate.fingerprint is None:
        return False
    return revision - (snapshot.revision if snapshot else 0) >= aggregate.snapshot_every


def save(store, aggregate, folded, *, wait: bool = False) -> bool:
    """Store ``folded`` as the stream's snapshot, unless a newer one by the same code is there.

    A reader (``wait=False``) waits only briefly for the write lock and skips the
    snapshot if the store is busy or read-only; ``wait=True`` reports those errors.
    """
    row = (
        aggregate.name,
        folded.stream,
        folded.revision,
        folded.position,
        folded.timestamp,
        aggregate.fingerprint,
        dumps(folded.state),
        now(),
    )
    try:
        _upsert(store, row, None if wait else READER_WAIT)
        return True
    except StoreUnavailable:
        if wait:
            raise
        return False


def _upsert(store, row: tuple, timeout: float | None) -> None:
    with store.transaction(timeout=timeout) as conn:
        conn.execute(UPSERT, row)


def delete(store, aggregate: str | None = None, stream: str | None = None) -> int:
    "Remove snapshots (of one aggregate, one stream, or all); returns how many."
    conditions, params = [], []
    if aggregate is not None:
        conditions.append("aggregate = ?")
        params.append(aggregate)
    if stream is not None:
        conditions.append("stream = ?")
        params.append(stream)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    with store.transaction() as conn:
        return conn.execute(f"DELETE FROM snapshots{where}", params).rowcount
