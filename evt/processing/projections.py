"""Projections: read models in SQLite, built from the log, exactly once.

Two kinds, handled alike by ``evt.processing.Runner``:

- SQL projections, declared in ``evt.toml`` with no Python at all::

    [projections.order_summaries]
    setup = "CREATE TABLE IF NOT EXISTS order_summaries (...)"
    [projections.order_summaries.on]
    "order.placed" = "INSERT INTO order_summaries VALUES (json_extract(:data,'$.orderId'), ...)"

- Python projections, declared in the user's model::

    revenue = model.projection("revenue", tables=["customer_revenue"])

    @revenue.on("order.placed")
    def placed(db, event):          # db: a sqlite_utils.Database; event: an evt.Event
        db["customer_revenue"].upsert({...}, pk="customer_id")

``replay`` brings projections up to date from their checkpoints.
"""

from __future__ import annotations

import os
import sqlite3
from abc import ABC, abstractmethod
from fnmatch import fnmatchcase
from typing import Any, Iterable

from ..config import Config
from ..errors import ConfigError, NotFound
from ..log.envelope import dumps
from ..log.sqlite import connect
from ..model.projections import DeclaredProjection
from ..model.retry import RetryPolicy
from .guard import RULE, Guard, ScratchGuard, one_line_statement
from .reactors import Reactor
from .reactors import declared as declared_reactors
from .runner import Runner, Target, describe_exception, user_traceback
from .runner import user_location as user_frame

SQL_KEYS = {"setup", "on", "target", "max_attempts", "backoff", "on_error"}


class ProjectionNotFound(NotFound):
    "No projection or consumer has that name"


class Projection(ABC):
    "What SQL and Python projections share: a name, a target file, a retry policy, handlers by type glob."

    kind = "?"

    def __init__(self, name: str, target: str | None, policy: RetryPolicy):
        self.name = name
        self.target = target
        self.policy = policy
        self.handlers: list[tuple[str, Any]] = []
        self._plans: dict[str, list] = {}

    def plan(self, type: str) -> list:
        "The handlers for an event type, in declaration order (cached per type)."
        plan = self._plans.get(type)
        if plan is None:
            plan = self._plans[type] = [h for glob, h in self.handlers if fnmatchcase(type, glob)]
        return plan

    def apply_row(self, conn: sqlite3.Connection, plan: list, row: tuple) -> None:
        from ..log.store import row_to_event

        self.apply_event(conn, plan, row_to_event(row))

    @abstractmethod
    def apply_event(self, conn: sqlite3.Connection, plan: list, event) -> None:
        ...

    def atomic(self, plan: list) -> bool:
        "True when a failure can leave no partial writes behind without a savepoint."
        return False

    def detail(self, error: BaseException) -> str | None:
        "The full error of a failed event: the message, and the SQL statement that raised it."
        statement = getattr(error, "evt_statement", None)
        return f"{self.describe(error)}\nin: {statement}" if statement else None

    @abstractmethod
    def owned_tables(self) -> list[str]:
        "The tables ``--rebuild`` drops."
        ...

    def check_tables(self, where: str) -> None:
        "ConfigError if the projection would own (and a rebuild drop) one of evt's own tables."
        from ..log.migrations import own_tables

        for name in self.owned_tables():
            if name.lower() in own_tables() or name.lower().startswith(("evt_", "sqlite_")):
                raise ConfigError(
                    f"{where}: the table {name!r} is evt's own (a rebuild would drop it); give the projection's table another name"
                )


# -- SQL -----------------------------------------------------------------------------


class SqlProjection(Projection):
    "A projection declared in evt.toml: setup statements, and statements per event type."

    kind = "sql"

    def __init__(self, name: str, setup: list[str], on: list[tuple[str, list[str]]], target: str | None, policy: RetryPolicy):
        super().__init__(name, target, policy)
        self.setup_statements = setup
        self.where = f"projection {name}"  # where it is declared, for messages
        for glob, statements in on:
            for statement in statements:
                self.handlers.append((glob, statement))

    def setup(self, conn: sqlite3.Connection) -> None:
        for statement in self.setup_statements:
            try:
                conn.execute(statement)
            except sqlite3.Error as e:
                raise ConfigError(f"projection {self.name}: setup failed: {e} (in: {statement})") from None

    def tables(self) -> list[tuple[str, str]]:
        "What setup creates, as (kind, name): found by running it on an empty in-memory database."
        conn = sqlite3.connect(":memory:")
        try:
            self.setup_in_memory(conn)
            rows = conn.execute(
                "SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        finally:
            conn.close()
        return rows

    def setup_in_memory(self, conn: sqlite3.Connection) -> None:
        """Run setup on an empty database, skipping statements that need tables it lacks
        (a trigger on the events table, say); any other error is a ConfigError. Nothing
        may reach outside that database (``ATTACH``)."""
        guard = ScratchGuard()
        conn.set_authorizer(guard)
        try:
            for statement in self.setup_statements:
                _prepare(conn, guard, statement, None, f"{self.where}.setup", self.name)
        finally:
            conn.set_authorizer(None)

    def drop(self, conn: sqlite3.Connection) -> None:
        for kind, name in self.tables():
            conn.execute(f"DROP {kind.upper()} IF EXISTS {quote(name)}")

    def owned_tables(self) -> list[str]:
        return [name for _, name in self.tables()]

    def atomic(self, plan: list) -> bool:
        return len(plan) == 1

    def apply_row(self, conn: sqlite3.Connection, plan: list, row: tuple) -> None:
        params = {
            "position": row[0],
            "stream": row[1],
            "revision": row[2],
            "id": row[3],
            "type": row[4],
            "version": row[5],
            "timestamp": row[6],
            "source": row[7],
            "correlationId": row[8],
            "causationId": row[9],
            "data": row[10],
            "metadata": row[11],
        }
        run_statements(conn, plan, params)

    def apply_event(self, conn: sqlite3.Connection, plan: list, event) -> None:
        params = event.to_dict()
        params["data"] = dumps(event.data)
        params["metadata"] = dumps(event.metadata)
        run_statements(conn, plan, params)

    def describe(self, error: BaseException) -> str:
        if isinstance(error, sqlite3.Error):
            return f"{type(error).__name__}: {error}"
        return describe_exception(error)


def run_statements(conn: sqlite3.Connection, statements: list[str], params: dict) -> None:
    "Run a handler's statements; an error carries the statement that raised it (``evt_statement``)."
    for statement in statements:
        try:
            conn.execute(statement, params)
        except sqlite3.Error as e:
            e.evt_statement = statement
            raise


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_statements(text: str) -> list[str]:
    "SQL text as complete statements (semicolons inside strings and triggers kept)."
    statements, current = [], ""
    for piece in text.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        statements.append(current.strip().rstrip(";"))
    return statements


def sql_projection(name: str, table: Any, config: Config) -> SqlProjection:
    "A SQL projection from its evt.toml table; ConfigError naming what is wrong."
    where = f"{config.path or 'evt.toml'}: projections.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - SQL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(SQL_KEYS))})")
    on = table.get("on")
    if not isinstance(on, dict) or not on:
        raise ConfigError(f"{where}.on must be a table of event type (or glob) = SQL statement")
    handlers = [(glob, statement_list(value, f"{where}.on.{glob!r}")) for glob, value in on.items()]
    setup = statement_list(table.get("setup", []), f"{where}.setup")
    target = table.get("target")
    if target is not None and not isinstance(target, str):
        raise ConfigError(f"{where}.target must be a file path")
    projection = SqlProjection(name, setup, handlers, config.resolve_path(target) if target else None, RetryPolicy.from_table(table, where))
    projection.where = where
    projection.check_tables(f"{where}.setup")
    check_statements(projection, where)
    return projection


def statement_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return split_statements(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [s for v in value for s in split_statements(v)]
    raise ConfigError(f"{where} must be a SQL statement or a list of them")


def check_statements(projection: SqlProjection, where: str) -> None:
    """Prepare every statement under the log's guard (``evt.processing.guard``), against
    evt's own tables and the setup's, so a typo — or a statement that would change the log
    or evt's tables — is a configuration error up front, naming it."""
    from ..log import migrations

    conn = sqlite3.connect(":memory:", isolation_level=None)
    guard = Guard()
    try:
        migrations.apply_migrations(conn, 0, "")  # the tables of a store, as a projection finds them
        conn.set_authorizer(guard)
        for statement in projection.setup_statements:
            _prepare(conn, guard, statement, None, f"{where}.setup", projection.name)
        for glob, statement in projection.handlers:
            _prepare(conn, guard, "EXPLAIN " + statement, dict.fromkeys(PARAMETERS), f"{where}.on.{glob!r}", None)
    finally:
        conn.close()


def _prepare(conn: sqlite3.Connection, guard: Guard, statement: str, params: dict | None, where: str, setup_of: str | None) -> None:
    "Run (setup) or prepare (EXPLAIN) one statement; ConfigError for one the guard refuses, or that is wrong."
    guard.reset()
    try:
        conn.execute(statement, params or ())
    except sqlite3.Error as e:
        shown = one_line_statement(statement.removeprefix("EXPLAIN "))
        if guard.attempt is not None:
            raise ConfigError(f"{where}: {shown!r} is not allowed: it would {guard.attempt}; {RULE}") from None
        if "no such table" in str(e):
            return  # a table made elsewhere (another projection, an attached file)
        if setup_of is not None:
            raise ConfigError(f"projection {setup_of}: setup failed: {e} (in: {statement})") from None
        raise ConfigError(f"{where}: {e}") from None


PARAMETERS = ("position", "stream", "revision", "id", "type", "version", "timestamp", "source", "correlationId", "causationId", "data", "metadata")


# -- Python --------------------------------------------------------------------------


class PythonProjection(Projection):
    """A projection declared in the user's model (``evt.model.projections.DeclaredProjection``), run.

    Handlers get ``db``, a ``sqlite_utils.Database`` on the projection's transaction, and
    the event; the declaration's setup function runs once before the first event.
    """

    kind = "python"

    def __init__(self, declared: DeclaredProjection, target: str | None = None):
        super().__init__(declared.name, target if target is not None else declared.target, declared.policy)
        self.declared = declared
        self.handlers = declared.handlers
        self.declared_tables = declared.tables
        self._db = None
        self._db_conn = None

    def setup(self, conn: sqlite3.Connection) -> None:
        "Run the declaration's setup function, if it has one."
        if self.declared.setup_fn is not None:
            try:
                self.declared.setup_fn(self.database(conn))
            except Exception as e:
                raise ConfigError(f"projection {self.name}: setup failed: {self.describe(e)}") from None

    def database(self, conn: sqlite3.Connection):
        "The sqlite-utils view of the projection's connection (made once per connection)."
        if self._db_conn is not conn:
            from sqlite_utils import Database

            self._db = Database(conn, execute_plugins=False, recursive_triggers=False)
            self._db_conn = conn
        return self._db

    def drop(self, conn: sqlite3.Connection) -> None:
        for name in self.declared_tables:
            conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")

    def owned_tables(self) -> list[str]:
        return self.declared_tables

    def apply_event(self, conn: sqlite3.Connection, plan: list, event) -> None:
        db = self.database(conn)
        for fn in plan:
            fn(db, event)

    def describe(self, error: BaseException) -> str:
        return describe_exception(error, user_frame(error))

    def detail(self, error: BaseException) -> str | None:
        "The traceback, from the handler down."
        return user_traceback(error)


# -- the configured set --------------------------------------------------------------


def configured(config: Config, model=None) -> dict[str, Projection]:
    "Every projection — SQL ones from evt.toml, then Python ones from the model — and the model's reactors."
    found: dict[str, Projection] = {}
    tables = config.data.get("projections", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{config.path}: projections must be a table of tables")
    for name, table in tables.items():
        found[name] = sql_projection(name, table, config)
    for name, declared in (model.projections if model is not None else {}).items():
        if name in found:
            raise ConfigError(f"projection {name} is declared twice: in {config.path} and in the model")
        target = declared.target
        if target is not None and not os.path.isabs(target):
            target = config.resolve_path(target)
        projection = PythonProjection(declared, target)
        projection.check_tables(f"projection {name}: tables")
        found[name] = projection
    for name, reactor in declared_reactors(model).items():
        if name in found:
            raise ConfigError(f"{name} is both a projection in {config.path} and a reactor in the model; name one of them differently")
        found[name] = reactor
    return found


def select(projections: dict[str, Projection], names: Iterable[str]) -> list[Projection]:
    "The named projections (all when none are named); ProjectionNotFound for an unknown name."
    names = list(names)
    if not names:
        return list(projections.values())
    for name in names:
        if name not in projections:
            known = ", ".join(projections) or "none configured"
            raise ProjectionNotFound(f"no projection named {name!r} (projections: {known})")
    return [projections[name] for name in dict.fromkeys(names)]


def open_target(store, projection: Projection, config: Config | None = None) -> Target:
    config = config or Config()
    return Target(store, projection.target, busy_timeout=config.busy_timeout(), synchronous=config.synchronous())


def runner(store, projection: Projection, config: Config | None = None, **options) -> Runner:
    "A runner for a projection (or a reactor), on its target file."
    if isinstance(projection, Reactor):
        projection = projection.bound(store)
    return Runner(store, open_target(store, projection, config), projection, **options)


def replay(store, projection: Projection, *, rebuild: bool = False, config: Config | None = None, **options):
    "Bring one projection up to date (from scratch with ``rebuild``); return its run's Summary."
    run = runner(store, projection, config, **options)
    try:
        run.start(rebuild=rebuild)
        return run.catch_up()
    finally:
        run.target.close()


# -- status --------------------------------------------------------------------------


def status(store, projections: dict[str, Projection]) -> list[dict]:
    """One object per projection and consumer: name, kind, checkpoint, head, lag,
    deadLetters, lastRunAt. Reads only: a target file that does not exist yet counts as
    never run."""
    from .consumers import positions

    head = store.head()
    rows = []
    for projection in projections.values():
        rows.append(_status_of(store, projection.name, projection.kind, projection.target, head))
    for name, kind in positions(store):
        if name not in projections:
            rows.append(_status_of(store, name, kind, None, head))
    return rows


def _status_of(store, name: str, kind: str, target: str | None, head: int) -> dict:
    from . import deadletters

    conn = store.conn
    opened = None
    if target is not None and not _same(target, store.path):
        if not os.path.exists(target):
            return _row(name, kind, 0, head, 0, None)
        conn = opened = connect(target, mode="ro")
    try:
        has_checkpoints = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'evt_checkpoints'").fetchone()
        found = conn.execute("SELECT position, last_run_at FROM evt_checkpoints WHERE name = ?", (name,)).fetchone() if has_checkpoints else None
        checkpoint, last_run = found or (0, None)
        return _row(name, kind, checkpoint, head, deadletters.count(conn, name), last_run)
    finally:
        if opened is not None:
            opened.close()


def _same(a: str, b: str) -> bool:
    from .runner import same_file

    return same_file(a, b)


def _row(name: str, kind: str, checkpoint: int, head: int, dead: int, last_run: str | None) -> dict:
    return {
        "name": name,
        "kind": kind,
        "checkpoint": checkpoint,
        "head": head,
        "lag": max(head - checkpoint, 0),
        "deadLetters": dead,
        "lastRunAt": last_run,
    }
