"""Projections cannot touch the log: the guard (a SQLite authorizer) on what their code runs."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

EVENTS = "".join(
    json.dumps({"stream": f"order-{n}", "type": "order.placed", "data": {"n": n}}) + "\n" for n in range(1, 4)
)
RULE = "a projection may read the log but change only its own tables"


def state(path: str = "events.db") -> dict:
    "What a projection must never change: the events, their triggers and indexes, evt's tables, others' checkpoints."
    conn = sqlite3.connect(path)
    try:
        return {
            "events": conn.execute("SELECT position, id, type, data FROM events ORDER BY position").fetchall(),
            "schema": conn.execute(
                "SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = 'events' OR name LIKE 'evt%' OR name = 'snapshots' ORDER BY name"
            ).fetchall(),
            "checkpoints": conn.execute("SELECT name, position FROM evt_checkpoints WHERE name = 'other'").fetchall(),
        }
    finally:
        conn.close()


@pytest.fixture
def store(evt, tmp_path):
    "Three events, and another consumer's checkpoint at 3."
    assert evt("append", "--ndjson", "-", "-q", input=EVENTS).exit_code == 0
    assert evt("consume", "other", "--exec", "cat > /dev/null").exit_code == 0
    before = state()
    assert before["checkpoints"] == [("other", 3)] and len(before["events"]) == 3
    return before


def sql_projection(tmp_path, setup: list[str] | None = None, on: list[str] | None = None, target: str | None = None) -> None:
    lines = ['db = "events.db"', "", "[projections.p]"]
    if target:
        lines.append(f'target = "{target}"')
    lines.append(f"setup = {json.dumps(setup or ['CREATE TABLE IF NOT EXISTS seen (position INTEGER)'])}")
    lines += ["[projections.p.on]", f'"*" = {json.dumps(on or ["INSERT INTO seen VALUES (:position)"])}']
    (tmp_path / "evt.toml").write_text("\n".join(lines) + "\n")


# -- SQL projections: refused when evt.toml is loaded ----------------------------------------


@pytest.mark.parametrize(
    "on, refused",
    [
        (
            ["DROP TRIGGER IF EXISTS events_append_only_delete", "DELETE FROM events WHERE position = :position"],
            "drop the trigger events_append_only_delete of events",
        ),
        (["DELETE FROM events WHERE position = :position"], "delete from events"),
        (["UPDATE events SET data = '{}' WHERE position = :position"], "update events"),
        (["INSERT INTO events (stream, revision, id, type, timestamp, data) VALUES ('x', 1, 'y', 'z', 't', '{}')"], "write into events"),
        (["DROP TABLE evt_dead_letters"], "drop the table evt_dead_letters"),
        (["UPDATE evt_checkpoints SET position = 0"], "update evt_checkpoints"),
        (["INSERT INTO evt_dead_letters (consumer, error, attempts, first_failed_at, last_failed_at) VALUES ('p', 'e', 1, 't', 't')"], "write into evt_dead_letters"),
        (["DROP INDEX events_category"], "drop the index events_category of events"),
    ],
)
def test_an_on_statement_that_would_change_the_log_is_a_configuration_error(evt, tmp_path, store, on, refused):
    sql_projection(tmp_path, on=on)
    result = evt("replay")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"evt: {tmp_path / 'evt.toml'}: projections.p.on.'*': {on[0]!r} is not allowed: it would ")
    assert result.stderr.endswith(f" is not allowed: it would {refused}; {RULE}\n")
    assert state() == store


@pytest.mark.parametrize(
    "setup, refused",
    [
        (["DROP TRIGGER IF EXISTS events_append_only_update"], "it would drop the trigger events_append_only_update of events"),
        (["DROP TABLE IF EXISTS evt_dead_letters"], "it would drop the table evt_dead_letters"),
        (["CREATE TRIGGER sneaky AFTER INSERT ON events BEGIN SELECT 1; END"], "it would create a trigger on events"),
        (["CREATE TEMP TRIGGER sneaky AFTER INSERT ON main.events BEGIN SELECT 1; END"], "it would create a trigger on events"),
        (["UPDATE evt_checkpoints SET position = 0"], "it would update evt_checkpoints"),
        (["DELETE FROM evt_checkpoints"], "it would delete from evt_checkpoints"),
        (["CREATE INDEX by_type ON events (type)"], "it would create an index on events"),
        (["ALTER TABLE events ADD COLUMN x"], "it would alter events"),
        (["PRAGMA writable_schema = ON"], "it would set PRAGMA writable_schema"),
        (["PRAGMA user_version = 0"], "it would set PRAGMA user_version"),
        (["ATTACH DATABASE 'other.db' AS other"], "it would attach another database file"),
        (
            ["CREATE TABLE seen (position INTEGER)", "CREATE TRIGGER wipe AFTER INSERT ON seen BEGIN DELETE FROM events; END"],
            None,  # the trigger is the projection's own; what it would do is refused where it fires (below)
        ),
    ],
)
def test_a_setup_statement_that_would_change_the_log_is_a_configuration_error(evt, tmp_path, store, setup, refused):
    sql_projection(tmp_path, setup=setup)
    result = evt("replay")
    assert (result.exit_code, result.stdout) == (2, "")
    if refused:
        assert result.stderr == f"evt: {tmp_path / 'evt.toml'}: projections.p.setup: {setup[0]!r} is not allowed: {refused}; {RULE}\n"
    else:
        assert result.stderr == (
            f"evt: {tmp_path / 'evt.toml'}: projections.p.on.'*': 'INSERT INTO seen VALUES (:position)' is not allowed: "
            f"it would delete from events (in wipe); {RULE}\n"
        )
    assert state() == store
    assert not (tmp_path / "other.db").exists()


def test_the_guard_holds_for_a_projection_with_its_own_file(evt, tmp_path, store):
    sql_projection(tmp_path, setup=["ATTACH DATABASE 'events.db' AS log", "DELETE FROM log.events"], target="read.db")
    result = evt("replay")
    assert result.exit_code == 2
    assert "\"ATTACH DATABASE 'events.db' AS log\" is not allowed: it would attach another database file" in result.stderr
    assert state() == store


def test_reading_the_log_stays_allowed(evt, tmp_path, store):
    sql_projection(
        tmp_path,
        setup=["CREATE TABLE IF NOT EXISTS seen (position INTEGER, total INTEGER)"],
        on=["INSERT INTO seen SELECT :position, count(*) FROM events WHERE position <= :position"],
    )
    result = evt("replay")
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect("events.db")
    assert conn.execute("SELECT * FROM seen ORDER BY position").fetchall() == [(1, 1), (2, 2), (3, 3)]
    conn.close()
    after = state()
    assert (after["events"], after["checkpoints"]) == (store["events"], store["checkpoints"])


# -- Python projections: refused when the code runs, and the run stops -----------------------

PYTHON_MODEL = """
from evt import Model

model = Model()
p = model.projection("p", tables=["seen"])


@p.setup
def setup(db):
    db.execute("CREATE TABLE IF NOT EXISTS seen (position INTEGER)")
    {setup}


@p.on("order.placed")
def placed(db, event):
    db.execute("INSERT INTO seen VALUES (?)", [event.position])
    if event.position == 2:
        {handler}
"""


def python_projection(tmp_path, setup: str = "pass", handler: str = "pass") -> None:
    (tmp_path / "model.py").write_text(textwrap.dedent(PYTHON_MODEL).format(setup=setup, handler=handler))
    (tmp_path / "evt.toml").write_text('db = "events.db"\nmodel = "model.py"\n')


@pytest.mark.parametrize(
    "handler, refused",
    [
        ('db.execute("DROP TRIGGER events_append_only_delete")', "drop the trigger events_append_only_delete of events"),
        ('db.execute("DELETE FROM events")', "delete from events"),
        ('db.execute("DROP TABLE evt_dead_letters")', "drop the table evt_dead_letters"),
        ('db.execute("CREATE TRIGGER t AFTER INSERT ON events BEGIN SELECT 1; END")', "create a trigger on events"),
        ('db.execute("UPDATE evt_checkpoints SET position = 0")', "update evt_checkpoints"),
        ('db["evt_checkpoints"].delete_where("name = ?", ["other"])', "delete from evt_checkpoints"),
    ],
)
def test_a_python_handler_that_would_change_the_log_stops_the_run(evt, tmp_path, store, handler, refused):
    python_projection(tmp_path, handler=handler)
    result = evt("replay", "--batch-size", "1")
    assert result.exit_code == 7
    assert result.stderr.startswith(f"evt: p: the handler of position 2 (order.placed) tried to {refused} (model.py, line ")
    assert result.stderr.endswith(f"); {RULE}\n")
    assert state() == store
    conn = sqlite3.connect("events.db")
    assert conn.execute("SELECT position FROM evt_checkpoints WHERE name = 'p'").fetchall() == [(1,)]  # stopped before 2
    assert conn.execute("SELECT * FROM seen").fetchall() == [(1,)]
    assert conn.execute("SELECT count(*) FROM evt_dead_letters").fetchone() == (0,)
    conn.close()


def test_a_python_handler_that_swallows_the_refusal_is_stopped_all_the_same(evt, tmp_path, store):
    python_projection(tmp_path, handler='try:\n            db.execute("DELETE FROM events")\n        except Exception:\n            pass')
    result = evt("replay")
    assert result.exit_code == 7
    assert result.stderr == f"evt: p: the handler of position 2 (order.placed) tried to delete from events; {RULE}\n"
    assert state() == store


def test_a_python_setup_that_would_change_the_log_stops_the_run(evt, tmp_path, store):
    python_projection(tmp_path, setup='db.execute("DROP TRIGGER events_append_only_update")')
    result = evt("replay")
    assert result.exit_code == 7
    assert result.stderr.startswith("evt: p: its setup tried to drop the trigger events_append_only_update of events (model.py, line ")
    assert state() == store


def test_after_a_refusal_evt_still_keeps_its_own_books(evt, tmp_path, store):
    "The guard is off while evt writes checkpoints and dead letters; a failing handler is dead-lettered as usual."
    python_projection(tmp_path, handler='raise ValueError("no")')
    result = evt("replay")
    assert result.exit_code == 0
    conn = sqlite3.connect("events.db")
    assert conn.execute("SELECT consumer, position FROM evt_dead_letters").fetchall() == [("p", 2)]
    assert conn.execute("SELECT position FROM evt_checkpoints WHERE name = 'p'").fetchall() == [(3,)]
    conn.close()
    assert evt("dlq", "retry", "--all").exit_code == 7  # fails again, and evt records it
    assert state()["events"] == store["events"]
