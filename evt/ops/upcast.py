"""The checked migration of what is stored: ``evt upcast status`` and ``evt upcast run``.

Upcasters (``evt.model.upcasters``) apply to reads on the fly; this module migrates the
stored log itself:

- ``status(store)``: per stored type, its versions and counts, the latest version, and
  how many events a migration would change;
- ``dry_run(store, sample=3)``: runs every upcaster over every event it applies to
  (so a failing upcaster shows up here), changing nothing; before/after of a sample;
- ``migrate_copy(store, out)``: a copy-transform into a new store file;
- ``migrate_in_place(store)``: a backup, then one transaction that rewrites the
  upcast events, records the run in ``evt_upcast_runs`` and restores the append-only
  triggers.

Both migrations verify the result before committing it (same count, same ids,
positions, streams, revisions, timestamps and metadata, every event at its latest
version, ``PRAGMA integrity_check``); a failing upcaster or check changes nothing.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..log import chain, files, migrations
from ..log.envelope import dumps
from ..log.filters import flat, pairs_values
from ..log.keys import Encryptor
from ..log.sqlite import connect, translate_errors, uri
from ..log.store import COLUMNS, row_to_event
from ..log.timestamps import now
from ..model.registry import Model
from ..model.upcasters import Crypt, Upcaster
from .rewrite import RewriteRefused, check_append_only, check_integrity, lifted_triggers, rewriting

if TYPE_CHECKING:
    from ..log.store import Store

# Rows are read, transformed and written in batches of this many.
BATCH = 5000

SNAPSHOT_MARK = "snapshot"  # tables named like this hold derived state: not copied

EVENT_CHECKS = (
    "m.id = s.id AND m.stream = s.stream AND m.revision = s.revision AND m.timestamp = s.timestamp "
    "AND m.source IS s.source AND m.correlation_id IS s.correlation_id "
    "AND m.causation_id IS s.causation_id AND m.metadata = s.metadata"
)


# -- status and plans --------------------------------------------------------------------


def _stored_pairs(conn: sqlite3.Connection, schema: str = "main") -> list[tuple[str, int, int]]:
    return conn.execute(
        f"SELECT type, version, count(*) FROM {schema}.events GROUP BY type, version ORDER BY type, version"
    ).fetchall()


def _in_pairs(pairs, column_prefix: str = "") -> tuple[str, list]:
    "SQL: the row's (type, version) is one of ``pairs`` ('0' when there are none)."
    if not pairs:
        return "0", []
    return f"({column_prefix}type, {column_prefix}version) IN ({pairs_values(pairs)})", flat(pairs)


def _upcaster_of(store: "Store") -> Upcaster:
    return Upcaster(store.model or Model())


def _crypt(store: "Store", upcaster: Upcaster, conn: sqlite3.Connection | None) -> Crypt:
    "Personal fields decrypted for the upcasters and (with ``conn``, in its write transaction) encrypted again."
    return Crypt(upcaster.model, store.decryptor(), Encryptor(store.keys, conn) if conn is not None else None)


def status(store: "Store") -> list[dict]:
    """One object per stored type: ``type``, ``versions`` (stored version -> count),
    ``latest`` (the version its events read as) and ``pending`` (events a migration changes).

    For a type an upcaster renames, ``latest`` is the version of the renamed type.
    """
    upcaster = _upcaster_of(store)
    model = upcaster.model
    with translate_errors(store.path):
        pairs = _stored_pairs(store.conn)
    types: dict[str, dict] = {}
    for type_, version, count in pairs:
        entry = types.setdefault(type_, {"type": type_, "versions": {}, "latest": 0, "pending": 0})
        entry["versions"][str(version)] = count
        entry["latest"] = max(entry["latest"], model.latest(type_, version)[1])
        if (type_, version) in upcaster.chains:
            entry["pending"] += count
    return list(types.values())


def changes(upcaster: Upcaster, conn: sqlite3.Connection, schema: str = "main") -> list[dict]:
    "What a migration does: per stored (type, version) an upcaster applies to, its target and count."
    result = []
    for type_, version, count in _stored_pairs(conn, schema):
        if (type_, version) in upcaster.chains:
            to_type, to_version = upcaster.target(type_, version)
            result.append({"type": type_, "version": version, "toType": to_type, "toVersion": to_version, "count": count})
    return result


def _pending_pairs(found: list[dict]) -> list[tuple[str, int]]:
    return [(c["type"], c["version"]) for c in found]


# -- dry run ---------------------------------------------------------------------------


def dry_run(store: "Store", sample: int = 3) -> dict:
    """What a migration would change, changing nothing.

    Every upcaster runs over every event it applies to, so an upcaster that would fail
    the migration fails here (UpcastFailed, with the position). ``sample`` events (spread
    over the kinds of change) are shown before and after.
    """
    upcaster = _upcaster_of(store)
    conn = store.conn
    with translate_errors(store.path):
        conn.execute("BEGIN")  # one snapshot for counts, checks and sample
        try:
            found = changes(upcaster, conn)
            total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            crypt = _crypt(store, upcaster, None)
            for rows in _pending_batches(conn, "main", _pending_pairs(found)):
                upcaster.rows(rows, crypt)
            shown = _sample(conn, upcaster, found, sample, crypt)
        finally:
            conn.execute("ROLLBACK")
    upcast = sum(c["count"] for c in found)
    return {
        "mode": "dry-run",
        "store": store.path,
        "events": total,
        "upcast": upcast,
        "unchanged": total - upcast,
        "changes": found,
        "sample": shown,
    }


def _sample(conn: sqlite3.Connection, upcaster: Upcaster, found: list[dict], size: int, crypt: Crypt) -> list[dict]:
    "Up to ``size`` events, the first of each kind of change in turn, before and after."
    per_kind = [
        [row[0] for row in conn.execute(
            "SELECT position FROM events WHERE type = ? AND version = ? ORDER BY position LIMIT ?",
            (c["type"], c["version"], size),
        )]
        for c in found
    ]
    positions: list[int] = []
    while len(positions) < size and any(per_kind):
        for kind in per_kind:
            if kind and len(positions) < size:
                positions.append(kind.pop(0))
    shown = []
    for position in sorted(positions):
        row = crypt.decrypt.row(conn.execute(f"SELECT {COLUMNS} FROM events WHERE position = ?", (position,)).fetchone())
        before = row_to_event(row)
        [after_row] = upcaster.rows([row])
        shown.append({"position": position, "before": before.to_dict(), "after": row_to_event(after_row).to_dict()})
    return shown


def _pending_batches(conn: sqlite3.Connection, schema: str, pairs: list[tuple[str, int]]) -> Iterator[list[tuple]]:
    """The stored rows an upcaster applies to, in position order, in batches.

    Each batch is its own query (keyset on position), so the caller may write to the
    same table between batches.
    """
    if not pairs:
        return
    condition, params = _in_pairs(pairs)
    sql = f"SELECT {COLUMNS} FROM {schema}.events WHERE position > ? AND {condition} ORDER BY position LIMIT {BATCH}"
    after = 0
    while True:
        rows = conn.execute(sql, [after, *params]).fetchall()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


# -- verification ------------------------------------------------------------------------


def verify(conn: sqlite3.Connection, upcaster: Upcaster, before: str, found: list[dict], schema: str = "main") -> None:
    """Check a migrated ``{schema}.events`` against the events as they were (table ``before``).

    Same count; same id, stream, revision, timestamp, source, correlation, causation and
    metadata at every position; unchanged data where no upcaster applies; every upcast
    event at the latest (type, version); ``integrity_check`` ok. RewriteRefused otherwise.
    """
    pairs = _pending_pairs(found)
    count = conn.execute(f"SELECT count(*) FROM {schema}.events").fetchone()[0]
    expected = conn.execute(f"SELECT count(*) FROM {before}").fetchone()[0]
    if count != expected:
        raise RewriteRefused(f"the migrated log has {count} events, the source {expected}")
    pending, params = _in_pairs(pairs, "s.")
    same = conn.execute(
        f"SELECT count(*) FROM {schema}.events AS m JOIN {before} AS s ON s.position = m.position "
        f"WHERE {EVENT_CHECKS} AND ({pending} OR (m.type = s.type AND m.version = s.version AND m.data = s.data))",
        params,
    ).fetchone()[0]
    if same != count:
        raise RewriteRefused(f"{_events(count - same)} differ from the source in more than type, version and data")
    left, params = _in_pairs(pairs)
    if conn.execute(f"SELECT count(*) FROM {schema}.events WHERE {left}", params).fetchone()[0]:
        raise RewriteRefused("some events are not at their latest version")
    pending, params = _in_pairs(pairs, "s.")
    moved = conn.execute(
        f"SELECT s.type, s.version, m.type, m.version, count(*) FROM {schema}.events AS m "
        f"JOIN {before} AS s ON s.position = m.position WHERE {pending} GROUP BY 1, 2, 3, 4",
        params,
    ).fetchall()
    for type_, version, to_type, to_version, n in moved:
        if (to_type, to_version) != upcaster.target(type_, version):
            raise RewriteRefused(f"{_events(n)} of {type_} v{version} became {to_type} v{to_version}, not {'{} v{}'.format(*upcaster.target(type_, version))}")
    check_integrity(conn, schema)
    check_append_only(conn, schema)


def _events(n: int) -> str:
    return "1 event" if n == 1 else f"{n} events"


# -- migration into a new file ----------------------------------------------------------


def migrate_copy(store: "Store", out: str | os.PathLike) -> dict:
    """Copy the store into a new file ``out`` with every event at its latest version.

    Ids, positions, streams, revisions, timestamps and metadata are kept; the other evt
    tables (checkpoints, dead letters, projection tables, earlier upcast runs) are copied
    as they are, except snapshots (derived state, rebuilt on demand). The run is
    recorded in the new file's ``evt_upcast_runs``. ``out`` must not exist (Conflict);
    the source is only read. Nothing is left behind when anything fails.
    """
    out = os.fspath(out)
    files.check_new(out, "evt upcast run --out")
    upcaster = _upcaster_of(store)
    files.remove_abandoned(glob.escape(out))
    tmp = files.temporary_name(out)
    try:
        result = _build_copy(store, upcaster, tmp, out)
        files.publish_new(tmp, out, "evt upcast run --out")
    finally:
        files.remove_sqlite_files(tmp)
    return result


def _build_copy(store: "Store", upcaster: Upcaster, tmp: str, out: str) -> dict:
    files.create_like(tmp, store.path)  # a private store gives a private copy
    conn = connect(tmp, isolation_level=None)
    try:
        with translate_errors(tmp):
            # A new file nobody else sees: no journal; a failure deletes the file.
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("ATTACH DATABASE ? AS src", (uri(os.path.abspath(store.path)),))
            conn.execute("BEGIN")
            migrations.apply_migrations(conn, 0, now())
            found = changes(upcaster, conn, "src")
            _copy_tables(conn)  # first: subject keys kept in the store are there for the upcast events
            _copy_events(conn, upcaster, _pending_pairs(found), _crypt(store, upcaster, conn))
            total = conn.execute("SELECT count(*) FROM src.events").fetchone()[0]
            result = _result("copy", found, total, source=store.path, out=out)
            _record_run(conn, result, upcaster, found)
            verify(conn, upcaster, "src.events", found)
            conn.execute("COMMIT")
            conn.execute("DETACH DATABASE src")
            conn.execute("PRAGMA journal_mode = WAL")
        return result
    finally:
        conn.close()


INSERT = f"INSERT INTO main.events ({COLUMNS}) VALUES ({', '.join('?' * len(COLUMNS.split(',')))})"


def _copy_events(conn: sqlite3.Connection, upcaster: Upcaster, pairs: list[tuple[str, int]], crypt: Crypt) -> None:
    """Events no upcaster applies to are copied by SQLite itself (with their hashes); the
    others go through Python. The hash chain is then computed again from the first upcast
    event on (its data changed, so did its hash and every one after it)."""
    condition, params = _in_pairs(pairs)
    conn.execute(
        f"INSERT INTO main.events ({COLUMNS}, hash) SELECT {COLUMNS}, hash FROM src.events WHERE NOT {condition} ORDER BY position",
        params,
    )
    first = None
    for rows in _pending_batches(conn, "src", pairs):
        first = rows[0][0] if first is None else first
        conn.executemany(INSERT, upcaster.rows(rows, crypt))
    if first is not None:
        migrations.drop_append_only_triggers(conn)
        chain.rehash(conn, first)
        migrations.create_append_only_triggers(conn)


def _copy_tables(conn: sqlite3.Connection) -> None:
    """Every other table of the source, rows as they are; snapshots are left empty.

    Virtual tables (and their shadow tables) are not copied: rebuild them from the data.

    Tables the new store lacks (a projection's own tables) are created from the
    source's definition, with their indexes, triggers and views.
    """
    conn.execute("DELETE FROM main.evt_migrations")  # the source's history, not today's
    conn.execute("INSERT INTO main.evt_migrations SELECT name, applied_at FROM src.evt_migrations")
    existing = {row[0] for row in conn.execute("SELECT name FROM main.sqlite_schema WHERE type = 'table'")}
    tables = conn.execute(
        "SELECT name, sql FROM src.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT IN ('events', 'evt_migrations') ORDER BY rowid"
    ).fetchall()
    virtual = [name for name, sql in tables if sql.upper().startswith("CREATE VIRTUAL")]
    created = []
    for name, sql in tables:
        if any(name == v or name.startswith(v + "_") for v in virtual):
            continue  # virtual tables (full-text indexes) and their shadow tables: not copied
        if name not in existing:
            conn.execute(sql)
            created.append(name)
        else:
            conn.execute(f"DELETE FROM main.{_quote(name)}")  # rows a migration seeded: the source's replace them
        if SNAPSHOT_MARK in name.lower():
            continue
        columns = _common_columns(conn, name)
        if columns:
            conn.execute(f"INSERT INTO main.{_quote(name)} ({columns}) SELECT {columns} FROM src.{_quote(name)}")
    for (sql,) in conn.execute(
        "SELECT sql FROM src.sqlite_schema WHERE type IN ('index', 'trigger', 'view') AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' for _ in created) or 'NULL'}) ORDER BY rowid",
        created,
    ).fetchall():
        conn.execute(sql)


def _common_columns(conn: sqlite3.Connection, table: str) -> str:
    "The stored (not generated) columns both copies of a table have, as a SQL list."

    def stored(schema: str) -> list[str]:
        rows = conn.execute(f"PRAGMA {schema}.table_xinfo({_quote(table)})").fetchall()
        return [row[1] for row in rows if row[6] == 0]

    theirs = set(stored("src"))
    return ", ".join(_quote(c) for c in stored("main") if c in theirs)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'



# -- migration in place -------------------------------------------------------------------


def migrate_in_place(store: "Store", on_backup: Callable[[str], None] | None = None) -> dict:
    """Rewrite the upcast events in the store itself.

    A checked rewrite (``evt.ops.rewrite``): with the write lock held, a consistent backup
    next to the store (``on_backup(path)`` is told where it goes), then one transaction
    that drops the append-only triggers, rewrites the rows, recreates the triggers,
    records the run in ``evt_upcast_runs`` and verifies the result against the events as
    they were. Any failure rolls it all back and removes the unfinished backup. With
    nothing to upcast, nothing is done (no backup, no record).
    """
    upcaster = _upcaster_of(store)
    with rewriting(store, on_backup) as run:
        conn = run.conn
        found = changes(upcaster, conn)
        total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        if not found:
            return _result("in-place", found, total, store=store.path, backup=None)
        result = _result("in-place", found, total, store=store.path, backup=run.backup())
        _rewrite(conn, upcaster, found, _crypt(store, upcaster, conn))
        _record_run(conn, result, upcaster, found)
        verify(conn, upcaster, "temp.evt_upcast_before", found)
        conn.execute("DROP TABLE temp.evt_upcast_before")
    return result


def _rewrite(conn: sqlite3.Connection, upcaster: Upcaster, found: list[dict], crypt: Crypt) -> None:
    conn.execute(f"CREATE TEMP TABLE evt_upcast_before AS SELECT {COLUMNS} FROM main.events")
    update = "UPDATE main.events SET type = ?, version = ?, data = ? WHERE position = ?"
    first = None
    with lifted_triggers(conn):
        for rows in _pending_batches(conn, "main", _pending_pairs(found)):
            first = rows[0][0] if first is None else first
            conn.executemany(update, [(r[4], r[5], r[10], r[0]) for r in upcaster.rows(rows, crypt)])
        if first is not None:  # the chain from the first rewritten event on: its hash, and every one after it
            chain.rehash(conn, first)


# -- results and the audit record --------------------------------------------------------


def _result(mode: str, found: list[dict], total: int, **where: Any) -> dict:
    upcast = sum(c["count"] for c in found)
    return {"mode": mode, **where, "events": total, "upcast": upcast, "unchanged": total - upcast, "changes": found, "verified": True}


def _record_run(conn: sqlite3.Connection, result: dict, upcaster: Upcaster, found: list[dict]) -> None:
    "The audit record: when, how, which upcasters (with the functions), how many events."
    upcasters = []
    for change in found:
        for step in upcaster.chains[(change["type"], change["version"])]:
            upcasters.append(
                {
                    "type": step.type,
                    "version": step.version,
                    "toType": step.to_type,
                    "toVersion": step.to_version,
                    "function": f"{getattr(step.fn, '__module__', '?')}.{getattr(step.fn, '__qualname__', repr(step.fn))}",
                }
            )
    unique = list({dumps(u): u for u in upcasters}.values())
    conn.execute(
        "INSERT INTO main.evt_upcast_runs (ran_at, mode, source, backup, upcasters, changes, events, upcast) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now(),
            result["mode"],
            os.path.abspath(result.get("source") or result.get("store")),
            os.path.abspath(result["backup"]) if result.get("backup") else None,
            dumps(unique),
            dumps(found),
            result["events"],
            result["upcast"],
        ),
    )
