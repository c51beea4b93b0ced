"""The store's invariants: append-only, format versions, migrations, the Python API."""

from __future__ import annotations

import sqlite3

import pytest

from evt import Filter, NewEvent, Store, StreamNotFound, WrongExpectedRevision, migrations
from evt.errors import NotAStore, StoreTooNew


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "events.db") as s:
        yield s


def test_plain_sqlite_cannot_update_or_delete_events(store):
    store.append(NewEvent("s-1", "t.x", {"a": 1}))
    conn = sqlite3.connect(store.path)
    for statement in ("UPDATE events SET data = '{}'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    assert conn.execute("SELECT data FROM events").fetchone() == ('{"a":1}',)


def test_the_store_is_wal_and_records_its_format(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA user_version").fetchone() == (migrations.FORMAT_VERSION,)
    assert conn.execute("PRAGMA application_id").fetchone() == (migrations.APPLICATION_ID,)
    names = [row[0] for row in conn.execute("SELECT name FROM evt_migrations ORDER BY name")]
    assert names == [name for name, _ in migrations.MIGRATIONS]


def test_full_synchronous_by_default_normal_on_request(tmp_path):
    assert Store(tmp_path / "a.db").conn.execute("PRAGMA synchronous").fetchone() == (2,)
    assert Store(tmp_path / "a.db", synchronous="normal").conn.execute("PRAGMA synchronous").fetchone() == (1,)


def test_a_newer_store_is_refused_and_not_touched(tmp_path, evt):
    path = tmp_path / "events.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.FORMAT_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    result = evt("append", "s-1", "t.x")
    assert result.exit_code == 6
    assert result.stderr == (
        f"evt: events.db has store format {migrations.FORMAT_VERSION + 1}, newer than this evt understands "
        f"({migrations.FORMAT_VERSION}); upgrade evt\n"
    )
    assert path.read_bytes() == before
    with pytest.raises(StoreTooNew):
        Store(path)


def test_an_older_store_is_upgraded_by_named_migrations(tmp_path, monkeypatch):
    path = tmp_path / "events.db"
    Store(path).append(NewEvent("s-1", "t.x"))

    def add_notes(conn):
        conn.execute("CREATE TABLE notes (text TEXT)")

    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + [("9999_add_notes", add_notes)])
    monkeypatch.setattr(migrations, "FORMAT_VERSION", len(migrations.MIGRATIONS))
    with Store(path) as upgraded:
        assert upgraded.head() == 1
        conn = upgraded.conn
        assert conn.execute("PRAGMA user_version").fetchone() == (migrations.FORMAT_VERSION,)
        assert conn.execute("SELECT name FROM evt_migrations WHERE name = '9999_add_notes'").fetchone()
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)


@pytest.mark.parametrize("content", [b"hello, not a database" * 100, None])
def test_other_files_are_not_stores(tmp_path, evt, content):
    path = tmp_path / "other.db"
    if content is None:
        sqlite3.connect(path).execute("CREATE TABLE mine (x)")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    result = evt("append", "s-1", "t.x", "--db", "other.db")
    assert result.exit_code == 6
    assert result.stderr.startswith("evt: other.db is ")
    assert "not an evt store" in result.stderr
    assert path.read_bytes() == before
    with pytest.raises(NotAStore):
        Store(path)


def test_python_api_append_read_and_expected_revision(store):
    [placed] = store.append(NewEvent("order-1", "order.placed", {"total": 5}, expected=0))
    assert (placed.position, placed.revision, placed.category) == (1, 1, "order")
    store.append([NewEvent("order-1", "order.shipped"), NewEvent("order-2", "order.placed")])
    assert [e.type for e in store.read(Filter(stream="order-1"))] == ["order.placed", "order.shipped"]
    assert store.stream_revision("order-1") == 2 and store.head() == 3
    with pytest.raises(WrongExpectedRevision):
        store.append(NewEvent("order-1", "order.cancelled", expected=1))
    with pytest.raises(StreamNotFound):
        list(store.read(Filter(stream="nope-1")))
    assert store.head() == 3


def test_json_lines_built_in_sql_equal_python_encoding(store):
    store.append([
        NewEvent("s-1", "t.x", {"text": "ü \"quoted\" \\ \n tab\t", "n": [1, 2.5, None, True]}, source="s", metadata={"k": "v"}),
        NewEvent("s-2", "t.y", {}, correlation_id="c", causation_id="d"),
    ])
    import json

    from_sql = list(store.read_json())
    from_python = [e.to_json() for e in store.read()]
    assert [json.loads(line) for line in from_sql] == [json.loads(line) for line in from_python]
    assert from_sql == from_python
