"""A store that cannot be written: one its reader may not write (another user's, a file
made read-only), where reads work and create nothing beside it, and tail -f sees what
its owner appends; and one on a read-only file system, where every command that writes
is exit 6 before it does anything (runs a command, publishes a message)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from conftest import REDIS_URL, evt_command, mounted_read_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


@pytest.fixture
def read_only_samples(tmp_path, evt_proc):
    """The sample streams (a model with aggregates, upcasters and an SQL projection) in a
    store with consumers, dead letters whose command leaves a mark, and a seal key, then
    mounted read-only."""
    import shutil

    source, mounted = tmp_path / "source", tmp_path / "mounted"
    shutil.copytree(os.path.join(ROOT, "sample_streams"), source, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    mounted.mkdir()
    marks = tmp_path / "ran.log"
    run = lambda *args: evt_proc(*args, "--config", source / "evt.toml")  # noqa: E731
    for name in ("bank.ndjson", "orders.ndjson"):
        assert run("append", "--ndjson", source / name, "-q").exit_code == 0
    assert run("consume", "okc", "--exec", "true", "--type", "order.shipped").exit_code == 0
    failing = f"echo ran >> {marks}; exit 1"
    assert run("consume", "failer", "--exec", failing, "--type", "order.shipped", "--max-attempts", "1").exit_code == 0
    assert evt_proc("seal", "keygen", tmp_path / "seal").exit_code == 0
    with mounted_read_only(source, mounted):
        yield mounted, marks


WRITING = [
    ("consume", "okc"),
    ("consume", "new", "--exec", "true"),
    ("replay",),
    ("replay", "--rebuild"),
    ("aggregate", "account", "account-1", "--snapshot"),
    ("dlq", "retry", "--all"),
    ("dlq", "discard", "--all"),
    ("dlq", "purge", "--yes"),
    ("redact", "--position", "1", "--field", "data.owner", "--reason", "test", "--yes"),
    ("upcast", "run", "--in-place"),
    ("projections", "reset", "okc", "--to", "start", "--execute"),
    ("seal", "sign", "--key", "SEAL"),
    ("relay", "REDIS", "--key", "KEY"),
]


@pytest.mark.parametrize("args", WRITING, ids=" ".join)
def test_a_command_that_writes_a_store_on_a_read_only_file_system_is_exit_6_before_it_acts(read_only_samples, evt_proc, tmp_path, redis_broker, args):
    mounted, marks = read_only_samples
    client, prefix = redis_broker
    ran = marks.read_text()
    args = [{"SEAL": tmp_path / "seal", "REDIS": REDIS_URL, "KEY": prefix}.get(a, a) for a in args]
    got = evt_proc(*args, "--config", mounted / "evt.toml")
    assert (got.exit_code, got.stdout) == (6, "")
    assert got.stderr in (
        f"evt: {mounted / 'events.db'} is read-only: the file system is read-only\n",
        f"evt: {mounted / 'events.db'} is read-only: attempt to write a readonly database\n",
    )
    assert marks.read_text() == ran  # no command ran
    assert list(client.scan_iter(f"{prefix}*")) == []  # nothing published


def test_reading_commands_work_on_a_read_only_file_system(read_only_samples, evt_proc):
    mounted, _ = read_only_samples
    for args in (("aggregate", "account", "account-1"), ("dlq", "list"), ("projections",), ("upcast", "status"), ("redact", "--position", "1", "--field", "data.owner", "--dry-run")):
        got = evt_proc(*args, "--config", mounted / "evt.toml")
        assert (got.exit_code, got.stderr) == (0, ""), args


def test_a_projection_with_its_own_target_is_replayed_from_a_read_only_file_system(read_only_samples, evt_proc, tmp_path):
    mounted, _ = read_only_samples
    config = tmp_path / "elsewhere.toml"
    config.write_text(
        f'db = "{mounted / "events.db"}"\n'
        f'model = "{mounted / "model.py"}"\n'
        "[projections.placed]\n"
        f'target = "{tmp_path / "placed.db"}"\n'
        'setup = "CREATE TABLE IF NOT EXISTS placed (id TEXT PRIMARY KEY)"\n'
        "[projections.placed.on]\n"
        "\"order.placed\" = \"INSERT INTO placed VALUES (json_extract(:data, '$.orderId'))\"\n"
    )
    got = evt_proc("replay", "placed", "--config", config)
    assert (got.exit_code, got.stderr, json.loads(got.stdout)["events"]) == (0, "", 40)
    import sqlite3

    with sqlite3.connect(tmp_path / "placed.db") as conn:
        assert conn.execute("SELECT count(*) FROM placed").fetchone() == (40,)
