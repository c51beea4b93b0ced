"""How much a backup holds writers up: SQLite's online backup API against VACUUM INTO.

    python benchmarks/bench_backup.py [--events 300000] [--writers 4] [--seconds 2]

A store of ``--events`` events is built; then ``--writers`` processes append single
events in a loop (each append one transaction, ``synchronous=FULL``) while, in turn:
nothing happens (the baseline window), a copy is taken with the backup API in one step
(``Connection.backup(pages=-1)``: one read transaction, the way ``evt backup`` takes
it), a copy is taken with ``VACUUM INTO``, and ``evt.ops.backup.backup`` runs (the copy
and its verification). For each window: the writers' appends per second as a ratio of
the baseline's, their worst append latency, and how long the copy took. Nothing here is
a test: it prints one JSON object per window and exits 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evt import NewEvent, Store  # noqa: E402


def build(path: str, count: int) -> None:
    store = Store(path, synchronous="normal")
    data = {"orderId": "x" * 12, "items": [{"productId": "p-1", "quantity": 2, "price": 9.5}] * 3, "total": 28.5}
    batch = 5000
    for start in range(0, count, batch):
        store.write(NewEvent(f"order-{i % 5000}", "order.placed", data) for i in range(start, min(count, start + batch)))
    store.close()


def writer(path: str, stop_at: float, out) -> None:
    store = Store(path)
    samples = []
    n = 0
    while time.time() < stop_at:
        began = time.time()
        store.append(NewEvent(f"w-{os.getpid()}", "tick", {"n": n}))
        samples.append((began, time.time() - began))
        n += 1
    store.close()
    out.send(samples)


def copy_backup_api(source: str, dest: str) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dest)
    src.backup(dst)  # one step: one read transaction
    dst.close()
    src.close()


def copy_vacuum_into(source: str, dest: str) -> None:
    src = sqlite3.connect(source)
    src.execute("VACUUM INTO ?", (dest,))
    src.close()


def copy_evt_backup(source: str, dest: str) -> None:
    from evt.ops.backup import backup

    store = Store(source, create=False)
    backup(store, dest)
    store.close()


METHODS = {"backup API": copy_backup_api, "VACUUM INTO": copy_vacuum_into, "evt backup": copy_evt_backup}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="the baseline window, and the pause between copies")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="evt-bench-backup-")
    path = os.path.join(folder, "events.db")
    build(path, args.events)
    size = os.path.getsize(path)
    windows: list[tuple[str, float, float]] = []
    copies = 3 * len(METHODS)  # each method three times, interleaved
    budget = args.seconds * (2 + copies) + 30 * copies  # generous: the writers stop when told by the clock
    stop_at = time.time() + budget
    pipes, procs = [], []
    for _ in range(args.writers):
        mine, theirs = multiprocessing.Pipe(duplex=False)
        proc = multiprocessing.Process(target=writer, args=(path, stop_at, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    time.sleep(0.5)  # the writers are running (a benchmark, not a test: a pause is fine here)
    began = time.time()
    time.sleep(args.seconds)
    windows.append(("baseline", began, time.time()))
    for round_ in range(3):
        for name, copy in METHODS.items():
            dest = os.path.join(folder, f"copy-{round_}-{name.replace(' ', '-')}.db")
            began = time.time()
            copy(path, dest)
            windows.append((name, began, time.time()))
            time.sleep(args.seconds)
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(dest + suffix):
                    os.remove(dest + suffix)
    last = time.time()
    samples = [s for pipe in pipes for s in pipe.recv()]
    for proc in procs:
        proc.join()
    rate = {}
    for name, start, end in windows:
        inside = [lat for t, lat in samples if start <= t < end]
        rate.setdefault(name, []).append((len(inside) / (end - start), max(inside, default=0.0), end - start))
    base = statistics.mean(r for r, _, _ in rate["baseline"])
    for name, values in rate.items():
        print(json.dumps({
            "window": name,
            "storeMiB": round(size / 2**20, 1),
            "appendsPerSecond": round(statistics.mean(r for r, _, _ in values)),
            "ratioToBaseline": round(statistics.mean(r for r, _, _ in values) / base, 2),
            "worstAppendSeconds": round(max(w for _, w, _ in values), 3),
            "copySeconds": None if name == "baseline" else round(statistics.mean(s for _, _, s in values), 2),
        }))
    del last


if __name__ == "__main__":
    main()
