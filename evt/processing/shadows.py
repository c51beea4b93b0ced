"""Rebuilding a projection without downtime: shadow tables, then one short swap.

``evt replay NAME --rebuild --shadow`` builds the projection from the start into
*shadow* tables beside the live ones, in the same file — ``order_summaries`` is built as
``evt_shadow_order_summaries`` — while readers keep reading the live tables and the
projection's running replays keep them up to date. The projection's own code runs
unchanged, with its tables' names mapped:

- a SQL projection's statements are rewritten token by token (``evt.processing.sqlnames``)
  and checked: on a scratch database, each rewritten statement must read and write what
  the original does, under the new names (else the shadow is refused, naming the
  statement: a column or function named like one of its tables);
- a Python projection's ``db`` maps its ``tables`` in ``db[...]``, ``db.table``,
  ``db.execute`` and ``db.query``;
- and, as the log's guard does for everything projection code runs, an authorizer
  refuses any reach for the live tables while the shadow is built (``db.conn`` used
  directly, say): the run stops rather than mix the two.

The shadow is built in batches like any replay (the write lock is held a fraction of a
second at a time), catches up to the head, and then, in one transaction, the live
tables are renamed away (``evt_retired_…``) and the shadow's take their names; the
projection's views and triggers are made again over the new tables, its checkpoint and
dead letters become the shadow's. A reader sees the old tables or the new, never an
empty or half-built one; a rename costs no copy, so the swap is as short for a million
rows as for ten. The retired tables are then emptied and dropped in batches.

Before the swap, what changes: rows per table before and after, and with ``diff`` the
rows that differ — by primary key, or whole rows where there is none. ``swap=False``
keeps the shadow for inspection; ``swap_kept`` later catches it up and swaps it in.
Killed at any moment, the live tables are untouched (or already swapped, whole); the
next shadow rebuild drops what was left and starts afresh.
"""

from __future__ import annotations

import hashlib
import inspect
import sqlite3
import sys
from typing import Any, Callable, Iterator

from ..errors import StoreUnavailable, UsageError
from ..log import checkpoints
from ..log.sqlite import translate_errors
from ..log.store import row_to_event
from ..log.timestamps import now
from .guard import ON_TABLE_ACTIONS, Guard, one_line_statement
from .runner import BATCH_SIZE, Runner
from .sqlnames import fold, names_in, quote, rename

SHADOW = "evt_shadow_"
SHADOW_AGAIN = "evt_shadow2_"  # an index or trigger name taken by the live tables' own (from an earlier swap)
RETIRED = "evt_retired_"
DROP_BATCH = 5000  # rows deleted per transaction when retired or abandoned tables are emptied

STATE_TABLE = """CREATE TABLE IF NOT EXISTS evt_shadows (
    projection TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    started_at TEXT NOT NULL,
    built_at TEXT
)"""
BUILDING = "building"
KEPT = "kept"


class ShadowRefused(UsageError):
    "A projection cannot be rebuilt in a shadow (its statements, or the state of the shadow)"


def shadow_name(projection: str) -> str:
    "The name a shadow's checkpoint and dead letters are kept under."
    return f"{projection} (shadow)"


# -- which names map to which ----------------------------------------------------------


class Names:
    """The projection's objects and their names in the shadow.

    ``tables`` and ``views`` are the live names the projection owns; ``mapping`` maps each
    (folded) to the shadow's name: a table or view ``X`` to ``evt_shadow_X``, and an index
    or trigger name the live file already uses to one it does not.
    """

    def __init__(self, tables: list[str], views: list[str], mapping: dict[str, str]):
        self.tables = tables
        self.views = views
        self.mapping = mapping
        tabular = {fold(n) for n in tables + views}
        self.objects = {k: v for k, v in mapping.items() if k not in tabular}  # the indexes' and triggers'

    def shadow(self, name: str) -> str:
        return self.mapping.get(fold(name), name)

    def live(self) -> set[str]:
        "The live names (folded) of the projection's tables and views."
        return {fold(n) for n in self.tables + self.views}

    def shadows(self) -> set[str]:
        "The shadow's names (folded) of its tables and views."
        return {fold(self.shadow(n)) for n in self.tables + self.views}


def owned(projection) -> tuple[list[str], list[str], list[str]]:
    "The projection's tables, views, and the indexes and triggers its setup makes (SQL: found on a scratch database)."
    if projection.kind != "sql":
        return list(projection.owned_tables()), [], []
    conn = sqlite3.connect(":memory:")
    try:
        projection.setup_in_memory(conn)
        rows = conn.execute("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").fetchall()
    finally:
        conn.close()
    by_type: dict[str, list[str]] = {}
    for type_, name in rows:
        by_type.setdefault(type_, []).append(name)
    return by_type.get("table", []), by_type.get("view", []), by_type.get("index", []) + by_type.get("trigger", [])


def names_for(conn: sqlite3.Connection, projection) -> Names:
    "The names of a new shadow in this file (after ``clean``: no shadow of the projection is left)."
    tables, views, others = owned(projection)
    schema = conn.execute("SELECT type, name, tbl_name FROM sqlite_schema").fetchall()
    in_use = {fold(name) for _, name, _ in schema}
    live_tables = {fold(t) for t in tables}
    others += [name for type_, name, table in schema if type_ in ("index", "trigger") and fold(table) in live_tables and not name.startswith("sqlite_")]
    mapping = {fold(name): SHADOW + name for name in tables + views}
    taken = in_use | {fold(n) for n in mapping.values()}
    for name in others:
        if fold(name) not in in_use or fold(name) in mapping:
            continue
        base = _base(name)
        free = next(c for c in (SHADOW + base, SHADOW_AGAIN + base, base, *(f"{SHADOW}{n}_{base}" for n in range(2, 10**6))) if fold(c) not in taken)
        mapping[fold(name)] = free
        taken.add(fold(free))
    return Names(tables, views, mapping)


def _base(name: str) -> str:
    "An index or trigger name without the prefix an earlier swap left on it."
    for prefix in (SHADOW, SHADOW_AGAIN):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def fingerprint(projection) -> str:
    "What the projection does, as a digest: a kept shadow is swapped in only by the code that built it."
    parts: list[str] = [projection.kind]
    if projection.kind == "sql":
        parts += projection.setup_statements
        parts += [f"{glob}\0{statement}" for glob, statement in projection.handlers]
    else:
        declared = projection.declared
        parts += list(projection.owned_tables())
        for glob, fn in declared.handlers + ([("setup", declared.setup_fn)] if declared.setup_fn else []):
            try:
                source = inspect.getsource(fn)
            except (OSError, TypeError):
                source = getattr(fn, "__qualname__", repr(fn))
            parts.append(f"{glob}\0{source}")
    return hashlib.sha256("\0\0".join(parts).encode()).hexdigest()


# -- checking the rewritten statements ------------------------------------------------------


def check_statements(projection, names: Names) -> None:
    """ShadowRefused unless each rewritten statement of a SQL projection reads and writes what
    the original does, under the shadow's names, and its setup makes the same columns
    (checked with an authorizer on scratch databases)."""
    if projection.kind != "sql":
        return
    from ..log import migrations

    def run(statements: list[str], setup: list[str], tables: list[str]) -> tuple[list, list]:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        seen: list[tuple] = []
        conn.set_authorizer(lambda *args: seen.append(args) or sqlite3.SQLITE_OK)
        try:
            migrations.apply_migrations(conn, 0, "")
            found = []
            for statement, params in [(s, None) for s in setup] + [("EXPLAIN " + s, _PARAMS) for s in statements]:
                del seen[:]
                try:
                    conn.execute(statement, params or ())
                    error = None
                except sqlite3.Error as e:
                    error = str(e)
                found.append((tuple(seen), error))
            conn.set_authorizer(None)
            columns = [conn.execute(f"SELECT name, type, pk FROM pragma_table_info({quote(t)})").fetchall() for t in tables]
            return found, columns
        finally:
            conn.close()

    statements = [statement for _, statement in projection.handlers]
    mapping = names.mapping
    tabular = names.tables + names.views
    before, columns = run(statements, projection.setup_statements, tabular)
    after, shadow_columns = run([rename(s, mapping) for s in statements], [rename(s, mapping) for s in projection.setup_statements], [names.shadow(t) for t in tabular])
    for original, (seen, error), (seen_after, error_after) in zip(projection.setup_statements + statements, before, after):
        expected = tuple(_mapped_args(args, mapping) for args in seen)
        if expected != seen_after or (error is None) != (error_after is None):
            raise _refused(projection, names, original)
    for table, mine, theirs in zip(tabular, columns, shadow_columns):
        if mine != theirs:  # a column renamed with a table of its name
            making = [s for s in projection.setup_statements if fold(table) in names_in(s)]
            raise _refused(projection, names, making[0] if making else table)


def _refused(projection, names: Names, what: str) -> ShadowRefused:
    return ShadowRefused(
        f"projection {projection.name}: cannot be rebuilt in a shadow: with its tables renamed, {one_line_statement(what)!r} would do "
        f"something else (a column, alias or function named like one of its tables: {', '.join(names.tables + names.views)}?); "
        f"evt replay {projection.name} --rebuild rebuilds it in place"
    )


def _mapped_args(args: tuple, mapping: dict[str, str]) -> tuple:
    "An authorizer's arguments under the shadow's names: the names of tables, indexes and triggers, not of columns."
    action, arg1, arg2, database, source = args
    if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_UPDATE):
        return (action, _mapped(arg1, mapping), arg2, database, _mapped(source, mapping))
    return (action, _mapped(arg1, mapping), _mapped(arg2, mapping), database, _mapped(source, mapping))


_PARAMS = dict.fromkeys(("position", "stream", "revision", "id", "type", "version", "timestamp", "source", "correlationId", "causationId", "data", "metadata"))


def _mapped(value: Any, mapping: dict[str, str]) -> Any:
    "A name an authorizer was given, as it reads under the shadow's names (a table's automatic index too)."
    if not isinstance(value, str):
        return value
    if fold(value) in mapping:
        return mapping[fold(value)]
    if value.startswith(AUTOINDEX):
        table, _, number = value[len(AUTOINDEX):].rpartition("_")
        if fold(table) in mapping:
            return f"{AUTOINDEX}{mapping[fold(table)]}_{number}"
    return value


AUTOINDEX = "sqlite_autoindex_"


# -- the shadow, as a processor ------------------------------------------------------------


class ShadowGuard(Guard):
    """The log's guard, for code building a shadow: the shadow's tables are the projection's
    own (though named ``evt_…``), and its live tables are out of reach, read or written."""

    def __init__(self, names: Names):
        super().__init__()
        self.live_names = names.live()
        self.shadow_names = names.shadows()

    def _refused(self, action: int, arg1: str | None, arg2: str | None) -> str | None:
        table = arg2 if action in ON_TABLE_ACTIONS else arg1  # reads and updates name a column second
        if table is not None and fold(table) in self.live_names:
            verb = "read" if action == sqlite3.SQLITE_READ else "change"
            return f"{verb} {table}, a live table, while its shadow is built (db[...], db.execute and db.query reach the shadow's)"
        if table is not None and fold(table) in self.shadow_names:
            return None
        return Guard._refused(action, arg1, arg2)


class Shadow:
    "A projection run into its shadow: the same handlers, its tables under the shadow's names."

    def __init__(self, projection, names: Names):
        self.projection = projection
        self.names = names
        self.name = shadow_name(projection.name)
        self.kind = projection.kind
        self.target = projection.target
        self.policy = projection.policy
        self._plans: dict[str, list] = {}
        self._db = None
        self._db_conn = None
        if projection.kind == "sql":
            self.setup_statements = [rename(s, names.mapping) for s in projection.setup_statements]
            self.renamed = {s: rename(s, names.mapping) for _, s in projection.handlers}

    def make_guard(self) -> Guard:
        return ShadowGuard(self.names)

    def plan(self, type: str) -> list:
        plan = self._plans.get(type)
        if plan is None:
            plan = self.projection.plan(type)
            if self.kind == "sql":
                plan = [self.renamed[s] for s in plan]
            self._plans[type] = plan
        return plan

    def atomic(self, plan: list) -> bool:
        return self.projection.atomic(plan)

    def setup(self, conn: sqlite3.Connection) -> None:
        from ..errors import ConfigError

        if self.kind == "sql":
            for statement in self.setup_statements:
                try:
                    conn.execute(statement)
                except sqlite3.Error as e:
                    raise ConfigError(f"projection {self.projection.name}: setup failed in its shadow: {e} (in: {statement})") from None
            return
        setup_fn = self.projection.declared.setup_fn
        if setup_fn is not None:
            try:
                setup_fn(self.database(conn))
            except Exception as e:
                raise ConfigError(f"projection {self.projection.name}: setup failed in its shadow: {self.describe(e)}") from None

    def drop(self, conn: sqlite3.Connection) -> None:
        pass  # a new shadow starts from a file cleaned of any earlier one (``clean``)

    def database(self, conn: sqlite3.Connection):
        if self._db_conn is not conn:
            self._db = shadow_database(conn, self.names)
            self._db_conn = conn
        return self._db

    def apply_row(self, conn: sqlite3.Connection, plan: list, row: tuple) -> None:
        if self.kind == "sql":
            self.projection.apply_row(conn, plan, row)
        else:
            self.apply_event(conn, plan, row_to_event(row))

    def apply_event(self, conn: sqlite3.Connection, plan: list, event) -> None:
        if self.kind == "sql":
            self.projection.apply_event(conn, plan, event)
            return
        db = self.database(conn)
        for fn in plan:
            fn(db, event)

    def describe(self, error: BaseException) -> str:
        return self.projection.describe(error)

    def detail(self, error: BaseException) -> str | None:
        return self.projection.detail(error)


def shadow_database(conn: sqlite3.Connection, names: Names):
    "A sqlite-utils Database whose table names, and the SQL handlers give it, reach the shadow's tables."
    from sqlite_utils import Database

    mapping = names.mapping

    def renamed(sql: str) -> str:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        if caller.startswith("sqlite_utils"):  # its own SQL names the mapped tables already; an index it names may be taken
            return rename(sql, names.objects)
        return rename(sql, mapping)

    class ShadowDatabase(Database):
        def __getitem__(self, name: str):
            return super().__getitem__(mapping.get(fold(name), name))

        def table(self, name: str, **kwargs: Any):
            return super().table(mapping.get(fold(name), name), **kwargs)

        def view(self, name: str):
            return super().view(mapping.get(fold(name), name))

        def create_table(self, name: str, *args: Any, **kwargs: Any):
            return super().create_table(mapping.get(fold(name), name), *args, **kwargs)

        def create_view(self, name: str, sql: str, *args: Any, **kwargs: Any):
            return super().create_view(mapping.get(fold(name), name), rename(sql, mapping), *args, **kwargs)

        def execute(self, sql: str, parameters: Any = None):
            return super().execute(renamed(sql), parameters)

        def executescript(self, sql: str):
            return super().executescript(renamed(sql))

        def query(self, sql: str, params: Any = None):
            return super().query(renamed(sql), params)

    return ShadowDatabase(conn, execute_plugins=False, recursive_triggers=False)


# -- building, reporting, swapping ------------------------------------------------------------


class ShadowRebuild:
    """One projection's shadow on its target file: built (or a kept one caught up), then
    reported and swapped in (or kept). ``report`` is given each change object as it is made."""

    def __init__(self, store, target, projection, *, report: Callable[[dict], None], warn=None, batch_size: int = BATCH_SIZE, diff: bool = False):
        self.store = store
        self.target = target
        self.conn = target.conn
        self.projection = projection
        self.report = report
        self.warn = warn
        self.batch_size = batch_size
        self.diff = diff
        self.runner: Runner | None = None
        with translate_errors(target.path), target.transaction():
            self.conn.execute(STATE_TABLE)

    # -- state ------------------------------------------------------------------

    def state(self) -> tuple[str, str] | None:
        row = self.conn.execute("SELECT state, fingerprint FROM evt_shadows WHERE projection = ?", (self.projection.name,)).fetchone()
        return None if row is None else (row[0], row[1])

    def _set_state(self, state: str) -> None:
        self.conn.execute(
            "INSERT INTO evt_shadows (projection, state, fingerprint, started_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (projection) DO UPDATE SET state = excluded.state, built_at = CASE WHEN excluded.state = 'kept' THEN ? END",
            (self.projection.name, state, fingerprint(self.projection), now(), now()),
        )

    # -- the build ----------------------------------------------------------------

    def new(self) -> Runner:
        "Drop what an earlier shadow left, and start a new one (set up, at checkpoint 0): ``catch_up`` builds it."
        self.clean()
        with translate_errors(self.target.path):
            names = names_for(self.conn, self.projection)
        if not names.tables:
            raise ShadowRefused(f"projection {self.projection.name} has no tables to build in a shadow")
        check_statements(self.projection, names)
        with translate_errors(self.target.path), self.target.transaction():
            self._set_state(BUILDING)
        return self._start(names)

    def kept(self) -> Runner:
        "The shadow a run with ``--no-swap`` kept, started at its checkpoint: ``catch_up`` brings it to the head."
        state = self.state()
        name = self.projection.name
        if state is None or state[0] != KEPT:
            what = "was not finished (its build was stopped)" if state else "was kept"
            raise ShadowRefused(f"no shadow of {name} {what}: evt replay {name} --rebuild --shadow --no-swap builds one to keep")
        if state[1] != fingerprint(self.projection):
            raise ShadowRefused(f"projection {name} changed since its shadow was built: evt replay {name} --rebuild --shadow builds a new one")
        tables, views, _ = owned(self.projection)
        names = Names(tables, views, {fold(n): SHADOW + n for n in tables + views})
        missing = [n for n in tables + views if not self._exists(names.shadow(n))]
        if missing:
            raise ShadowRefused(f"the shadow of {name} is incomplete ({', '.join(names.shadow(n) for n in missing)} missing): evt replay {name} --rebuild --shadow builds a new one")
        return self._start(names)

    def _start(self, names: Names) -> Runner:
        self.names = names
        run = self.runner = Runner(self.store, self.target, Shadow(self.projection, names), batch_size=self.batch_size, warn=self.warn)
        run.summary.name = self.projection.name
        run.start()
        return run

    def keep(self) -> None:
        with translate_errors(self.target.path), self.target.transaction():
            self._set_state(KEPT)

    # -- what changes ---------------------------------------------------------------

    def changes(self) -> None:
        "Report each table's rows before and after (and with ``diff``, the rows that differ)."
        for table in self.names.tables:
            live, shadow = table, self.names.shadow(table)
            before = self._count(live)
            after = self._count(shadow)
            self.report({"projection": self.projection.name, "table": table, "before": before, "after": after})
        if self.diff:
            for table in self.names.tables:
                for change in table_diff(self.conn, table, self.names.shadow(table)):
                    self.report({"projection": self.projection.name, "table": table, **change})

    def _count(self, table: str) -> int | None:
        if not self._exists(table):
            return None
        with translate_errors(self.target.path):
            return self.conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]

    def _exists(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE", (name,)).fetchone() is not None

    # -- the swap ---------------------------------------------------------------------

    def swap(self) -> int:
        "Put the shadow in place of the live tables, in one short transaction; drop the old ones after. Returns the checkpoint."
        name, names, conn = self.projection.name, self.names, self.conn
        if self.runner is not None:
            self.runner.catch_up()  # what was appended while the changes were reported
        reverse = {fold(shadow): live for live, shadow in ((n, names.shadow(n)) for n in names.tables + names.views)}
        live_tables = {fold(t) for t in names.tables}
        shadow_tables = {fold(names.shadow(t)) for t in names.tables}
        ours = names.live() | names.shadows()
        try:
            with translate_errors(self.target.path), self.target.transaction():
                position = checkpoints.load(conn, shadow_name(name)) or 0
                recreate = []
                for type_, object_name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid").fetchall():
                    if type_ not in ("view", "trigger") or sql is None:
                        continue
                    if fold(object_name) in names.live() or (type_ == "trigger" and fold(table) in live_tables):
                        pass  # the live projection's own: replaced by the shadow's
                    elif fold(object_name) in names.shadows() or (type_ == "trigger" and fold(table) in shadow_tables):
                        recreate.append(rename(sql, {**reverse, fold(object_name): _base(reverse.get(fold(object_name), object_name))}))
                    elif names_in(sql) & ours:
                        recreate.append(sql)  # another's view or trigger over these tables: made again over the new ones
                    else:
                        continue
                    conn.execute(f"DROP {type_.upper()} {quote(object_name)}")
                conn.execute("PRAGMA legacy_alter_table = ON")  # what else names the live tables keeps naming them: the new ones
                try:
                    for table in names.tables:
                        if self._exists(table):
                            conn.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(RETIRED + table)}")
                finally:
                    conn.execute("PRAGMA legacy_alter_table = OFF")
                for table in names.tables:
                    conn.execute(f"ALTER TABLE {quote(names.shadow(table))} RENAME TO {quote(table)}")
                for sql in recreate:
                    conn.execute(sql)
                checkpoints.reset(conn, name, self.projection.kind, position)
                checkpoints.delete(conn, shadow_name(name))
                conn.execute("DELETE FROM evt_dead_letters WHERE consumer = ?", (name,))
                conn.execute("UPDATE evt_dead_letters SET consumer = ? WHERE consumer = ?", (name, shadow_name(name)))
                conn.execute("DELETE FROM evt_shadows WHERE projection = ?", (name,))
        except StoreUnavailable as e:
            raise StoreUnavailable(f"cannot swap in the shadow of {name}: {e}") from None
        self.drop_tables([RETIRED + t for t in names.tables])
        return position

    # -- cleaning up ------------------------------------------------------------------

    def clean(self) -> None:
        "Drop whatever an earlier shadow of this projection left: its tables, views, triggers, checkpoint, dead letters, retired tables."
        tables, views, _ = owned(self.projection)
        shadows = {fold(SHADOW + n) for n in tables + views}
        with translate_errors(self.target.path):
            schema = self.conn.execute("SELECT type, name, tbl_name FROM sqlite_schema").fetchall()
        leftovers = [(t, n) for t, n, table in schema if t in ("view", "trigger") and (fold(n) in shadows or fold(table) in shadows)]
        with translate_errors(self.target.path), self.target.transaction():
            for type_, object_name in leftovers:
                self.conn.execute(f"DROP {type_.upper()} IF EXISTS {quote(object_name)}")
            checkpoints.delete(self.conn, shadow_name(self.projection.name))
            self.conn.execute("DELETE FROM evt_dead_letters WHERE consumer = ?", (shadow_name(self.projection.name),))
            self.conn.execute("DELETE FROM evt_shadows WHERE projection = ?", (self.projection.name,))
        self.drop_tables([SHADOW + t for t in tables] + [RETIRED + t for t in tables])

    def drop_tables(self, tables: list[str]) -> None:
        "Empty tables a batch at a time (short transactions), then drop them."
        for table in tables:
            with translate_errors(self.target.path):
                found = self.conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)).fetchone()
            if found is None:
                continue
            rowid = "WITHOUT ROWID" not in " ".join((found[0] or "").upper().split())
            while rowid:
                with translate_errors(self.target.path), self.target.transaction():
                    deleted = self.conn.execute(
                        f"DELETE FROM {quote(table)} WHERE rowid IN (SELECT rowid FROM {quote(table)} LIMIT {DROP_BATCH})"
                    ).rowcount
                if deleted < DROP_BATCH:
                    break
            with translate_errors(self.target.path), self.target.transaction():
                self.conn.execute(f"DROP TABLE IF EXISTS {quote(table)}")


# -- the rows that differ ---------------------------------------------------------------------


def table_diff(conn: sqlite3.Connection, live: str, shadow: str) -> Iterator[dict]:
    """The rows that differ between a live table and its shadow: ``change`` (added, removed,
    changed), ``key`` (the primary key's columns, or None), ``before`` and ``after``.

    By primary key where both have the same one, else whole rows (as many times as a row
    is there more often on one side)."""
    live_columns = _columns(conn, live)
    shadow_columns = _columns(conn, shadow)
    if live_columns is None:
        for row in _rows(conn, shadow, shadow_columns, shadow_columns):
            yield _change("added", None, None, row)
        return
    key = _primary_key(conn, shadow)
    if key and key == _primary_key(conn, live):
        yield from _by_key(conn, live, shadow, live_columns, shadow_columns, key)
    else:
        yield from _whole_rows(conn, live, shadow, live_columns, shadow_columns)


def _columns(conn: sqlite3.Connection, table: str) -> list[str] | None:
    rows = conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return [r[1] for r in rows] or None


def _primary_key(conn: sqlite3.Connection, table: str) -> list[str]:
    rows = conn.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]


def _rows(conn: sqlite3.Connection, table: str, columns: list[str], order: list[str], count: bool = False) -> Iterator[dict]:
    listed = ", ".join(quote(c) for c in columns)
    ordered = ", ".join(f"{quote(c)} COLLATE BINARY" for c in order)
    if count:
        sql = f"SELECT {listed}, count(*) FROM {quote(table)} GROUP BY {ordered} ORDER BY {ordered}"
        for row in conn.execute(sql):
            yield dict(zip(columns, row[:-1])), row[-1]
        return
    for row in conn.execute(f"SELECT {listed} FROM {quote(table)} ORDER BY {ordered}"):
        yield dict(zip(columns, row))


def _by_key(conn, live: str, shadow: str, live_columns, shadow_columns, key: list[str]) -> Iterator[dict]:
    old = _rows(conn, live, live_columns, key)
    new = _rows(conn, shadow, shadow_columns, key)
    for a, b in _merge(old, new, lambda row: _order([row[k] for k in key])):
        if a is None:
            yield _change("added", {k: b[k] for k in key}, None, b)
        elif b is None:
            yield _change("removed", {k: a[k] for k in key}, a, None)
        elif _shown(a) != _shown(b):
            yield _change("changed", {k: a[k] for k in key}, a, b)


def _whole_rows(conn, live: str, shadow: str, live_columns, shadow_columns) -> Iterator[dict]:
    if live_columns != shadow_columns:  # other columns: no row is the same
        for row in _rows(conn, live, live_columns, live_columns):
            yield _change("removed", None, row, None)
        for row in _rows(conn, shadow, shadow_columns, shadow_columns):
            yield _change("added", None, None, row)
        return
    old = _rows(conn, live, live_columns, live_columns, count=True)
    new = _rows(conn, shadow, shadow_columns, shadow_columns, count=True)
    for a, b in _merge(old, new, lambda pair: _order(list(pair[0].values()))):
        before, after = (a[1] if a else 0), (b[1] if b else 0)
        row = (a or b)[0]
        for _ in range(before - after):
            yield _change("removed", None, row, None)
        for _ in range(after - before):
            yield _change("added", None, None, row)


def _merge(left: Iterator, right: Iterator, key) -> Iterator[tuple]:
    "Pairs of items with the same key from two sorted streams ((a, None) or (None, b) when only one has it)."
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and key(a) < key(b)):
            yield a, None
            a = next(left, None)
        elif a is None or key(b) < key(a):
            yield None, b
            b = next(right, None)
        else:
            yield a, b
            a, b = next(left, None), next(right, None)


def _order(values: list) -> tuple:
    "Values as SQLite orders them (BINARY): NULL, then numbers, then text, then blobs."
    return tuple(
        (0, 0) if v is None else (1, v) if isinstance(v, (int, float)) else (2, v) if isinstance(v, str) else (3, bytes(v))
        for v in values
    )


def _change(change: str, key: dict | None, before: dict | None, after: dict | None) -> dict:
    return {"change": change, "key": _shown(key), "before": _shown(before), "after": _shown(after)}


def _shown(row: dict | None) -> dict | None:
    "A row as JSON can carry it (a blob as x'…' hex)."
    if row is None:
        return None
    return {k: ("x'" + bytes(v).hex() + "'" if isinstance(v, (bytes, memoryview)) else v) for k, v in row.items()}


