"""How fast is evt's log against bare sqlite3 doing the same work on the same data?

    python benchmarks/bench_log.py [--events N] [--repeat R] [--runs K] [--keep DIR]

Measures, in one run (with the same Python that runs this script):

1. bulk NDJSON append of N events: ``evt append --ndjson FILE -q`` as a process, and
   ``Store.write`` in this process, against a baseline script (sqlite3 + json only) that
   decodes each line, keeps stream heads in a dict, encodes data and metadata and inserts
   into an identically indexed table in one transaction (WAL, synchronous=FULL).
   Target: evt's rate >= 0.75 of the baseline's.
2. reading all N events: ``evt read --format ndjson`` and ``--format json`` into
   /dev/null, against a baseline loop that selects the rows, decodes data and metadata
   and re-encodes each envelope. Target: >= the baseline's rate; evt's peak RSS <= 80 MiB.
   The bulk append's peak RSS is reported too (target: <= 150 MiB for 1,000,000 events:
   run with --events 1000000).
3. one ``evt append`` per process (median of K runs, into a store of a few events),
   against ``python -c "import sqlite3, json"``. Target: <= 3x.
4. reading one 10-event stream in the N-event log against the same stream in a tiny
   log (in-process API, many repetitions). Target: ratio about 1 (<= 1.5 counts as met).

Times are medians of R repetitions (bulk and full reads) or K runs (single appends).
Nothing here is a test: it prints a table and exits 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even when evt is not installed

from evt import Filter, Store  # noqa: E402
from evt.log.migrations import create_event_log  # noqa: E402
from evt.log.ndjson import read_events  # noqa: E402

PROBE = "probe-1"  # the 10-event stream read in the big and in the tiny log
MIB = 1024 * 1024

# -- the baseline: what a careful user would write with sqlite3 and json alone -----------

BASELINE_APPEND = r'''
import json, sqlite3, sys

source, db = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("PRAGMA synchronous = FULL")
INSERT = ("INSERT INTO events (position, stream, revision, id, type, version, timestamp, source, "
          "correlation_id, causation_id, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
conn.execute("BEGIN IMMEDIATE")
position = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
heads = {}
rows = []
with open(source, "rb") as f:
    for line in f:
        e = json.loads(line)
        stream = e["stream"]
        revision = heads.get(stream)
        if revision is None:
            revision = conn.execute("SELECT coalesce(max(revision), 0) FROM events WHERE stream = ?", (stream,)).fetchone()[0]
        revision += 1
        heads[stream] = revision
        position += 1
        rows.append((position, stream, revision, e["id"], e["type"], e.get("version", 1), e["timestamp"],
                     e.get("source"), e.get("correlationId"), e.get("causationId"),
                     json.dumps(e["data"], ensure_ascii=False, separators=(",", ":")),
                     json.dumps(e.get("metadata") or {}, ensure_ascii=False, separators=(",", ":"))))
        if len(rows) == 500:
            conn.executemany(INSERT, rows)
            rows = []
conn.executemany(INSERT, rows)
conn.execute("COMMIT")
'''

BASELINE_READ = r'''
import json, sqlite3, sys

conn = sqlite3.connect(sys.argv[1])
out = sys.stdout
for row in conn.execute("SELECT position, stream, revision, id, type, version, timestamp, source, "
                        "correlation_id, causation_id, data, metadata FROM events ORDER BY position"):
    envelope = {"position": row[0], "stream": row[1], "revision": row[2], "id": row[3], "type": row[4],
                "version": row[5], "timestamp": row[6], "source": row[7], "correlationId": row[8],
                "causationId": row[9], "data": json.loads(row[10]), "metadata": json.loads(row[11])}
    out.write(json.dumps(envelope, ensure_ascii=False, separators=(",", ":")))
    out.write("\n")
out.flush()
'''

BARE_APPEND = r'''
import json, sqlite3, sys, uuid, datetime
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA synchronous = FULL")
conn.execute("BEGIN IMMEDIATE")
p, r = conn.execute("SELECT coalesce(max(position), 0), (SELECT coalesce(max(revision), 0) FROM events WHERE stream = 'bench-1') FROM events").fetchone()
conn.execute("INSERT INTO events (position, stream, revision, id, type, timestamp, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, '{}')",
             (p + 1, "bench-1", r + 1, str(uuid.uuid4()), "thing.happened",
              datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), json.dumps({"n": 1})))
conn.execute("COMMIT")
'''

# -- the data ---------------------------------------------------------------------------

PRODUCTS = ["prod_espresso_beans", "prod_grinder", "prod_kettle", "prod_mug", "prod_scale", "prod_tea_sampler"]


def write_events(path: Path, n: int, seed: int = 7) -> None:
    """N realistic envelopes (ids and timestamps given, as in an import or a copied log):
    orders of about 10 events each, plus the 10-event probe stream spread through the log."""
    rng = random.Random(seed)
    t0 = 1_795_000_000_000_000  # microseconds since the epoch (2026-11)
    probe_every = max(n // 10, 1)
    streams = max(n // 10, 1)
    revisions: dict[str, int] = {}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((t0 + i * 1000) // 1_000_000)) + f".{(t0 + i * 1000) % 1_000_000:06d}Z"
            if i % probe_every == 0 and revisions.get(PROBE, 0) < 10:
                stream, type_, data = PROBE, "probe.pinged", {"n": revisions.get(PROBE, 0) + 1}
            else:
                k = rng.randrange(streams)
                stream = f"order-ord_{k:06d}"
                type_ = rng.choice(["order.placed", "order.item_added", "order.item_added", "order.shipped"])
                data = {
                    "orderId": f"ord_{k:06d}",
                    "customerId": f"cust_{rng.randrange(5000):05d}",
                    "items": [{"productId": rng.choice(PRODUCTS), "quantity": rng.randint(1, 3), "price": round(rng.uniform(3, 90), 2)}],
                    "total": round(rng.uniform(3, 300), 2),
                }
            revisions[stream] = revisions.get(stream, 0) + 1
            envelope = {
                "stream": stream,
                "type": type_,
                "version": 2 if type_ == "order.placed" else 1,
                "data": data,
                "id": f"0193{i:012x}-7000-8000-{rng.getrandbits(48):012x}",
                "timestamp": ts,
                "source": "checkout",
                "correlationId": f"req_{i // 3:08d}",
                "causationId": None,
                "metadata": {"user": f"cust_{i % 977:05d}"},
            }
            f.write(json.dumps(envelope, separators=(",", ":")))
            f.write("\n")
    assert revisions.get(PROBE) == 10 or n < 100, "the probe stream needs 10 events"


# -- running ----------------------------------------------------------------------------


def evt_command() -> list[str]:
    "The ``evt`` script next to this Python, else ``python -m evt``."
    script = Path(sys.executable).parent / "evt"
    if script.exists():
        return [str(script)]
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return [sys.executable, "-m", "evt"]


TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time, for a child's own peak RSS


def run(cmd: list[str], rss: bool = False) -> tuple[float, int | None]:
    """Run a process (output to /dev/null) to its end; return (seconds, its peak RSS in bytes).

    With ``rss``, the peak RSS comes from GNU time when it is installed (None otherwise): a child's
    ru_maxrss as this process sees it (wait4, RUSAGE_CHILDREN) starts from the size of
    this benchmark process, which it was forked from, not from that of the program run.
    """
    with tempfile.NamedTemporaryFile("r") as rss_file:
        measured = rss and TIME is not None
        wrapped = [TIME, "-f", "%M", "-o", rss_file.name] + cmd if measured else cmd
        start = time.perf_counter()
        proc = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
        peak = int(rss_file.read().split()[-1]) * 1024 if measured else None
    return elapsed, peak


def remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def baseline_store(path: Path) -> None:
    "An empty table exactly as evt creates it (the DDL of evt/migrations.py), in WAL mode."
    import sqlite3

    remove_store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    create_event_log(conn)
    conn.execute("COMMIT")
    conn.close()


def peak(runs: list[tuple[float, int | None]]) -> int | None:
    return None if runs[0][1] is None else max(rss for _, rss in runs)


def interleaved(timers: dict, repeat: int) -> dict[str, float]:
    "The median time of each timer, run in turn ``repeat`` times."
    times: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            times[name].append(timer())
    return {name: statistics.median(ts) for name, ts in times.items()}


# -- the measurements -------------------------------------------------------------------


def bench_bulk_append(work: Path, data: Path, repeat: int, evt: list[str]) -> dict:
    store, base = work / "evt.db", work / "baseline.db"
    script = work / "baseline_append.py"
    script.write_text(BASELINE_APPEND)

    peaks: list[int] = []

    def evt_cli() -> float:
        remove_store(store)
        seconds, rss = run(evt + ["append", "--ndjson", str(data), "-q", "--db", str(store)], rss=True)
        if rss is not None:
            peaks.append(rss)
        return seconds

    def evt_api() -> float:
        remove_store(store)
        start = time.perf_counter()
        with Store(store) as s, open(data, "rb") as f:
            s.write(read_events(f))
        return time.perf_counter() - start

    def baseline() -> float:
        baseline_store(base)
        return run([sys.executable, str(script), str(data), str(base)])[0]

    # Interleaved, so that a busy moment on the machine hits evt and the baseline alike;
    # the last evt_cli run leaves the N-event store for the read benchmarks.
    results = interleaved({"baseline": baseline, "api": evt_api, "cli": evt_cli}, repeat)
    results["cli_rss"] = max(peaks) if peaks else None
    return results


def bench_read_all(work: Path, repeat: int, evt: list[str]) -> dict:
    store, base = work / "evt.db", work / "baseline.db"
    script = work / "baseline_read.py"
    script.write_text(BASELINE_READ)
    commands = {
        "baseline": [sys.executable, str(script), str(base)],
        "ndjson": evt + ["read", "--format", "ndjson", "--db", str(store)],
        "json": evt + ["read", "--format", "json", "--db", str(store)],
    }
    runs: dict[str, list] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            runs[name].append(run(cmd, rss=True))
    results: dict = {}
    for name, measured in runs.items():
        results[name] = statistics.median(t for t, _ in measured)
        results[f"{name}_rss"] = peak(measured)
    return results


def bench_single_append(work: Path, runs: int, evt: list[str]) -> dict:
    store = work / "small.db"
    remove_store(store)
    with Store(store) as s:
        from evt import NewEvent

        s.append([NewEvent(f"bench-{i}", "thing.happened", {"n": i}) for i in range(5)])
    bare = work / "bare_append.py"
    bare.write_text(BARE_APPEND)
    cmds = {
        "evt": evt + ["append", "bench-1", "thing.happened", '{"n":1}', "-q", "--db", str(store)],
        "import": [sys.executable, "-c", "import sqlite3, json"],
        "bare": [sys.executable, str(bare), str(store)],
    }
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):  # interleaved, so a noisy moment hits all three alike
        for name, cmd in cmds.items():
            times[name].append(run(cmd)[0])
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_stream_read(work: Path, data: Path, reps: int) -> dict:
    tiny = work / "tiny.db"
    remove_store(tiny)
    with open(data, "rb") as f:
        probe = [line for line in f if f'"stream":"{PROBE}"'.encode() in line]
    with Store(tiny) as s:
        s.write(read_events(iter(probe)))

    def per_read(path: Path, as_json: bool) -> float:
        with Store(path, create=False) as s:
            read = s.read_json if as_json else s.read
            filter = Filter(stream=PROBE)
            assert len(list(read(filter))) == 10
            best = float("inf")
            for _ in range(5):  # best of 5 rounds of `reps` reads
                start = time.perf_counter()
                for _ in range(reps):
                    for _ in read(filter):
                        pass
                best = min(best, (time.perf_counter() - start) / reps)
            return best

    return {
        "big": per_read(work / "evt.db", False),
        "tiny": per_read(tiny, False),
        "big_json": per_read(work / "evt.db", True),
        "tiny_json": per_read(tiny, True),
    }


# -- the report -------------------------------------------------------------------------


def report(n: int, bulk: dict, reads: dict, single: dict, stream: dict) -> list[tuple]:
    rate = lambda seconds: f"{n / seconds:,.0f} ev/s"  # noqa: E731
    ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
    us = lambda seconds: f"{seconds * 1e6:.0f} µs"  # noqa: E731
    rows = []

    def row(what, evt_s, base_s, shown, ratio, target, met):
        rows.append((what, shown(evt_s), shown(base_s), f"{ratio:.2f}", target, "yes" if met else "NO"))

    for key, label in (("cli", "bulk append: evt append --ndjson"), ("api", "bulk append: Store.write (API)")):
        r = bulk["baseline"] / bulk[key]  # evt rate / baseline rate
        row(label, bulk[key], bulk["baseline"], rate, r, "rate >= 0.75x", r >= 0.75)
    if bulk["cli_rss"] is None:
        rows.append(("peak RSS: evt append --ndjson", "?", "", "", "<= 150 MiB at 1,000,000", "install GNU time"))
    else:
        mem = bulk["cli_rss"] / MIB
        rows.append(("peak RSS: evt append --ndjson", f"{mem:.1f} MiB", "", "", "<= 150 MiB at 1,000,000", "yes" if mem <= 150 else "NO"))
    for fmt in ("ndjson", "json"):
        r = reads["baseline"] / reads[fmt]
        row(f"read all: evt read --format {fmt}", reads[fmt], reads["baseline"], rate, r, "rate >= 1x", r >= 1)
    for fmt in ("ndjson", "json"):
        if reads[f"{fmt}_rss"] is None:
            rows.append((f"peak RSS: evt read --format {fmt}", "?", "?", "", "<= 80 MiB", "install GNU time"))
            continue
        mem = reads[f"{fmt}_rss"] / MIB
        rows.append((f"peak RSS: evt read --format {fmt}", f"{mem:.1f} MiB", f"{reads['baseline_rss'] / MIB:.1f} MiB", "", "<= 80 MiB", "yes" if mem <= 80 else "NO"))
    r = single["evt"] / single["import"]
    row("one evt append per process", single["evt"], single["import"], ms, r, "time <= 3x import", r <= 3)
    rows.append(("  (bare sqlite3 append script)", "", ms(single["bare"]), f"{single['evt'] / single['bare']:.2f}", "info", ""))
    for key, label in (("", "read"), ("_json", "read_json")):
        r = stream[f"big{key}"] / stream[f"tiny{key}"]
        row(f"10-event stream, {label}: {n:,} vs tiny log", stream[f"big{key}"], stream[f"tiny{key}"], us, r, "time ratio ~1 (<= 1.5)", r <= 1.5)
    return rows


def print_table(rows: list[tuple]) -> None:
    header = ("measurement", "evt", "baseline", "ratio", "target", "met")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the log (default 100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of the bulk append and the full reads (median)")
    parser.add_argument("--runs", type=int, default=20, help="runs of the single-event append (median)")
    parser.add_argument("--reps", type=int, default=2000, help="reads of the 10-event stream per round")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep its files (default: a temporary folder)")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="evt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    evt = evt_command()
    try:
        data = work / "events.ndjson"
        started = time.perf_counter()
        write_events(data, args.events)
        print(f"evt benchmark: {args.events:,} events ({data.stat().st_size / MIB:.1f} MiB of NDJSON), "
              f"Python {platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}, "
              f"{os.cpu_count()} CPUs, {' '.join(evt)}", flush=True)
        bulk = bench_bulk_append(work, data, args.repeat, evt)
        reads = bench_read_all(work, args.repeat, evt)
        single = bench_single_append(work, args.runs, evt)
        stream = bench_stream_read(work, data, args.reps)
        print()
        print_table(report(args.events, bulk, reads, single, stream))
        print(f"\n(finished in {time.perf_counter() - started:.0f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
