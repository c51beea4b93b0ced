"""Checkpoints: how far a reader of the log has got, kept in the file it writes into.

A checkpoint is a named position in ``evt_checkpoints`` (the events store, or a
projection's own target file). It only moves forward: saving a position below the one
stored is a ``Conflict`` — two runs of the same reader, or a stale one, never move it
back silently. Starting again from an earlier position is an explicit ``reset``.
"""

from __future__ import annotations

import sqlite3

from ..errors import Conflict
from .timestamps import now


class CheckpointBehind(Conflict):
    "A checkpoint would move backwards"


def load(conn: sqlite3.Connection, name: str) -> int | None:
    "The position stored under ``name``; None when there is none."
    row = conn.execute("SELECT position FROM evt_checkpoints WHERE name = ?", (name,)).fetchone()
    return None if row is None else row[0]


def save(conn: sqlite3.Connection, name: str, kind: str, position: int, command: str | None = None) -> None:
    """Move the checkpoint ``name`` forward to ``position`` (in the caller's transaction).

    A new checkpoint is made with ``kind``; ``command`` (a consumer's) is kept when None.
    CheckpointBehind (a Conflict) if ``position`` is below the stored one.
    """
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise ValueError(f"a checkpoint is a position >= 0, not {position!r}")
    row = conn.execute(
        "INSERT INTO evt_checkpoints (name, kind, position, command, last_run_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, last_run_at = excluded.last_run_at, "
        "command = coalesce(excluded.command, command) WHERE excluded.position >= evt_checkpoints.position "
        "RETURNING position",
        (name, kind, position, command, now()),
    ).fetchone()
    if row is None:
        stored = load(conn, name)
        raise CheckpointBehind(f"checkpoint {name!r} is at position {stored}; it cannot move back to {position}")


def reset(conn: sqlite3.Connection, name: str, kind: str, position: int) -> None:
    "Set the checkpoint ``name`` to ``position``, forwards or backwards (an explicit reset)."
    conn.execute(
        "INSERT INTO evt_checkpoints (name, kind, position, last_run_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, last_run_at = excluded.last_run_at",
        (name, kind, position, now()),
    )


def delete(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM evt_checkpoints WHERE name = ?", (name,))
