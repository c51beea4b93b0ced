"""Many writers at once: evt against the eventsourcing library's SQLite recorder, in one run.

    python benchmarks/bench_writers.py [--writers 8] [--writes 50] [--busy-timeout 1] [--rounds 3]

eventsourcing (https://github.com/pyeventsourcing/eventsourcing) is installed for this
benchmark only (``pip install eventsourcing``); it is never a dependency of evt.

Both sides use one SQLite file in WAL mode with ``synchronous=FULL`` (an acknowledged
write survives a power cut) on the same disk, and append the same shape of event (a new
stream per write, a small payload). Measured, for batch sizes 1, 20 and 100:

- threads: ``--writers`` threads sharing one ``evt.Store`` (one recorder for the peer),
  each making ``--writes`` writes;
- processes: ``--writers`` processes, each with its own ``Store`` (its own recorder), each
  making ``--writes`` writes, all started together;
- for each: throughput (events/s), the wait of each write (call to return: queueing for
  the lock plus the transaction) as median, p99 and worst, refusals (a write that failed,
  e.g. locked past the busy timeout), and the worst wait as a multiple of one
  uncontended write's time;
- one single-event insert, uncontended (eventsourcing's ``test_performance``).

Ratios are evt / peer for throughput (goal >= 1.0) and for the single insert time
(goal <= 1.0). Nothing here is a test: it prints a table and exits 0.

One run of a case on a shared machine can be 15 % off the next (an fsync slowed by
another job), so each case runs ``--rounds`` times (default 3), evt and the peer taking
turns (who goes first alternates); the table shows each side's median throughput, the
median of its median waits, its worst p99 and worst wait, and all refusals and losses;
the ratio is of the medians, with the spread of the rounds' own ratios beside it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCHES = (1, 20, 100)
PAYLOAD = {"amount": 12.5, "currency": "EUR", "note": "a small event"}


# -- the two writers ------------------------------------------------------------------------


class EvtWriter:
    name = "evt"

    def __init__(self, path: str, busy_timeout: float):
        from evt import Store

        self.store = Store(path, busy_timeout=busy_timeout)

    def write(self, batch: int) -> None:
        from evt import NewEvent

        stream = f"bench-{uuid.uuid4().hex}"
        self.store.write([NewEvent(stream, "thing.happened", PAYLOAD, expected=0 if i == 0 else i) for i in range(batch)])

    def count(self) -> int:
        return self.store.head()

    def close(self) -> None:
        self.store.close()


class PeerWriter:
    name = "eventsourcing"

    def __init__(self, path: str, busy_timeout: float):
        from eventsourcing.persistence import JSONTranscoder
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        self.datastore = SQLiteDatastore(path, lock_timeout=max(1, round(busy_timeout)))
        self.recorder = SQLiteApplicationRecorder(self.datastore)
        self.recorder.create_table()
        self.transcoder = JSONTranscoder()
        with self.datastore.transaction(commit=False) as c:  # same durability as evt
            c.execute("PRAGMA synchronous")
            assert c.fetchone()[0] == 2, "the peer must run with synchronous=FULL"

    def write(self, batch: int) -> None:
        from eventsourcing.persistence import StoredEvent

        originator = uuid.uuid4()
        encode = self.transcoder.encode  # each event's state encoded, as the peer's mapper does (and evt does)
        self.recorder.insert_events(
            [StoredEvent(originator_id=originator, originator_version=i + 1, topic="thing.happened", state=encode(PAYLOAD)) for i in range(batch)]
        )

    def count(self) -> int:
        return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        self.datastore.close()


WRITERS = {"evt": EvtWriter, "eventsourcing": PeerWriter}


# -- measuring ------------------------------------------------------------------------------


def timed_writes(writer, batch: int, writes: int, start: threading.Event | None = None) -> tuple[list[float], int]:
    "The wait of each write, and how many were refused."
    waits, refused = [], 0
    if start is not None:
        start.wait()
    for _ in range(writes):
        began = time.perf_counter()
        try:
            writer.write(batch)
        except Exception:
            refused += 1
            continue
        waits.append(time.perf_counter() - began)
    return waits, refused


def run_threads(kind: str, path: str, batch: int, writers: int, writes: int, busy_timeout: float) -> dict:
    writer = WRITERS[kind](path, busy_timeout)
    start = threading.Event()
    results: list = [None] * writers

    def work(i: int) -> None:
        results[i] = timed_writes(writer, batch, writes, start)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    start.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    stored = writer.count()
    writer.close()
    return summarise(results, seconds, batch, stored)


def _process_main(kind: str, path: str, batch: int, writes: int, busy_timeout: float, ready, go, out) -> None:
    writer = WRITERS[kind](path, busy_timeout)
    ready.release()
    go.wait()
    out.put(timed_writes(writer, batch, writes))
    writer.close()


def run_processes(kind: str, path: str, batch: int, writers: int, writes: int, busy_timeout: float) -> dict:
    WRITERS[kind](path, busy_timeout).close()  # create the store (or the peer's table) first
    ctx = multiprocessing.get_context("fork")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(kind, path, batch, writes, busy_timeout, ready, go, out)) for _ in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    began = time.perf_counter()
    go.set()
    results = [out.get() for _ in procs]
    seconds = time.perf_counter() - began
    for p in procs:
        p.join()
    writer = WRITERS[kind](path, busy_timeout)
    stored = writer.count()
    writer.close()
    return summarise(results, seconds, batch, stored)


def summarise(results: list, seconds: float, batch: int, stored: int) -> dict:
    waits = sorted(w for ws, _ in results for w in ws)
    refused = sum(r for _, r in results)
    acknowledged = len(waits) * batch
    return {
        "rate": acknowledged / seconds,
        "median": statistics.median(waits) if waits else float("nan"),
        "p99": waits[min(len(waits) - 1, int(len(waits) * 0.99))] if waits else float("nan"),
        "worst": waits[-1] if waits else float("nan"),
        "refused": refused,
        "lost": acknowledged - stored,  # an acknowledged write that is not stored: must be 0
    }


def combine(rounds: list[dict]) -> dict:
    "One case's rounds as one row: median throughput and median wait, the worst p99 and wait, every refusal and loss."
    return {
        "rate": statistics.median(r["rate"] for r in rounds),
        "median": statistics.median(r["median"] for r in rounds),
        "p99": max(r["p99"] for r in rounds),
        "worst": max(r["worst"] for r in rounds),
        "refused": sum(r["refused"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
    }


def single_inserts(paths: dict[str, str], busy_timeout: float, number: int = 200) -> dict[str, float]:
    """The median seconds of an uncontended single-event write, for each writer.

    The writes alternate between the writers (after 10 each to warm up), so a busy moment
    on the machine — an fsync slowed by another job — hits both alike.
    """
    writers = {kind: WRITERS[kind](path, busy_timeout) for kind, path in paths.items()}
    times: dict[str, list[float]] = {kind: [] for kind in writers}
    for round in range(number + 10):
        for kind, writer in writers.items():
            began = time.perf_counter()
            writer.write(1)
            if round >= 10:
                times[kind].append(time.perf_counter() - began)
    for writer in writers.values():
        writer.close()
    return {kind: statistics.median(t) for kind, t in times.items()}


def sqlite_floor(folder: Path, writes: int = 300, batch: int = 100) -> dict[str, float]:
    """SQLite's own time per event, in seconds, for each side's table: rows built beforehand
    (as each side inserts them), ``batch`` per ``executemany``, only that call timed (no
    commit, no Python per event), the two tables alternating; the median over ``writes``.

    What no Python can take back: evt's table has 13 columns and five indexes (position,
    id, stream and revision, category, timestamp; correlation and causation ids where
    set), the peer's four columns and one index."""
    import os
    import sqlite3

    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    from evt import Store
    from evt.log.batch import INSERT_PLAIN
    from evt.log.envelope import IdFactory

    evt_path, peer_path = folder / "floor-evt.db", folder / "floor-peer.db"
    Store(evt_path).close()
    SQLiteApplicationRecorder(SQLiteDatastore(str(peer_path))).create_table()
    conns = {}
    for kind, path in (("evt", evt_path), ("eventsourcing", peer_path)):
        conn = conns[kind] = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous = FULL")
    new_id, data, position = IdFactory(), json_text(PAYLOAD), 0
    times: dict[str, list[float]] = {kind: [] for kind in conns}
    for _ in range(writes):
        stream, originator = f"bench-{uuid.uuid4().hex}", uuid.uuid4().hex
        rows = {"evt": [], "eventsourcing": []}
        for i in range(batch):
            position += 1
            rows["evt"].append((position, stream, i + 1, new_id(), "thing.happened", 1, "2026-12-01T00:00:00.000000Z", data, "{}", bytearray(os.urandom(32))))
            rows["eventsourcing"].append((originator, i + 1, "thing.happened", data.encode()))
        for kind, statement in (("evt", INSERT_PLAIN), ("eventsourcing", "INSERT INTO stored_events VALUES (?,?,?,?)")):
            conn = conns[kind]
            conn.execute("BEGIN")
            began = time.perf_counter()
            conn.executemany(statement, rows[kind])
            times[kind].append(time.perf_counter() - began)
            conn.execute("COMMIT")
    for conn in conns.values():
        conn.close()
    return {kind: statistics.median(t) / batch for kind, t in times.items()}


def json_text(value: dict) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--writes", type=int, default=50, help="writes per writer")
    parser.add_argument("--busy-timeout", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case, evt and the peer taking turns")
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temporary folder)")
    args = parser.parse_args()
    try:
        import eventsourcing  # noqa: F401
    except ImportError:
        sys.exit("bench_writers.py needs the peer: pip install eventsourcing")
    folder = Path(args.dir or tempfile.mkdtemp(prefix="evt-bench-writers-"))
    folder.mkdir(parents=True, exist_ok=True)
    n = 0

    def fresh(kind: str) -> str:
        nonlocal n
        n += 1
        return str(folder / f"{kind}-{n}.db")

    print(f"{args.writers} writers x {args.writes} writes, busy timeout {args.busy_timeout:g}s, WAL + synchronous=FULL, "
          f"{args.rounds} round(s) a case, in {folder}")
    single = single_inserts({kind: fresh(kind) for kind in WRITERS}, args.busy_timeout)
    print(f"\nsingle insert, uncontended (median): evt {single['evt'] * 1e6:.0f} us, eventsourcing {single['eventsourcing'] * 1e6:.0f} us, "
          f"ratio {single['evt'] / single['eventsourcing']:.2f} (goal <= 1.0)")
    floor = sqlite_floor(folder)
    print(f"SQLite alone, rows built beforehand, 100 per executemany: evt's table {floor['evt'] * 1e6:.2f} us/event, "
          f"the peer's {floor['eventsourcing'] * 1e6:.2f} us/event, ratio {floor['evt'] / floor['eventsourcing']:.2f}")
    print(f"\n{'mode':<10} {'batch':>5} {'writer':<14} {'events/s':>9} {'median ms':>10} {'p99 ms':>8} {'worst ms':>9} "
          f"{'worst/1 write':>13} {'refused':>7} {'lost':>4}")
    ratios = []
    for mode, run in (("threads", run_threads), ("processes", run_processes)):
        for batch in BATCHES:
            rounds: dict[str, list[dict]] = {kind: [] for kind in WRITERS}
            for i in range(args.rounds):
                for kind in (("evt", "eventsourcing") if i % 2 == 0 else ("eventsourcing", "evt")):
                    rounds[kind].append(run(kind, fresh(kind), batch, args.writers, args.writes, args.busy_timeout))
            found = {kind: combine(rounds[kind]) for kind in WRITERS}
            for kind, r in found.items():
                print(f"{mode:<10} {batch:>5} {kind:<14} {r['rate']:>9.0f} {r['median'] * 1e3:>10.1f} {r['p99'] * 1e3:>8.1f} "
                      f"{r['worst'] * 1e3:>9.1f} {r['worst'] / single[kind]:>13.1f} {r['refused']:>7} {r['lost']:>4}")
            ratio = found["evt"]["rate"] / found["eventsourcing"]["rate"]
            ratios.append(ratio)
            each = sorted(e["rate"] / p["rate"] for e, p in zip(rounds["evt"], rounds["eventsourcing"]))
            spread = f", rounds {each[0]:.2f}-{each[-1]:.2f}" if len(each) > 1 else ""
            print(f"{'':<10} {'':>5} {'ratio':<14} {ratio:>9.2f}  (goal >= 1.0{spread})")
    print(f"\nthroughput ratio evt/eventsourcing: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
