"""``evt backup DEST``: a consistent, verified copy of the store while writers keep appending.

The copy is one read transaction on the source — a snapshot: in WAL mode writers keep
appending meanwhile, and none of their events is in the copy. SQLite's online backup API
copies the snapshot page for page in one step (``Connection.backup(pages=-1)`` inside
that transaction); measured against ``VACUUM INTO`` (``benchmarks/bench_backup.py``) it
takes about two thirds of the time and holds the writers up no more, it can run inside
the transaction the verification then reads in (``VACUUM INTO`` cannot), and the copy
stays a WAL store, as the store is (``VACUUM INTO`` writes a rollback-journal file).

The copy is built beside DEST as ``DEST.backing-up-<pid>`` and gets its name only once:

- the events in it are those of the source at the head it copied, row for row, compared
  in the same snapshot (every stored column, at every position);
- it verifies as ``evt verify`` verifies a store (``evt.ops.verify``): its hash chain,
  positions, revisions, append-only triggers and ``PRAGMA integrity_check``;
- it is synced to disk.

It is then linked to DEST (never over a file that appeared meanwhile) and the folder is
synced, so a killed or failed backup never leaves DEST; the next backup into that folder
removes the unfinished file (the process that built it is gone). The source is only read.
"""

from __future__ import annotations

import glob
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from ..errors import StoreUnavailable, UsageError, VerificationFailed
from ..log import files
from ..log.sqlite import connect, translate_errors, uri

if TYPE_CHECKING:
    from ..log.store import Store

MARKER = ".backing-up-"  # DEST.backing-up-<pid>: the copy being built and checked


class BackupFailed(StoreUnavailable):
    "The copy does not match the store it was taken from; no backup was written"


def backup(store: "Store", dest: str | os.PathLike) -> dict:
    """Copy ``store`` into the new file ``dest``, verified; return what was copied.

    The result: ``path``, ``head`` (the position of the last event copied), ``headHash``
    (its chain hash, hex), ``events``,
    ``bytes`` (the backup's size), ``seconds`` and ``verified``. ``dest`` must not exist
    (Conflict); its folder must (UsageError).
    """
    started = time.monotonic()
    dest = os.fspath(dest)
    _check_destination(dest)
    folder = os.path.dirname(os.path.abspath(dest))
    files.remove_abandoned(os.path.join(glob.escape(folder), "*"), MARKER)
    tmp = files.temporary_name(dest, MARKER)
    try:
        _create(tmp, store.path, dest)
        head, events = _copy_and_compare(store, tmp)
        head_hash = _verify_chain(tmp)
        files.publish_new(tmp, dest, "evt backup")  # synced, never over a file that appeared meanwhile
    finally:
        files.remove_sqlite_files(tmp)
    return {
        "path": dest,
        "head": head,
        "headHash": head_hash,
        "events": events,
        "bytes": os.path.getsize(dest),
        "seconds": round(time.monotonic() - started, 3),
        "verified": True,
    }


def _check_destination(dest: str) -> None:
    if os.path.isdir(dest):
        raise UsageError(f"{dest} is a folder: name the backup file (e.g. {os.path.join(dest, 'events.db')})")
    files.check_new(dest, "evt backup")


def _create(tmp: str, source: str, dest: str) -> None:
    "The empty file the copy goes into, with the store's permission bits."
    try:
        files.create_like(tmp, source)
    except OSError as e:
        raise StoreUnavailable(f"cannot create {dest}: {e.strerror or e}") from None


def _copy_and_compare(store: "Store", tmp: str) -> tuple[int, int]:
    """Copy one snapshot of the store into ``tmp`` and compare the events in both; (head, events).

    The source connection attaches the copy before its read transaction starts (ATTACH is
    refused inside one), so the comparison reads the source in the very snapshot copied.
    """
    source = connect(store.path, immutable=store.immutable, isolation_level=None, timeout=store.busy_timeout)
    try:
        with translate_errors(store.path):
            source.execute("ATTACH DATABASE ? AS backup", (uri(os.path.abspath(tmp)),))
            source.execute("BEGIN")
            try:
                events, head = source.execute("SELECT count(*), coalesce(max(position), 0) FROM main.events").fetchone()
                _copy(source, tmp)
                _compare(source, head, events)
            finally:
                source.execute("ROLLBACK")
        source.execute("DETACH DATABASE backup")
    finally:
        source.close()
    return head, events


def _copy(source: sqlite3.Connection, tmp: str) -> None:
    "The backup API, in one step: the pages of the source connection's snapshot (a WAL store stays one)."
    target = connect(tmp, isolation_level=None)
    try:
        with translate_errors(tmp):
            # A file nobody else sees yet: no journal; it is synced once, whole, when checked.
            target.execute("PRAGMA journal_mode = OFF")
            target.execute("PRAGMA synchronous = OFF")
            source.backup(target)
    finally:
        target.close()


def _compare(source: sqlite3.Connection, head: int, events: int) -> None:
    "The copy holds exactly the source's events: the same count and head, every stored column equal."
    copied, copied_head = source.execute("SELECT count(*), coalesce(max(position), 0) FROM backup.events").fetchone()
    if (copied, copied_head) != (events, head):
        raise BackupFailed(f"the copy holds {copied} events up to position {copied_head}, the store {events} up to {head}; no backup was written")
    columns = _stored_columns(source)
    same = " AND ".join(f"b.{c} IS m.{c}" for c in columns)
    equal = source.execute(
        f"SELECT count(*) FROM backup.events AS b JOIN main.events AS m ON m.position = b.position WHERE {same}"
    ).fetchone()[0]
    if equal != events:
        raise BackupFailed(f"{events - equal} events of the copy differ from the store's; no backup was written")


def _stored_columns(conn: sqlite3.Connection) -> list[str]:
    "The stored (not generated) columns of the events table, quoted."
    rows = conn.execute("PRAGMA main.table_xinfo(events)").fetchall()
    return ['"' + row[1].replace('"', '""') + '"' for row in rows if row[6] == 0]


def _verify_chain(tmp: str) -> str | None:
    """The copy's hash chain, positions, revisions, triggers and ``PRAGMA integrity_check``
    (``evt.ops.verify``); its head hash. A copy equal to its store that does not verify
    means the store does not: VerificationFailed (exit 8), no backup."""
    from .verify import verify

    report = verify(tmp)
    if not report.ok:
        raise VerificationFailed(f"{report.message()} (in the copy, which holds the store's events: run evt verify); no backup was written")
    return report.head_hash
