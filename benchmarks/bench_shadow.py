"""A rebuild without downtime: how long the swap holds the lock, and what writers wait.

Builds a one-statement SQL projection over N events (default 100,000) into the events
store, then rebuilds it twice while another process appends one event at a time: once
with ``evt replay --rebuild`` (drop, then fill again) as the baseline, once with
``--rebuild --shadow``. It prints the time each took, the longest and the 99th-percentile
wait of the appender during each, and how long the shadow's swap transaction held the
write lock. Goals: the swap holds the lock under 50 ms (a rename, whatever the table's
size); no append waits more than 0.5 s during the shadow rebuild (it writes in batches
of at most 0.2 s); the shadow rebuild takes at most 2x the plain one.

    python benchmarks/bench_shadow.py [EVENTS]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from evt import NewEvent, Store
from evt.config import Config
from evt.processing import shadows
from evt.processing.projections import open_target, replay, sql_projection

SETUP = "CREATE TABLE IF NOT EXISTS totals (position INTEGER PRIMARY KEY, stream TEXT, amount REAL)"
STATEMENT = "INSERT INTO totals VALUES (:position, :stream, json_extract(:data, '$.amount'))"

# Appends one event at a time until its stdin closes; prints each append's seconds (JSON).
APPENDER = r"""
import json, sys, threading, time
from evt import NewEvent, Store
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
waits = []
with Store(sys.argv[1], synchronous="normal") as store:
    print("ready", flush=True)
    while not stop.is_set():
        started = time.perf_counter()
        store.write([NewEvent("bench-writer", "bench.tick", {})])
        waits.append(time.perf_counter() - started)
        time.sleep(0.005)
print(json.dumps(waits))
"""


def appender(path: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    return proc


def waits_of(proc: subprocess.Popen) -> list[float]:
    out, _ = proc.communicate("")
    return sorted(json.loads(out))


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] if values else 0.0


def main(n: int) -> int:
    folder = tempfile.mkdtemp(prefix="evt-bench-shadow-")
    path = os.path.join(folder, "events.db")
    with Store(path, synchronous="normal") as store:
        store.write(NewEvent(f"account-{i % 1000}", "account.credited", {"amount": i * 0.5}) for i in range(n))
    projection = sql_projection("totals", {"setup": SETUP, "on": {"account.credited": STATEMENT}}, Config())
    with Store(path, synchronous="normal") as store:
        replay(store, projection)

        writer = appender(path)
        started = time.perf_counter()
        replay(store, projection, rebuild=True)
        plain = time.perf_counter() - started
        plain_waits = waits_of(writer)

        swap_seconds = []
        transaction = shadows.ShadowRebuild.swap

        def timed_swap(self):  # the swap's own transaction, without the batched drop of the old tables after it
            drop, self.drop_tables = self.drop_tables, lambda tables: None
            begun = time.perf_counter()
            try:
                return transaction(self)
            finally:
                swap_seconds.append(time.perf_counter() - begun)
                self.drop_tables = drop
                drop([shadows.RETIRED + t for t in self.names.tables])

        writer = appender(path)
        started = time.perf_counter()
        target = open_target(store, projection)
        rebuild = shadows.ShadowRebuild(store, target, projection, report=lambda change: None)
        rebuild.new().catch_up()
        rebuild.changes()
        timed_swap(rebuild)
        target.close()
        shadow = time.perf_counter() - started
        shadow_waits = waits_of(writer)
        rows = store.conn.execute("SELECT count(*) FROM totals").fetchone()[0]

    print(f"{n:,} events, {rows:,} rows")
    print(f"rebuild:           {plain:6.2f} s; appends waited at most {max(plain_waits):.3f} s (p99 {percentile(plain_waits, 0.99):.3f} s, {len(plain_waits)} appends)")
    print(f"rebuild --shadow:  {shadow:6.2f} s; appends waited at most {max(shadow_waits):.3f} s (p99 {percentile(shadow_waits, 0.99):.3f} s, {len(shadow_waits)} appends)")
    swap = swap_seconds[0]
    goals = [
        (f"the swap held the lock {swap * 1000:.1f} ms", swap < 0.05),
        (f"the longest append wait during the shadow rebuild: {max(shadow_waits):.3f} s", max(shadow_waits) <= 0.5),
        (f"shadow / plain rebuild time: {shadow / plain:.2f}x", shadow / plain <= 2),
    ]
    for what, met in goals:
        print(f"{'met' if met else 'NOT MET'}: {what}")
    return 0 if all(met for _, met in goals) else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
