"""Exactly-once replay: interrupted anywhere (an exception, or kill -9), resumed, same tables."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt import NewEvent, Store
from evt.processing import Runner, Target
from evt.model.projections import DeclaredProjection
from evt.processing.projections import PythonProjection

EVENTS = 300


class Crash(BaseException):
    "Stands in for a killed process: nothing after the last commit survives."


def counting_projection(target: str, crash_after: int | None = None) -> PythonProjection:
    "One row per event (position as primary key: a re-applied event fails) and running totals."
    projection = DeclaredProjection("totals", tables=["applied", "totals"], target=target)
    calls = {"n": 0}

    @projection.setup
    def setup(db):
        db.execute("CREATE TABLE applied (position INTEGER PRIMARY KEY, stream TEXT)")
        db.execute("CREATE TABLE totals (stream TEXT PRIMARY KEY, amount INTEGER, events INTEGER)")

    @projection.on("*")
    def apply(db, event):
        calls["n"] += 1
        db["applied"].insert({"position": event.position, "stream": event.stream})
        if crash_after is not None and calls["n"] == crash_after:
            raise Crash()  # after a write: it must not survive
        db.execute(
            "INSERT INTO totals VALUES (?, ?, 1) ON CONFLICT (stream) DO UPDATE "
            "SET amount = amount + excluded.amount, events = events + 1",
            [event.stream, event.data["amount"]],
        )

    return PythonProjection(projection)


def run(store: Store, projection: PythonProjection, batch_size: int) -> None:
    target = Target(store, projection.target)
    runner = Runner(store, target, projection, batch_size=batch_size, batch_seconds=3600)
    try:
        runner.start()
        runner.catch_up()
    finally:
        target.close()  # closing without a commit drops the open batch, as a kill would


def tables(path: str) -> tuple:
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("SELECT * FROM applied ORDER BY position").fetchall(),
            conn.execute("SELECT * FROM totals ORDER BY stream").fetchall(),
            conn.execute("SELECT count(*) FROM evt_dead_letters").fetchone()[0],
            conn.execute("SELECT position FROM evt_checkpoints").fetchall(),
        )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("log")
    path = str(folder / "events.db")
    with Store(path, synchronous="normal") as store:
        store.write(NewEvent(f"account-{i % 7}", "account.credited", {"amount": i}) for i in range(EVENTS))
        reference = str(folder / "reference.db")
        run(store, counting_projection(reference), batch_size=1000)
    return folder, path, tables(reference)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first_batch=st.integers(1, 400),
    crashes=st.lists(st.integers(1, EVENTS), max_size=3),
    resume_batch=st.integers(1, 400),
)
def test_replay_interrupted_anywhere_in_any_batch_size_gives_the_same_tables(log, first_batch, crashes, resume_batch):
    folder, path, expected = log
    target = str(folder / f"read-{os.urandom(6).hex()}.db")
    with Store(path) as store:
        for crash_after in crashes:  # the n-th event this run handles (a run may end before it)
            try:
                run(store, counting_projection(target, crash_after), first_batch)
            except Crash:
                pass
        run(store, counting_projection(target), resume_batch)
    assert tables(target) == expected


def slow_toml(target: str | None, settings: str = "", gate: bool = False) -> str:
    "A projection slow enough to be killed mid-replay: one row per event, running totals."
    where = f'target = "{target}"\n' if target else ""
    gate_table = "CREATE TABLE gate (p INTEGER CHECK (p % 500 != 0)); " if gate else ""
    gate_statement = '  "INSERT INTO gate VALUES (:position)",\n' if gate else ""
    return f"""
[projections.slow]
{where}{settings}setup = "{gate_table}CREATE TABLE applied (position INTEGER PRIMARY KEY, stream TEXT); CREATE TABLE totals (stream TEXT PRIMARY KEY, amount INTEGER)"
[projections.slow.on]
"*" = [
{gate_statement}  "INSERT INTO applied VALUES (:position, :stream)",
  "INSERT INTO totals VALUES (:stream, json_extract(:data, '$.amount') + (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400) SELECT count(*) - 400 FROM c)) ON CONFLICT (stream) DO UPDATE SET amount = amount + excluded.amount",
]
"""


def checkpoint(path: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT position FROM evt_checkpoints WHERE name = 'slow'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0
    return row[0] if row else 0


@pytest.mark.parametrize("target", [None, "read.db"])
def test_kill_9_during_a_large_replay_then_resume(tmp_path, evt_proc, target):
    n = 20_000
    (tmp_path / "evt.toml").write_text(slow_toml(target))
    with Store(tmp_path / "events.db", synchronous="normal") as store:
        store.write(NewEvent(f"account-{i % 13}", "account.credited", {"amount": i}) for i in range(n))
    checkpoint_file = str(tmp_path / (target or "events.db"))
    kills = []
    for wanted in (2_000, 8_000):
        proc = subprocess.Popen([sys.executable, "-m", "evt", "replay", "--batch-size", "100"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while checkpoint(checkpoint_file) < wanted and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.013)  # somewhere inside a batch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(checkpoint(checkpoint_file))
    assert 0 < kills[0] <= kills[1] < n, kills  # really interrupted, twice
    r = evt_proc("replay", "--format", "json")
    assert r.exit_code == 0, r.stderr
    conn = sqlite3.connect(checkpoint_file)
    assert conn.execute("SELECT count(*), min(position), max(position) FROM applied").fetchone() == (n, 1, n)
    assert conn.execute("SELECT count(*) FROM evt_dead_letters").fetchone() == (0,)
    totals = conn.execute("SELECT stream, amount FROM totals ORDER BY stream").fetchall()
    conn.close()
    expected = sorted((f"account-{k}", sum(range(k, n, 13))) for k in range(13))
    assert totals == expected


def test_two_replays_of_the_same_projection_at_once_apply_each_event_once(tmp_path, evt_proc):
    "Every 500th event fails: while one run waits to retry it, the other takes the lock and goes on."
    n = 6_000
    toml = slow_toml(None, settings="backoff = 0.05\n", gate=True)
    (tmp_path / "evt.toml").write_text(toml)
    with Store(tmp_path / "events.db", synchronous="normal") as store:
        store.write(NewEvent(f"account-{i % 13}", "account.credited", {"amount": i}) for i in range(n))
    procs = [
        subprocess.Popen([sys.executable, "-m", "evt", "replay", "--batch-size", str(size)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for size in (50, 70)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    failing = set(range(500, n + 1, 500))
    conn = sqlite3.connect(tmp_path / "events.db")
    assert conn.execute("SELECT count(*) FROM applied").fetchone() == (n - len(failing),)
    assert {p for (p,) in conn.execute("SELECT position FROM evt_dead_letters")} == failing
    assert conn.execute("SELECT count(*) FROM evt_dead_letters").fetchone() == (len(failing),)
    totals = conn.execute("SELECT stream, amount FROM totals ORDER BY stream").fetchall()
    assert totals == sorted((f"account-{k}", sum(i for i in range(k, n, 13) if i + 1 not in failing)) for k in range(13))
