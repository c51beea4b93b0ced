"""Rewriting stored events in place, checked: what ``evt upcast run --in-place`` and
``evt redact`` share.

``rewriting(store)`` holds the write lock for one transaction. Inside it, ``backup()``
takes a consistent copy of the store next to it (``<db>.bak-<UTC time>``, under a
temporary name), and ``lifted_triggers(conn)`` drops the append-only triggers for the
rewrite and recreates them. The transaction commits only with the triggers back; the
backup gets its name only once it has committed, so a backup always belongs to a rewrite
that happened. Any failure rolls the rewrite back and removes the unfinished backup. A
rewrite that needs no backup (nothing to change) never asks for one.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import StoreUnavailable
from ..log import files, migrations
from ..log.sqlite import connect, translate_errors
from ..log.timestamps import now

if TYPE_CHECKING:
    from ..log.store import Store

BACKUP_MARK = ".bak-"
UNFINISHED_MARK = ".tmp-"

# Where committed rewrites name their backups (absolute paths): a killed run's unfinished
# backup that one of these names belongs to a rewrite that committed.
RECORDED_BACKUPS = (
    "SELECT backup FROM evt_upcast_runs WHERE backup IS NOT NULL "
    "UNION SELECT backup FROM evt_redactions WHERE backup IS NOT NULL"
)


class RewriteRefused(StoreUnavailable):
    """A rewritten store does not match its source; the rewrite was rolled back (exit 6;
    not ``evt.errors.VerificationFailed``, exit 8, which is a store that fails evt verify)"""


class Rewrite:
    "One rewrite in progress: its store, and the backup once taken."

    def __init__(self, store: "Store", on_backup: Callable[[str], None] | None):
        self.store = store
        self.conn = store.conn
        self.on_backup = on_backup
        self.path: str | None = None  # the backup's name, once taken
        self.unfinished: str | None = None  # the file it is in until the rewrite commits

    def backup(self) -> str:
        "Take the backup (``on_backup(path)`` is told where it goes) and return its name."
        self.path, self.unfinished = take_backup(self.store)
        if self.on_backup is not None:
            self.on_backup(self.path)
        return self.path


@contextmanager
def rewriting(store: "Store", on_backup: Callable[[str], None] | None = None) -> Iterator[Rewrite]:
    """One checked rewrite of ``store`` in place (see the module's docstring)."""
    rewrite = Rewrite(store, on_backup)
    try:
        with translate_errors(store.path), store.transaction():
            settle_abandoned_backups(store)
            yield rewrite
            if rewrite.unfinished is not None:
                check_append_only(rewrite.conn)
    except BaseException:
        if rewrite.unfinished is not None:
            files.remove_sqlite_files(rewrite.unfinished)
        raise
    if rewrite.unfinished is not None:
        name_backup(rewrite.unfinished, rewrite.path)


@contextmanager
def lifted_triggers(conn: sqlite3.Connection) -> Iterator[None]:
    "The append-only triggers dropped for a rewrite in the caller's transaction, then recreated."
    migrations.drop_append_only_triggers(conn)
    yield
    migrations.create_append_only_triggers(conn)


def check_append_only(conn: sqlite3.Connection, schema: str = "main") -> None:
    triggers = conn.execute(
        f"SELECT count(*) FROM {schema}.sqlite_schema WHERE type = 'trigger' AND name LIKE 'events_append_only_%'"
    ).fetchone()[0]
    if triggers != 2:
        raise RewriteRefused("the append-only triggers are missing")


def check_integrity(conn: sqlite3.Connection, schema: str = "main") -> None:
    problems = [row[0] for row in conn.execute(f"PRAGMA {schema}.integrity_check")]
    if problems != ["ok"]:
        raise RewriteRefused(f"integrity_check: {'; '.join(problems[:3])}")


# -- backups ------------------------------------------------------------------------------


def take_backup(store: "Store") -> tuple[str, str]:
    """A consistent copy of the store, synced to disk, under a temporary name next to it.

    Returns (the name it will have, ``<db>.bak-<UTC time>``; the file it is in now). Taken
    through a second connection while this one holds the write lock, so it is exactly the
    state the rewrite starts from. It has the store's permission bits.
    """
    stamp = now().replace("-", "").replace(":", "").split(".")[0] + "Z"
    path = f"{store.path}{BACKUP_MARK}{stamp}"
    n = 1
    while os.path.lexists(path):
        n += 1
        path = f"{store.path}{BACKUP_MARK}{stamp}-{n}"
    tmp = files.temporary_name(path, UNFINISHED_MARK)  # a killed run leaves no file under a backup's name
    files.create_like(tmp, store.path)
    source = connect(store.path)
    target = connect(tmp)
    try:
        with translate_errors(path):
            source.backup(target)  # page for page: a WAL store stays one
            target.close()
            files.sync_file(tmp)
    except BaseException:
        target.close()
        files.remove_sqlite_files(tmp)
        raise
    finally:
        source.close()
    return path, tmp


def name_backup(unfinished: str, backup: str) -> None:
    "Give a committed rewrite's backup its name (synced); it is the only copy of the old log, so it is kept whatever happens."
    try:
        files.publish(unfinished, backup)
    except OSError as e:
        raise StoreUnavailable(
            f"the store was rewritten, but its backup could not be named {backup} ({e.strerror or e}); it is {unfinished}"
        ) from None
    files.remove_sqlite_files(unfinished)


def settle_abandoned_backups(store: "Store") -> None:
    """The unfinished backups of in-place rewrites that were killed (their process is gone).

    One whose rewrite committed (its audit record names it: the run was killed just
    before naming it) gets its name; the others belong to rewrites that never happened
    (the store is as it was) and are removed.
    """
    recorded = {row[0] for row in store.conn.execute(RECORDED_BACKUPS)}
    for path in glob.glob(glob.escape(store.path) + BACKUP_MARK + "*" + glob.escape(UNFINISHED_MARK) + "*"):
        final, _, pid = path.rpartition(UNFINISHED_MARK)
        if not pid.isdigit() or files.process_alive(int(pid)) and int(pid) != os.getpid():
            continue
        if os.path.abspath(final) in recorded and not os.path.lexists(final):
            name_backup(path, final)
        else:
            files.remove_sqlite_files(path)
