"""Does `evt consume --type X` skip what it does not take at the speed of `evt read --type X`?

    python benchmarks/bench_consume.py [--events N] [--repeat R] [--keep DIR]

On a log of N events (default 200,000) none of which has the type X, measures in one run
``evt consume NAME --type X --exec 'cat >/dev/null'`` (a new consumer each time, so it
goes through the whole log) against ``evt read --type X --format ndjson``. Target: the
same order of magnitude (<= 10x). It also checks what the consumer leaves behind: its
position at the head, so a restart does not go through the log again, and one more run
that finds nothing to do.

Times are medians of R repetitions. Nothing here is a test: it prints a table and exits
0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_log import evt_command, print_table, run, write_events
from bench_tail import build

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MISSING = "audit.flagged"  # no event has this type


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the log (default 200,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep its files (default: a temporary folder)")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="evt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    evt = evt_command()
    try:
        started = time.perf_counter()
        data, store = work / "events.ndjson", work / "evt.db"
        write_events(data, args.events)
        build(store, data)
        print(f"evt consume benchmark: {args.events:,} events, none of type {MISSING}, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {' '.join(evt)}", flush=True)
        db = ["--db", str(store)]
        times: dict[str, list[float]] = {"consume": [], "read": [], "again": []}
        for i in range(args.repeat):  # interleaved, so a busy moment hits both alike
            name = f"bench-{i}"
            times["consume"].append(run(evt + ["consume", name, "--type", MISSING, "--exec", "cat >/dev/null"] + db)[0])
            times["read"].append(run(evt + ["read", "--type", MISSING, "--format", "ndjson"] + db)[0])
            times["again"].append(run(evt + ["consume", name, "--type", MISSING] + db)[0])
        conn = sqlite3.connect(store)
        head = conn.execute("SELECT max(position) FROM events").fetchone()[0]
        saved = [p for (p,) in conn.execute("SELECT position FROM evt_checkpoints WHERE name LIKE 'bench-%'")]
        conn.close()
        consume, read, again = (statistics.median(times[k]) for k in ("consume", "read", "again"))
        ratio = consume / read
        rows = [
            (f"consume --type {MISSING}, {args.events:,} events", f"{consume:.2f} s", f"{read:.2f} s", f"{ratio:.2f}", "<= 10x read --type", "yes" if ratio <= 10 else "NO"),
            ("  the same consumer again (nothing new)", f"{again:.2f} s", "", f"{again / read:.2f}", "info", ""),
            ("  positions saved at the head", f"{sum(p == head for p in saved)} of {len(saved)}", "", "", "all", "yes" if saved and all(p == head for p in saved) else "NO"),
        ]
        print()
        print_table(rows)
        print(f"\n(finished in {time.perf_counter() - started:.0f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
