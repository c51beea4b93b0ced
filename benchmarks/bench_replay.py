"""Replay speed: a one-statement SQL projection against a bare sqlite3 loop.

Both apply the same INSERT to the same 100,000 events in the same run: the baseline
reads the rows and executes the statement per event in one transaction; evt replays
them through the projection engine (batched commits, checkpoint, upcast check).
Goal: evt at no less than 0.5 of the baseline's rate.

    python benchmarks/bench_replay.py [EVENTS]
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time

from evt import NewEvent, Store
from evt.config import Config
from evt.processing.projections import replay, sql_projection

STATEMENT = (
    "INSERT INTO totals (position, stream, amount) "
    "VALUES (:position, :stream, json_extract(:data, '$.amount'))"
)
SETUP = "CREATE TABLE totals (position INTEGER PRIMARY KEY, stream TEXT, amount REAL)"


def make_store(path: str, n: int) -> None:
    with Store(path, synchronous="normal") as store:
        store.write(NewEvent(f"account-{i % 1000}", "account.credited", {"amount": i * 0.5, "note": "x" * 40}) for i in range(n))


def baseline(path: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("DROP TABLE IF EXISTS totals")
    conn.execute(SETUP)
    started = time.perf_counter()
    conn.execute("BEGIN")
    keys = ("position", "stream", "revision", "id", "type", "version", "timestamp", "source", "correlationId", "causationId", "data", "metadata")
    rows = conn.execute(
        "SELECT position, stream, revision, id, type, version, timestamp, source, correlation_id, causation_id, data, metadata FROM events ORDER BY position"
    )
    for row in rows.fetchall():
        conn.execute(STATEMENT, dict(zip(keys, row)))
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE totals")
    conn.close()
    return seconds


def with_evt(path: str) -> float:
    projection = sql_projection("totals", {"setup": SETUP, "on": {"account.credited": STATEMENT}}, Config())
    with Store(path, synchronous="normal") as store:
        started = time.perf_counter()
        summary = replay(store, projection, rebuild=True)
        seconds = time.perf_counter() - started
        assert store.conn.execute("SELECT count(*) FROM totals").fetchone()[0] == summary.events
    return seconds


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "events.db")
        make_store(path, n)
        base = min(baseline(path) for _ in range(3))
        ours = min(with_evt(path) for _ in range(3))
    ratio = base / ours
    print(f"events: {n}")
    print(f"bare sqlite3 loop: {base:.3f} s ({n / base:,.0f} events/s)")
    print(f"evt replay:        {ours:.3f} s ({n / ours:,.0f} events/s)")
    print(f"ratio: {ratio:.2f} of baseline (goal >= 0.5)")
    sys.exit(0 if ratio >= 0.5 else 1)


if __name__ == "__main__":
    main()
