"""What the hash chain costs: evt verify against evt read, and appends with and without it.

    python benchmarks/bench_verify.py [--events N] [--append-events M] [--repeat R] [--keep DIR]

Measures, in one run (with the same Python that runs this script):

1. the store-format migration that adds the chain (``0008_event_hashes``) to an existing
   store of N events: a store at the format before it, filled by bare sqlite3 from
   ``bench_log.py``'s data, then opened by evt (which migrates it). Reported in events/s.
2. ``evt verify`` of the N events against ``evt read --format ndjson`` of them, both
   processes writing to /dev/null, interleaved, best of R. Target: verify <= 2x read.
3. ``Store.write`` of M events (one batch, ``bench_log.py``'s data) into a new store, best
   of R, and the chain's own CPU per event (5): the rate without the chain is the append's
   time less the chain's. Target: >= 0.9x the rate without. (Until 2026-12-01 the chain
   could be switched off in this process; appends now bind each hash as stored, so a
   switched-off chain would not be evt's append any more, and its cost is measured on its
   own instead.)
4. the same for small writes: M / 10 single-event ``Store.write`` calls
   (``synchronous=normal``, so the disk's sync does not hide the CPU).
5. the chain's own CPU per event: ``chain.fixed`` (what an event's preparation adds for
   the chain) and ``chain.link`` (what placing it adds), on the same events, best of R.

Best of R, not the median: on a shared machine other work only ever adds time.

Nothing here is a test: it prints a table and exits 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_log import evt_command, remove_store, write_events  # noqa: E402

from evt import NewEvent, Store  # noqa: E402
from evt.log import batch, chain, migrations  # noqa: E402
from evt.log.ndjson import read_events  # noqa: E402


def old_store(path: Path, source: Path) -> None:
    "A store at the format before the chain, holding the NDJSON's events (bare sqlite3)."
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    migrations.apply_migrations(conn, 0, "2026-01-01T00:00:00.000000Z", until=migrations.format_of("_event_hashes") - 1)
    heads: dict[str, int] = {}
    rows = []
    insert = (
        "INSERT INTO events (position, stream, revision, id, type, version, timestamp, source, correlation_id, "
        "causation_id, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    with open(source, "rb") as f:
        for position, line in enumerate(f, 1):
            e = json.loads(line)
            revision = heads[e["stream"]] = heads.get(e["stream"], 0) + 1
            rows.append((
                position, e["stream"], revision, e["id"], e["type"], e.get("version", 1), e["timestamp"], e.get("source"),
                e.get("correlationId"), e.get("causationId"), json.dumps(e["data"], ensure_ascii=False, separators=(",", ":")),
                json.dumps(e.get("metadata") or {}, ensure_ascii=False, separators=(",", ":")),
            ))
            if len(rows) == 5000:
                conn.executemany(insert, rows)
                rows = []
    conn.executemany(insert, rows)
    conn.execute("COMMIT")
    conn.close()


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return elapsed


def bulk_append(folder: Path, source: Path) -> float:
    path = folder / "append.db"
    remove_store(path)
    with Store(path) as store, open(source, "rb") as f:
        store.append(NewEvent("warm-up", "x"))  # the store is made outside the measurement
        start = time.perf_counter()
        store.write(read_events(f))
        elapsed = time.perf_counter() - start
    remove_store(path)
    return elapsed


def small_appends(folder: Path, n: int) -> float:
    path = folder / "small.db"
    remove_store(path)
    events = [NewEvent(f"small-{i % 100}", "thing.happened", {"n": i, "note": "a small event"}) for i in range(n)]
    with Store(path, synchronous="normal") as store:
        store.append(NewEvent("warm-up", "x"))
        start = time.perf_counter()
        for event in events:
            store.write([event])
        elapsed = time.perf_counter() - start
    remove_store(path)
    return elapsed


def chain_cost(events: list[NewEvent], repeat: int) -> float:
    "The chain's CPU per event, in seconds: its fixed part and its link, as appends compute them."
    prepared = [(e.id or "x", e.stream, e.type, e.version, e.source, e.correlation_id, e.causation_id,
                 batch.encode(e.data), batch.encode(e.metadata, "metadata")) for e in events]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        previous, stamped = chain.GENESIS, chain.stamp("2026-11-30T00:00:00.000000Z")
        for position, p in enumerate(prepared, 1):
            previous = chain.link(previous, position, position, stamped, chain.fixed(*p))
        best = min(best, time.perf_counter() - start)
    return best / len(prepared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events verified and read (default 1,000,000)")
    parser.add_argument("--append-events", type=int, default=100_000, help="events appended, with and without the chain")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each measurement (best of)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep its files (the N-event store is reused)")
    args = parser.parse_args()
    began = time.perf_counter()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="evt-bench-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    evt = evt_command()
    print(
        f"evt verify benchmark: {args.events:,} events verified, {args.append_events:,} appended; Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    rows = []

    store = work / f"verify-{args.events}.db"
    if not store.exists():
        data = work / f"events-{args.events}.ndjson"
        if not data.exists():
            write_events(data, args.events)
        old_store(store, data)
        start = time.perf_counter()
        Store(store, create=False).close()  # opening migrates it: the hashes of every event
        migration = time.perf_counter() - start
        rows.append(("migration 0008: hashes of an existing store", f"{args.events / migration:,.0f} ev/s", "", "", f"{migration:.1f} s", ""))

    reads, verifies = [], []
    for _ in range(args.repeat):
        reads.append(timed(evt + ["read", "--db", str(store), "--format", "ndjson"]))
        verifies.append(timed(evt + ["verify", "--db", str(store)]))
    read, verify = min(reads), min(verifies)
    ratio = verify / read
    rows.append((f"evt verify vs evt read, {args.events:,} events", f"{verify:.2f} s", f"{read:.2f} s", f"{ratio:.2f}", "time <= 2x", "yes" if ratio <= 2 else "NO"))

    source = work / f"events-{args.append_events}.ndjson"
    if not source.exists():
        write_events(source, args.append_events)
    per_event = chain_cost(list(read_events(open(source, "rb")))[:20000], args.repeat)
    bulk = min(bulk_append(work, source) for _ in range(args.repeat)) / args.append_events
    ratio = (bulk - per_event) / bulk  # the rate with the chain, against the rate without it
    rows.append((f"bulk append, {args.append_events:,} events", f"{1 / bulk:,.0f} ev/s", f"{1 / (bulk - per_event):,.0f} ev/s", f"{ratio:.2f}", "rate >= 0.9x", "yes" if ratio >= 0.9 else "NO"))

    n = max(args.append_events // 10, 100)
    small = min(small_appends(work, n) for _ in range(args.repeat)) / n
    ratio = (small - per_event) / small
    rows.append((f"single-event writes, {n:,}", f"{1 / small:,.0f} ev/s", f"{1 / (small - per_event):,.0f} ev/s", f"{ratio:.2f}", "rate >= 0.9x", "yes" if ratio >= 0.9 else "NO"))
    rows.append(("the chain's CPU per event (fixed + link)", f"{per_event * 1e6:.2f} µs", f"{bulk * 1e6:.2f} µs", f"{per_event / bulk:.2f}", "info: share of a bulk append", ""))

    header = ("measurement", "with the chain", "baseline", "ratio", "target", "met")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for i, row in enumerate([header] + rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\nbaselines: evt read --format ndjson of the same store; the same appends less the chain's CPU per event")
    print(f"\n(finished in {time.perf_counter() - began:.0f} s)")
    if not args.keep:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
