"""The log's guard: what projection code may do to the SQLite file it writes into.

A projection reads the log and writes its own tables. While its code runs — a SQL
projection's ``setup`` and ``.on`` statements, a Python projection's setup and handlers
through their ``db`` — a SQLite authorizer refuses, as each statement is prepared,
anything that would change:

- the ``events`` table: its rows, its triggers (the append-only guard), its indexes;
- evt's own tables (``evt_…``, ``snapshots``): checkpoints and dead letters are written
  by evt itself, in the projection's transaction, never by the projection;
- the store's format and schema by other means (``PRAGMA user_version``,
  ``application_id``, ``writable_schema``, ``journal_mode`` …), or another file
  (``ATTACH``).

Reading the log (``SELECT … FROM events``) stays allowed. SQL statements are prepared
under the guard when the configuration is loaded, so a refused one is a configuration
error naming it; what only shows when it runs (a Python handler) stops the run.

The guard binds what a projection does through SQLite. A Python handler is the user's own
code, running with the user's rights: it is protected from mistakes, not from itself.
"""

from __future__ import annotations

import sqlite3

from ..log.migrations import own_tables

# Setting these (any argument) would change the store's format, schema or durability.
PRAGMAS = frozenset(
    {
        "application_id",
        "auto_vacuum",
        "journal_mode",
        "locking_mode",
        "page_size",
        "schema_version",
        "synchronous",
        "user_version",
        "writable_schema",
        "legacy_alter_table",
        "trusted_schema",
        "cell_size_check",
    }
)

RULE = "a projection may read the log but change only its own tables"


def one_line_statement(statement: str) -> str:
    "A SQL statement as messages show it: one line, without its closing semicolon."
    return " ".join(statement.split()).rstrip(";").rstrip()


def protected(name: str | None) -> bool:
    "Whether a table (or view) name is the log's or evt's own."
    lowered = (name or "").lower()
    return lowered in own_tables() or lowered.startswith("evt_")


def _table_actions() -> dict[int, str]:
    s = sqlite3
    return {
        s.SQLITE_INSERT: "write into {0}",
        s.SQLITE_UPDATE: "update {0}",
        s.SQLITE_DELETE: "delete from {0}",
        s.SQLITE_DROP_TABLE: "drop the table {0}",
        s.SQLITE_DROP_TEMP_TABLE: "drop the table {0}",
        s.SQLITE_CREATE_TABLE: "create a table named {0}",
        s.SQLITE_CREATE_TEMP_TABLE: "create a table named {0}",
        s.SQLITE_CREATE_VIEW: "create a view named {0}",
        s.SQLITE_CREATE_TEMP_VIEW: "create a view named {0}",
        s.SQLITE_DROP_VIEW: "drop the view {0}",
        s.SQLITE_DROP_TEMP_VIEW: "drop the view {0}",
        s.SQLITE_CREATE_VTABLE: "create a table named {0}",
        s.SQLITE_DROP_VTABLE: "drop the table {0}",
    }


def _on_table_actions() -> dict[int, str]:
    "Actions on something of a table: the table is the second argument."
    s = sqlite3
    return {
        s.SQLITE_CREATE_INDEX: "create an index on {1}",
        s.SQLITE_CREATE_TEMP_INDEX: "create an index on {1}",
        s.SQLITE_DROP_INDEX: "drop the index {0} of {1}",
        s.SQLITE_DROP_TEMP_INDEX: "drop the index {0} of {1}",
        s.SQLITE_CREATE_TRIGGER: "create a trigger on {1}",
        s.SQLITE_CREATE_TEMP_TRIGGER: "create a trigger on {1}",
        s.SQLITE_DROP_TRIGGER: "drop the trigger {0} of {1}",
        s.SQLITE_DROP_TEMP_TRIGGER: "drop the trigger {0} of {1}",
        s.SQLITE_ALTER_TABLE: "alter {1}",
    }


TABLE_ACTIONS = _table_actions()
ON_TABLE_ACTIONS = _on_table_actions()


class Guard:
    """A SQLite authorizer (``conn.set_authorizer(guard)``) for projection code.

    ``attempt`` says what the last refused statement tried to do ("delete from events"),
    or is None; ``reset()`` clears it.
    """

    def __init__(self) -> None:
        self.attempt: str | None = None

    def reset(self) -> None:
        self.attempt = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, database: str | None, source: str | None) -> int:
        refused = self._refused(action, arg1, arg2)
        if refused is None:
            return sqlite3.SQLITE_OK
        if source:  # inside a trigger or view the statement sets off
            refused += f" (in {source})"
        if self.attempt is None:
            self.attempt = refused
        return sqlite3.SQLITE_DENY

    @staticmethod
    def _refused(action: int, arg1: str | None, arg2: str | None) -> str | None:
        "What an action would do, if it is refused; None when it is allowed."
        template = TABLE_ACTIONS.get(action)
        if template is not None:
            return template.format(arg1) if protected(arg1) else None
        template = ON_TABLE_ACTIONS.get(action)
        if template is not None:
            return template.format(arg1, arg2) if protected(arg2) else None
        if action == sqlite3.SQLITE_PRAGMA:
            if arg2 is not None and (arg1 or "").lower() in PRAGMAS:
                return f"set PRAGMA {arg1}"
            return None
        if action == sqlite3.SQLITE_ATTACH:
            return "attach another database file"
        if action == sqlite3.SQLITE_DETACH:
            return "detach a database"
        return None  # reading, functions, transactions and savepoints, analyze, reindex


class ScratchGuard(Guard):
    """The guard for a projection's setup run on a scratch in-memory database (to find the
    tables it creates): only what would reach outside that database is refused."""

    @staticmethod
    def _refused(action: int, arg1: str | None, arg2: str | None) -> str | None:
        return "attach another database file" if action == sqlite3.SQLITE_ATTACH else None
