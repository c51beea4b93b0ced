"""The store's invariants: append-only, format versions, migrations, the Python API."""

from __future__ import annotations

import sqlite3

import pytest

from evt import Filter, NewEvent, Store, StreamNotFound, WrongExpectedRevision
from evt.log import migrations
from evt.log import store as store_module
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


def test_new_stores_have_2048_byte_pages_and_older_ones_keep_theirs(tmp_path, evt, monkeypatch):
    def page_size(path):
        conn = sqlite3.connect(path)
        try:
            return conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            conn.close()

    Store(tmp_path / "api.db").close()
    assert evt("append", "s-1", "t.x", "--db", str(tmp_path / "cli.db")).exit_code == 0  # made by the first append
    assert (page_size(tmp_path / "api.db"), page_size(tmp_path / "cli.db")) == (2048, 2048)
    # A store made with SQLite's default (as evt made them before) keeps it: opened, appended to, migrated.
    monkeypatch.setattr(store_module, "PAGE_SIZE", 4096)
    Store(tmp_path / "old.db").append(NewEvent("s-1", "t.x"))
    monkeypatch.undo()
    assert page_size(tmp_path / "old.db") == 4096
    result = evt("append", "s-1", "t.x", "--db", str(tmp_path / "old.db"), "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    with Store(tmp_path / "old.db") as old:
        assert [e.revision for e in old.read(Filter(stream="s-1"))] == [1, 2]
    assert page_size(tmp_path / "old.db") == 4096


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


# -- creating a store on the first append ---------------------------------------------


def test_a_failed_first_append_leaves_no_store(tmp_path):
    bad = [NewEvent("s-1", "t.x"), NewEvent("s-1", "t.x", expected=5)]
    with pytest.raises(WrongExpectedRevision):
        Store.write_creating(tmp_path / "events.db", bad)
    assert list(tmp_path.iterdir()) == []


def test_the_first_append_publishes_a_complete_store(tmp_path):
    store, positions = Store.write_creating(tmp_path / "events.db", [NewEvent("s-1", "t.x"), NewEvent("s-2", "t.y")])
    store.close()
    assert positions == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.db"]  # no staging file left (the lock file comes with the next write)
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT stream, revision FROM events ORDER BY position").fetchall() == [("s-1", 1), ("s-2", 1)]


def creating_meanwhile(path, events, winner):
    "The events, with another writer creating the store and appending ``winner`` half-way through."
    for i, event in enumerate(events):
        if i == 1:
            with Store(path) as other:
                other.append(winner)
        yield event


def test_a_store_created_by_another_writer_meanwhile_keeps_both_batches(tmp_path):
    path = tmp_path / "events.db"
    mine = [NewEvent("s-1", "t.x", {"n": 1}, id="a"), NewEvent("s-2", "t.x", {"n": 2}), NewEvent("s-1", "t.x", {"n": 1}, id="a")]
    store, positions = Store.write_creating(path, creating_meanwhile(path, mine, [NewEvent("s-1", "t.other")]))
    assert positions == [2, 3, 2]
    assert [(e.stream, e.revision, e.type, e.id == "a") for e in store.read()] == [
        ("s-1", 1, "t.other", False),
        ("s-1", 2, "t.x", True),
        ("s-2", 1, "t.x", False),
    ]
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.db", "events.db-lock"]


def test_expected_revisions_are_checked_again_against_a_store_created_meanwhile(tmp_path):
    path = tmp_path / "events.db"
    mine = [NewEvent("s-9", "t.x"), NewEvent("s-1", "t.x", expected=0)]
    with pytest.raises(WrongExpectedRevision, match="'s-1' already exists, at revision 1 \\(expected it not to exist\\)"):
        Store.write_creating(path, creating_meanwhile(path, mine, [NewEvent("s-1", "t.other")]))
    with Store(path) as store:
        assert [e.type for e in store.read()] == ["t.other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.db", "events.db-lock"]


def test_an_interrupt_after_the_store_closed_is_still_the_interrupt(tmp_path):
    # Ctrl-C may land between the steps that end a transaction and close the store.
    store = Store(tmp_path / "events.db")
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.close()
            raise KeyboardInterrupt


def test_a_staging_file_left_by_a_killed_process_is_not_published(tmp_path):
    import os

    with Store(tmp_path / f"events.db.creating-{os.getpid()}") as stale:
        stale.append(NewEvent("stale-1", "t.x"))
    store, positions = Store.write_creating(tmp_path / "events.db", [NewEvent("s-1", "t.x")])
    assert positions == [1] and [e.stream for e in store.read()] == ["s-1"]
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.db"]
