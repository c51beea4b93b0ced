"""A store its reader may not write (another user's, or made read-only): reads work and
create nothing beside it; writes are exit 6; tail -f sees what its owner appends."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from conftest import evt_command

@pytest.fixture
def as_reader(unprivileged, tmp_path):
    "Run evt in the test's folder as a user bound by file permissions."

    def run(*args, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*unprivileged, *evt_command(), *map(str, args)], cwd=tmp_path, capture_output=True, input=input, timeout=60
        )

    return run


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.fixture
def restore_mode(tmp_path):
    yield
    os.chmod(tmp_path, 0o755)


def test_a_store_in_a_folder_the_reader_may_not_write_is_read_and_nothing_is_made(evt_proc, as_reader, tmp_path, restore_mode):
    evt_proc("append", "s-1", "t.x", '{"n": 1}', "-q")
    evt_proc("append", "s-2", "t.y", '{"n": 2}', "-q")
    expected = {args: evt_proc(*args) for args in (("read",), ("stats",), ("streams",), ("verify",), ("tail", "-n", "1"))}
    os.chmod(tmp_path / "events.db", 0o644)
    os.chmod(tmp_path, 0o555)  # as a store another user owns, in their folder
    before = listing(tmp_path)
    assert before == ["events.db", "events.db-lock"]
    for args, owner in expected.items():
        got = as_reader(*args)
        assert (got.returncode, got.stdout.decode(), got.stderr) == (0, owner.stdout, b""), args
    assert [json.loads(line)["data"] for line in as_reader("read", "s-2").stdout.splitlines()] == [{"n": 2}]
    assert listing(tmp_path) == before
    append = as_reader("append", "s-1", "t.x")
    assert (append.returncode, append.stdout) == (6, b"")
    assert append.stderr == b"evt: events.db is read-only: attempt to write a readonly database\n"
    assert listing(tmp_path) == before
    assert sqlite3_count(tmp_path / "events.db") == 2


def sqlite3_count(path) -> int:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def test_a_read_only_file_in_a_writable_folder_is_read_without_leaving_wal_files(evt_proc, as_reader, tmp_path):
    evt_proc("append", "s-1", "t.x", '{"n": 1}', "-q")
    os.chmod(tmp_path / "events.db", 0o444)
    before = listing(tmp_path)
    for args in (("read",), ("stats",), ("verify",), ("streams",)):
        got = as_reader(*args)
        assert (got.returncode, got.stderr) == (0, b""), args
    assert listing(tmp_path) == before
    append = as_reader("append", "s-1", "t.x")
    assert (append.returncode, append.stderr) == (6, b"evt: events.db is read-only: attempt to write a readonly database\n")
    assert listing(tmp_path) == before


def test_a_reader_that_may_not_write_follows_what_the_owner_appends(evt_proc, unprivileged, tmp_path, restore_mode):
    import selectors

    evt_proc("append", "s-1", "t.x", '{"n": 0}', "-q")
    os.chmod(tmp_path, 0o555)
    follower = subprocess.Popen(
        [*unprivileged, *evt_command(), "tail", "-f", "-n", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sel = selectors.DefaultSelector()
    sel.register(follower.stdout, selectors.EVENT_READ)

    def next_data() -> dict:
        assert sel.select(10), "no line within the timeout"
        return json.loads(follower.stdout.readline())["data"]

    try:
        assert next_data() == {"n": 0}
        # the owner's appends, each a process that opens the store, writes and closes it
        for n in (1, 2):
            evt_proc("append", "s-1", "t.x", json.dumps({"n": n}), "-q")
            assert next_data() == {"n": n}
        # and while another of the owner's processes holds it open
        holder = subprocess.Popen(
            [*evt_command(), "tail", "-f", "-n", "0"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            for n in (3, 4):
                evt_proc("append", "s-1", "t.x", json.dumps({"n": n}), "-q")
                assert next_data() == {"n": n}
        finally:
            holder.kill()
            holder.wait(10)
        evt_proc("append", "s-1", "t.x", json.dumps({"n": 5}), "-q")
        assert next_data() == {"n": 5}
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130
        assert follower.stderr.read() == b""
    finally:
        follower.kill()
        follower.wait(10)
