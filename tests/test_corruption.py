"""A damaged store: appends refuse it, and every reader says the same thing about it."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt.log import store as store_module
from evt.log.envelope import NewEvent
from evt.log.store import Store

CORRUPTED = (
    "evt: events.db is corrupted (database disk image is malformed): "
    "check it with sqlite3 events.db 'PRAGMA integrity_check' and restore a backup\n"
)


def build(path, count: int = 3000) -> None:
    "A store of ``count`` events, the same bytes every time (given ids and timestamps)."
    with Store(path, synchronous="normal") as store:
        store.write(
            NewEvent(f"order-{n % 50}", "order.placed", {"n": n, "text": "x" * 100}, id=f"e{n}", timestamp=f"2026-01-01T00:00:{n % 60:02d}Z")
            for n in range(count)
        )
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine") / "events.db"
    build(path)
    return path


def page_size(path) -> int:
    "The store's page size (a store keeps the one it was made with)."
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()


def flip(path, offset: int, length: int = 64) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        block = f.read(length)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in block))


def test_64_bytes_flipped_in_the_middle_stop_appends_and_every_reader_says_so(evt, pristine, tmp_path):
    shutil.copy(pristine, "events.db")
    flip("events.db", os.path.getsize("events.db") // 2)
    damaged = open("events.db", "rb").read()
    said = set()
    for args in (["append", "order-1", "order.placed", "{}"], ["append", "new-1", "x.y"], ["read"], ["stats"], ["read", "order-7"], ["streams"]):
        result = evt(*args)
        assert (result.exit_code, result.stdout) == (6, ""), args
        said.add(result.stderr)
    # what SQLite trips over first depends on what the middle of the file holds (a page of
    # the log's b-tree, or of its text): either way it is the same line from every command
    [line] = said
    assert line in (CORRUPTED, CORRUPTED.replace("database disk image is malformed", "a stored text is not valid UTF-8")), line
    assert open("events.db", "rb").read() == damaged  # nothing was added to it
    assert not os.path.exists("events.db-wal") or os.path.getsize("events.db-wal") == 0


@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.integers(min_value=0), within=st.integers(min_value=0, max_value=4095))
def test_wherever_64_bytes_flip_append_read_and_stats_agree(evt, pristine, page, within):
    "Either the damage is where the log does not look (every command works), or all of them report it."
    shutil.copy(pristine, "events.db")
    size = page_size("events.db")
    pages = os.path.getsize("events.db") // size
    flip("events.db", (page % (pages - 1) + 1) * size + min(within % size, size - 64))
    outcomes = {args[0]: evt(*args) for args in (["read"], ["stats"], ["append", "order-1", "order.placed", "{}", "-q"])}
    codes = {name: (r.exit_code, r.stderr) for name, r in outcomes.items()}
    [seen] = set(codes.values())
    assert seen == (0, "") or (seen[0] == 6 and seen[1].startswith("evt: events.db is corrupted (")), codes


def test_a_row_whose_text_is_not_utf8_is_reported_as_damage_not_as_sql(evt, pristine, monkeypatch):
    shutil.copy(pristine, "events.db")
    conn = sqlite3.connect("events.db")
    conn.execute(
        "INSERT INTO events (position, stream, revision, id, type, timestamp, data) "
        "VALUES (3001, 'order-1', 61, 'bad', 'order.placed', '2026-01-02T00:00:00.000000Z', CAST(X'7b2261223a22ff227d' AS TEXT))"
    )
    conn.commit()
    conn.close()
    message = (
        "evt: events.db is corrupted (a stored text is not valid UTF-8): "
        "check it with sqlite3 events.db 'PRAGMA integrity_check' and restore a backup\n"
    )
    assert (evt("append", "order-1", "order.placed").stderr, evt("read").stderr) == (message, message)
    # A big store is not read whole when it is opened: reading meets the row, and says the same.
    monkeypatch.setattr(store_module, "CHECK_EVERY_PAGE_UP_TO", 0)
    result = evt("read", "--from", "3000")
    assert (result.exit_code, result.stderr) == (6, message)
    assert result.stdout.count("\n") == 1  # position 3000, then the damaged row


def test_a_big_store_is_checked_where_appends_write(evt, pristine, monkeypatch):
    shutil.copy(pristine, "events.db")
    conn = sqlite3.connect("events.db")
    try:
        [(last_leaf,)] = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY path DESC LIMIT 1"
        ).fetchall()
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table")
    finally:
        conn.close()
    monkeypatch.setattr(store_module, "CHECK_EVERY_PAGE_UP_TO", 0)
    assert evt("append", "order-1", "order.placed", "-q").exit_code == 0  # the middle is not read
    flip("events.db", (last_leaf - 1) * page_size("events.db"))
    damaged = open("events.db", "rb").read()
    result = evt("append", "order-1", "order.placed")
    assert (result.exit_code, result.stderr) == (6, CORRUPTED)
    assert open("events.db", "rb").read() == damaged


def test_a_file_that_is_not_sqlite_is_not_called_corrupted(evt):
    with open("events.db", "wb") as f:
        f.write(b"hello, not a database" * 100)
    result = evt("append", "s-1", "t.x")
    assert (result.exit_code, result.stderr) == (
        6,
        "evt: events.db is not an evt store: not a SQLite database, or one whose header is corrupted "
        "(if it was an evt store, restore a backup)\n",
    )
