"""Appends now against appends of an earlier evt: the same work, the same machine, one run.

    python benchmarks/bench_appends.py [--base REV] [--events N] [--writes M] [--repeat R]

The earlier evt is a git revision of this repository (default: the one before the hash
chain, issue 13 — what "today" meant when that issue set its cost limit), checked out
with ``git worktree`` into a temporary folder and removed after. Each measurement runs
in a fresh process importing one evt or the other, the two alternating, best of R (other
work on a shared machine only ever adds time):

- bulk: ``Store.write`` of N events in one call (``bench_log.py``'s data: orders with a
  small nested payload, ids and timestamps given, as an import does), the ``NewEvent``s
  made in the measurement from envelopes parsed before it;
- batches of 100: M writes of 100 new events each (store-made ids and timestamps);
- single events: M single-event writes to 100 streams.

The store is WAL with ``synchronous=FULL`` for the first two, ``normal`` for single
events (so the disk's sync, the same for both, does not hide the CPU). Ratios are this
checkout's rate over the earlier one's; targets: >= 0.9 (the chain's limit in issue 13).
Nothing here is a test: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_log import write_events  # noqa: E402

BEFORE_CHAIN = "cec1ffd^"  # the commit before "log: a hash chain over every event"

# Run in a fresh process with the evt under test first on sys.path; prints seconds.
WORK = r"""
import json, sys, time, os
sys.path.insert(0, sys.argv[1])
from evt import NewEvent, Store
kind, folder, source, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
path = os.path.join(folder, "bench-appends.db")
for suffix in ("", "-wal", "-shm", "-lock"):
    if os.path.exists(path + suffix):
        os.remove(path + suffix)
store = Store(path, synchronous="normal" if kind == "single" else "full")
store.write([NewEvent("warm-up", "x")])
if kind == "bulk":
    with open(source, "rb") as f:
        envelopes = [json.loads(line) for line in f]
    start = time.perf_counter()  # the events are made (and checked) in the measurement, as an append makes them
    store.write(NewEvent(e["stream"], e["type"], e.get("data"), id=e.get("id"), version=e.get("version", 1),
                         metadata=e.get("metadata"), timestamp=e.get("timestamp")) for e in envelopes)
elif kind == "batches":
    payload = {"amount": 12.5, "currency": "EUR", "note": "a small event"}
    start = time.perf_counter()
    for w in range(n):
        store.write([NewEvent(f"batch-{w}", "thing.happened", payload, expected=0 if i == 0 else i) for i in range(100)])
else:
    start = time.perf_counter()
    for i in range(n):
        store.write([NewEvent(f"small-{i % 100}", "thing.happened", {"n": i, "note": "a small event"})])
print(time.perf_counter() - start)
store.close()
"""


def run(evt_root: Path, kind: str, folder: Path, source: Path, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", WORK, str(evt_root), kind, str(folder), str(source), str(n)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=BEFORE_CHAIN, help="the earlier revision (default: before the hash chain)")
    parser.add_argument("--events", type=int, default=50_000, help="events in the bulk write")
    parser.add_argument("--writes", type=int, default=2_000, help="writes of batches of 100, and single-event writes")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="evt-bench-appends-"))
    base = folder / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    try:
        label = subprocess.run(["git", "-C", str(base), "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
        print(f"this checkout against {label}")
        source = folder / "events.ndjson"
        write_events(source, args.events)
        rows = []
        for kind, count, unit in (("bulk", args.events, args.events), ("batches", args.writes // 10, args.writes // 10 * 100),
                                  ("single", args.writes, args.writes)):
            now, before = [], []
            for _ in range(args.repeat):
                before.append(run(base, kind, folder, source, count))
                now.append(run(ROOT, kind, folder, source, count))
            rate_now, rate_before = unit / min(now), unit / min(before)
            rows.append((kind, rate_now, rate_before, rate_now / rate_before))
        print(f"\n{'appends':<28} {'now ev/s':>10} {'before ev/s':>12} {'ratio':>6}  target >= 0.9")
        names = {"bulk": f"bulk write of {args.events:,}", "batches": f"{args.writes // 10:,} writes of 100", "single": f"{args.writes:,} single-event writes"}
        for kind, rate_now, rate_before, ratio in rows:
            print(f"{names[kind]:<28} {rate_now:>10,.0f} {rate_before:>12,.0f} {ratio:>6.2f}  {'met' if ratio >= 0.9 else 'NOT met'}")
        print(json.dumps({kind: round(ratio, 3) for kind, _, _, ratio in rows}))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
        for path in folder.iterdir():
            if path.is_file():
                path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
