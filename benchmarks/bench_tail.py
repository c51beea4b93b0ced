"""Does `evt tail` stay flat in memory and in CPU, however long the log?

    python benchmarks/bench_tail.py [--events N] [--commits K] [--keep DIR]

Measures, in one run, on an N-event log (default 1,000,000):

1. peak RSS of ``evt tail -n N`` (all of the log, as the last N), plain and with a filter
   no index serves (``--type``) and one an index serves (``--category``), against
   ``evt read`` of the whole log (which streams). Target: tail's peak RSS <= 80 MiB and
   <= 1.25x read's. For reference, the peak of what tail did before (a list of the last
   N events, reversed) is measured too.
2. CPU of ```evt tail -n 1 -f --type RARE``` (the last match is the log's first event) while
   K commits of other events land (default 200), on the N-event log against a 10-event log.
   Target: <= 2x (a follower costs the new events, not the log since its last match); the
   CPU of what it did before (query again from the last match) for reference.

Peak RSS needs GNU time (``/usr/bin/time``); CPU is read from /proc (Linux). Nothing here
is a test: it prints a table and exits 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_log import MIB, evt_command, print_table, remove_store, run, write_events

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evt import NewEvent, Store  # noqa: E402
from evt.log.ndjson import read_events  # noqa: E402

BEFORE = r"""
import sys
from evt import Filter, Store
from evt.log.envelope import dumps
store = Store(sys.argv[1], create=False)
last = list(store.read(Filter(limit=int(sys.argv[2]), backwards=True)))[::-1]  # what evt tail did before
out = sys.stdout
for event in last:
    out.write(event.to_json() + "\n")
"""


RARE = ("rare.now", "rare.before")

FOLLOW_BEFORE = r"""
import sys, time
from evt import Filter, Store
store = Store(sys.argv[1], create=False)
filter = Filter(types=[sys.argv[2]])
last = next(store.read_json(filter.replace(limit=1, backwards=True)))
sys.stdout.write(last + "\n")
sys.stdout.flush()
filter = filter.following(int(last[12 : last.index(",")]))  # from the last match, as evt tail -f did
while True:  # what Store.follow did before: query again from the last match on every commit
    version = store.conn.execute("PRAGMA data_version").fetchone()[0]
    for line in store._select_json(filter, False):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        filter = filter.following(int(line[12 : line.index(",")]))
    while store.conn.execute("PRAGMA data_version").fetchone()[0] == version:
        time.sleep(0.05)
"""


def build(store: Path, data: Path, chunk: int = 100_000) -> None:
    """The store: one rare.event, then the events of the data, written a chunk at a time (one
    transaction each) to keep this process small."""
    remove_store(store)
    with Store(store) as s, open(data, "rb") as f:
        s.append([NewEvent("rare-0", rare, {}) for rare in RARE])  # a type per follower: each has its last match here
        batch: list[bytes] = []
        for line in f:
            batch.append(line)
            if len(batch) == chunk:
                s.write(read_events(iter(batch)), validate=False)
                batch = []
        if batch:
            s.write(read_events(iter(batch)), validate=False)


def bench_memory(store: Path, n: int, evt: list[str], work: Path) -> dict:
    before = work / "tail_before.py"
    before.write_text(BEFORE)
    commands = {
        "read": evt + ["read", "--format", "ndjson", "--db", str(store)],
        "tail": evt + ["tail", "-n", str(n), "--format", "ndjson", "--db", str(store)],
        "tail_type": evt + ["tail", "-n", str(n), "--type", "order.placed", "--format", "ndjson", "--db", str(store)],
        "tail_category": evt + ["tail", "-n", str(n), "--category", "order", "--format", "ndjson", "--db", str(store)],
        "before": [sys.executable, str(before), str(store), str(n)],
    }
    return {name: run(cmd, rss=True) for name, cmd in commands.items()}


def cpu_seconds(pid: int) -> float:
    "User + system CPU of a running process (Linux /proc)."
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follower_cpu(store: Path, commits: int, command: list[str], rare: str) -> float:
    """CPU of a follower of a rare type (``evt tail -n 1 -f --type RARE``, whose last match is
    at the start of the log) while `commits` commits of other events land, then one event of
    the rare type it must print (so it has looked at them all)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert f'"{rare}"'.encode() in proc.stdout.readline()  # the last match: it follows from here on
        start = cpu_seconds(proc.pid)
        with Store(store) as s:
            for i in range(commits):
                s.append(NewEvent(f"noise-{i % 7}", "noise.happened", {"i": i}))
                time.sleep(0.01)
            s.append(NewEvent("rare-1", rare, {}))
        line = proc.stdout.readline()
        assert f'"{rare}"'.encode() in line, line
        return cpu_seconds(proc.pid) - start
    finally:
        proc.terminate()
        proc.wait(10)


def report(n: int, memory: dict, cpu: dict, commits: int) -> list[tuple]:
    rows = []
    read_rss = memory["read"][1]

    def mem(name: str, label: str) -> None:
        seconds, rss = memory[name]
        if rss is None:
            rows.append((label, "?", "?", "", "<= 80 MiB", "install GNU time"))
            return
        ratio = rss / read_rss
        met = rss <= 80 * MIB and ratio <= 1.25
        rows.append((label, f"{rss / MIB:.1f} MiB ({seconds:.1f} s)", f"{read_rss / MIB:.1f} MiB ({memory['read'][0]:.1f} s)",
                     f"{ratio:.2f}", "<= 80 MiB, <= 1.25x read", "yes" if met else "NO"))

    mem("tail", f"peak RSS: evt tail -n {n:,}")
    mem("tail_type", f"peak RSS: evt tail -n {n:,} --type order.placed")
    mem("tail_category", f"peak RSS: evt tail -n {n:,} --category order")
    seconds, rss = memory["before"]
    if rss is not None:
        rows.append(("  (before: a list of the last N events)", f"{rss / MIB:.1f} MiB ({seconds:.1f} s)", "", f"{rss / read_rss:.2f}", "info", ""))
    ratio = cpu["big"] / max(cpu["tiny"], 0.01)  # CPU time is counted in 10 ms ticks
    met = cpu["big"] <= max(2 * cpu["tiny"], 0.1)
    rows.append((f"tail -f --type: CPU over {commits} commits, {n:,} vs 10-event log", f"{cpu['big']:.2f} s", f"{cpu['tiny']:.2f} s",
                 f"{ratio:.2f}", "<= 2x (or <= 0.1 s)", "yes" if met else "NO"))
    rows.append(("  (before: query again from the last match)", f"{cpu['before']:.2f} s", "", f"{cpu['before'] / max(cpu['tiny'], 0.01):.2f}", "info", ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log (default 1,000,000)")
    parser.add_argument("--commits", type=int, default=200, help="commits the follower sees (default 200)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep its files (default: a temporary folder)")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="evt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    evt = evt_command()
    try:
        started = time.perf_counter()
        data, store, tiny = work / "events.ndjson", work / "evt.db", work / "tiny.db"
        write_events(data, args.events)
        build(store, data)
        remove_store(tiny)
        with Store(tiny) as s:
            s.append([NewEvent("rare-0", RARE[0], {})] + [NewEvent(f"order-{i}", "order.placed", {"i": i}) for i in range(10)])
        print(f"evt tail benchmark: {args.events:,} events, Python {platform.python_version()}, "
              f"SQLite {__import__('sqlite3').sqlite_version}, {os.cpu_count()} CPUs, {' '.join(evt)}", flush=True)
        memory = bench_memory(store, args.events, evt, work)
        follow = ["tail", "-n", "1", "-f", "--format", "ndjson", "--type"]
        before = work / "follow_before.py"
        before.write_text(FOLLOW_BEFORE)
        cpu = {
            "tiny": follower_cpu(tiny, args.commits, evt + follow + [RARE[0], "--db", str(tiny)], RARE[0]),
            "big": follower_cpu(store, args.commits, evt + follow + [RARE[0], "--db", str(store)], RARE[0]),
            "before": follower_cpu(store, args.commits, [sys.executable, str(before), str(store), RARE[1]], RARE[1]),
        }
        print()
        print_table(report(args.events, memory, cpu, args.commits))
        print(f"\n(finished in {time.perf_counter() - started:.0f} s)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
