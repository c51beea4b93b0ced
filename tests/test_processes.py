"""evt as real processes: pipes, tail -f, Ctrl-C, concurrent writers, kill -9 mid-batch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import evt_command


def spawn(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(evt_command() + list(args), **kwargs)


def envelopes(n: int, stream=lambda i: f"s-{i % 5}") -> str:
    return "".join(json.dumps({"stream": stream(i), "type": "t.x", "data": {"i": i}}) + "\n" for i in range(n))


def test_read_into_head_ends_quietly(evt_proc):
    evt_proc("append", "--ndjson", "-", "-q", input=envelopes(3000))
    proc = subprocess.run(
        " ".join(evt_command()) + " read | head -1",
        shell=True, capture_output=True, executable="/bin/bash",
    )
    assert proc.returncode == 0
    assert proc.stderr == b""
    assert json.loads(proc.stdout)["position"] == 1


def test_tail_follow_into_head_ends_with_head(evt_proc):
    evt_proc("append", "s-1", "t.x", "-q")
    proc = subprocess.run(
        "timeout 20 " + " ".join(evt_command()) + " tail -f | head -1; echo ${PIPESTATUS[0]} >&2",
        shell=True, capture_output=True, executable="/bin/bash", timeout=30,
    )
    assert (proc.returncode, proc.stderr) == (0, b"141\n")  # as a write to the closed pipe would, not 124 (timeout)
    assert json.loads(proc.stdout)["position"] == 1


def wait_for_line(proc: subprocess.Popen, timeout: float = 10) -> dict:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    assert sel.select(timeout), "no line within the timeout"
    return json.loads(proc.stdout.readline())


def test_tail_follow_prints_what_another_process_appends(evt_proc, tmp_path):
    evt_proc("append", "s-1", "t.x", '{"n": 0}', "-q")
    follower = spawn("tail", "-f", "-n", "1", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for_line(follower)["data"] == {"n": 0}
        for n in (1, 2):
            evt_proc("append", "s-1", "t.x", json.dumps({"n": n}), "-q")
            started = time.monotonic()
            assert wait_for_line(follower)["data"] == {"n": n}
            assert time.monotonic() - started < 1.0
        follower.send_signal(signal.SIGINT)  # Ctrl-C
        assert follower.wait(10) == 130
        assert follower.stderr.read() == b""
    finally:
        follower.kill()


def test_tail_follow_waits_for_a_stream_that_does_not_exist_yet(evt_proc, tmp_path):
    evt_proc("append", "other-1", "t.x", "-q")
    follower = spawn("tail", "-f", "late-1", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        evt_proc("append", "other-1", "t.x", "-q")
        evt_proc("append", "late-1", "t.y", "-q")
        assert wait_for_line(follower)["stream"] == "late-1"
    finally:
        follower.kill()


def test_an_idle_follower_costs_next_to_no_cpu(evt_proc, tmp_path):
    evt_proc("append", "s-1", "t.x", "-q")
    follower = spawn("tail", "-f", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(follower)
        with open(f"/proc/{follower.pid}/stat") as f:
            before = sum(int(x) for x in f.read().split()[13:15])
        time.sleep(2)
        with open(f"/proc/{follower.pid}/stat") as f:
            after = sum(int(x) for x in f.read().split()[13:15])
        ticks = os.sysconf("SC_CLK_TCK")
        assert (after - before) / ticks < 0.2  # under 10% of one core while idle
    finally:
        follower.kill()


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(evt_proc, tmp_path):
    evt_proc("append", "shared-1", "t.x", "-q")
    script = (
        "for i in $(seq 1 10); do "
        + " ".join(evt_command())
        + ' append shared-1 t.x "{\\"w\\": $W, \\"i\\": $i}" -q || exit 1; '
        + " ".join(evt_command())
        + ' append own-$W t.x -q || exit 1; done'
    )
    writers = [
        subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env={**os.environ, "W": str(w)}, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for w in writers:
        assert w.wait(120) == 0, w.stderr.read()
    conn = sqlite3.connect(tmp_path / "events.db")
    rows = conn.execute("SELECT position, stream, revision FROM events ORDER BY position").fetchall()
    assert [r[0] for r in rows] == list(range(1, 82))
    by_stream: dict[str, list[int]] = {}
    for _, stream, revision in rows:
        by_stream.setdefault(stream, []).append(revision)
    assert by_stream["shared-1"] == list(range(1, 42))
    for w in range(4):
        assert by_stream[f"own-{w}"] == list(range(1, 11))


def test_a_failing_writer_on_a_new_store_loses_no_one_elses_events(tmp_path):
    # The failing batch starts first (creating the store), the others start while it waits
    # for its input, then its input turns out bad.
    failing = spawn("append", "--ndjson", "-", "-q", cwd=tmp_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    failing.stdin.write(b'{"stream": "b-1", "type": "t.x", "data": {}}\n')
    failing.stdin.flush()
    deadline = time.monotonic() + 10
    while not any(name.startswith("events.db") for name in os.listdir(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.01)
    good = [spawn("append", f"g-{i}", "t.x", "-q", cwd=tmp_path, stderr=subprocess.PIPE) for i in range(6)]
    time.sleep(1.0)
    failing.communicate(b'{"stream": "b-1", "type": "t.x", "data": {')
    assert failing.returncode == 5
    for proc in good:
        assert proc.wait(60) == 0, proc.stderr.read()
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("SELECT count(*), max(position) FROM events").fetchone() == (6, 6)
    conn.close()
    assert sorted(os.listdir(tmp_path)) == ["events.db", "events.db-lock"]  # -lock: the writers' queue


def test_kill_9_in_the_middle_of_a_batch_writes_all_or_nothing(evt_proc, tmp_path):
    evt_proc("append", "s-0", "t.x", "-q")
    writer = spawn("append", "--ndjson", "-", "-q", cwd=tmp_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdin.write(envelopes(20000).encode())  # more than one chunk: rows are already in the transaction
    writer.stdin.flush()
    time.sleep(1.0)
    assert writer.poll() is None  # still waiting for the rest of the batch
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    assert evt_proc("append", "--ndjson", "-", "-q", input=envelopes(10)).exit_code == 0
    assert conn.execute("SELECT max(position), count(*) FROM events").fetchone() == (11, 11)


def test_an_acknowledged_append_survives_kill_9(evt_proc, tmp_path):
    result = evt_proc("append", "--ndjson", "-", "-q", input=envelopes(500))
    assert result.exit_code == 0
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (500,)


def test_ctrl_c_ends_a_reader_quietly_with_130(evt_proc, tmp_path):
    evt_proc("append", "s-1", "t.x", "-q")
    follower = spawn("tail", "-f", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(follower)
    follower.send_signal(signal.SIGINT)
    assert follower.wait(10) == 130
    assert follower.stderr.read() == b""


def test_tail_follow_as_json_is_one_array_closed_by_ctrl_c(evt_proc, tmp_path):
    evt_proc("append", "s-1", "t.x", "-q")
    follower = spawn("tail", "-f", "--format", "json", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    evt_proc("append", "s-1", "t.y", "-q")
    time.sleep(0.5)
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=10)
    assert (follower.returncode, err) == (130, b"")
    assert [e["type"] for e in json.loads(out)] == ["t.x", "t.y"]


def test_a_store_locked_past_the_busy_timeout_is_exit_6(evt_proc, tmp_path):
    evt_proc("append", "s-1", "t.x", "-q")
    holder = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = evt_proc("append", "s-1", "t.x", env={"EVT_BUSY_TIMEOUT": "0.2"})
        assert result.exit_code == 6
        assert result.stderr.startswith("evt: events.db is locked by another process")
    finally:
        holder.execute("ROLLBACK")


def test_debug_shows_a_traceback(evt_proc):
    quiet = evt_proc("read", "--db", "missing.db")
    loud = evt_proc("read", "--db", "missing.db", env={"EVT_DEBUG": "1"})
    assert quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    assert loud.exit_code != 0 and "Traceback" in loud.stderr and "StoreMissing" in loud.stderr
    # the same exit code and message as without it, so a script behaves alike; 0 is off
    assert (loud.exit_code, loud.stderr.splitlines()[-1] + "\n") == (quiet.exit_code, quiet.stderr) == (6, quiet.stderr)
    off = evt_proc("read", "--db", "missing.db", env={"EVT_DEBUG": "0"})
    assert (off.exit_code, off.stderr) == (6, quiet.stderr)


def test_the_installed_script_runs(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "evt")
    proc = subprocess.run([script, "append", "s-1", "t.x", "-q"], cwd=tmp_path, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_a_store_on_a_read_only_filesystem_is_readable_and_appending_is_exit_6(evt_proc, read_only_folder):
    db = read_only_folder / "events.db"
    read = evt_proc("read", "--db", db)
    assert (read.exit_code, [e["data"] for e in map(json.loads, read.stdout.splitlines())], read.stderr) == (0, [{"n": 1}], "")
    append = evt_proc("append", "s-1", "t.x", "--db", db)
    assert (append.exit_code, append.stdout) == (6, "")
    assert append.stderr == f"evt: {db} is read-only: attempt to write a readonly database\n"


def test_a_creator_killed_mid_batch_leaves_nothing_the_next_append_keeps(evt_proc, tmp_path):
    writer = spawn("append", "--ndjson", "-", "-q", cwd=tmp_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdin.write(envelopes(2000).encode())
    writer.stdin.flush()
    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert not (tmp_path / "events.db").exists()  # the store is published only when a batch commits
    assert evt_proc("append", "s-1", "t.x", "-q").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if "creating" in p.name) == []
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
