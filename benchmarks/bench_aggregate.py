"""Benchmark: loading a 100,000-event stream with snapshots vs a 100-event stream.

    python benchmarks/bench_aggregate.py [--events 100000] [--repeat 50]

Worst case: the long stream's snapshot is snapshot_every - 1 events behind its head
(each load restores it and folds 99 events), against 100 events folded from the start.
Best case: both streams with a snapshot at their head.
Prints the timings and the ratios; exits 1 if the long stream costs more than 2x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from evt import NewEvent, Store, load_model
from evt.model.aggregates import get_aggregate, load, snapshot

MODEL = '''
from pydantic import BaseModel
from evt import Model, on

model = Model()


@model.aggregate("account", snapshot_every=100)
class Account(BaseModel):
    owner: str | None = None
    balance: float = 0
    moves: int = 0

    @on("account.opened")
    def opened(self, event):
        self.owner = event.data["owner"]

    @on("account.credited")
    def credited(self, event):
        self.balance = round(self.balance + event.data["amount"], 2)
        self.moves += 1

    @on("account.debited")
    def debited(self, event):
        self.balance = round(self.balance - event.data["amount"], 2)
        self.moves += 1
'''

LIMIT = 2.0


def events(stream: str, count: int, start: int = 0):
    for i in range(start, start + count):
        if i == 0:
            yield NewEvent(stream, "account.opened", {"owner": "Ann"})
        else:
            yield NewEvent(stream, "account.credited" if i % 3 else "account.debited", {"amount": (i % 97) + 0.5})


def timed(fn, repeat: int) -> float:
    "The median of ``repeat`` runs, in milliseconds."
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "model.py").write_text(MODEL)
        model = load_model(str(Path(folder) / "model.py"))
        account = get_aggregate(model, "account")
        store = Store(Path(folder) / "events.db", synchronous="normal", model=model)
        every = account.snapshot_every
        store.write(events("account-big", args.events - (every - 1)), validate=False)
        store.write(events("account-small", 100), validate=False)
        setup = time.perf_counter()
        load(store, account, "account-big")  # the first load folds everything and stores a snapshot
        first = (time.perf_counter() - setup) * 1000
        store.write(events("account-big", every - 1, start=args.events - (every - 1)), validate=False)
        big = load(store, account, "account-big")
        assert big.revision == args.events and big.snapshot_revision == args.events - (every - 1), big

        big_ms = timed(lambda: load(store, account, "account-big"), args.repeat)
        small_folded_ms = timed(lambda: load(store, account, "account-small", use_snapshots=False), args.repeat)
        snapshot(store, account, "account-big")  # both at their head: the best case, for each
        snapshot(store, account, "account-small")
        big_at_head_ms = timed(lambda: load(store, account, "account-big"), args.repeat)
        small_at_head_ms = timed(lambda: load(store, account, "account-small"), args.repeat)
        store.close()

    print(f"first load of {args.events:,} events (folds all, stores a snapshot): {first:8.1f} ms")
    rows = [
        (f"worst case: {args.events:,} events, snapshot {every - 1} behind", big_ms),
        ("            100 events, no snapshot", small_folded_ms),
        (f"best case:  {args.events:,} events, snapshot at the head", big_at_head_ms),
        ("            100 events, snapshot at the head", small_at_head_ms),
    ]
    for label, ms in rows:
        print(f"{label:<55} {ms:8.2f} ms")
    ratios = {"worst case": big_ms / small_folded_ms, "best case": big_at_head_ms / small_at_head_ms}
    for name, ratio in ratios.items():
        print(f"ratio, {name}: {ratio:.2f}x (limit {LIMIT:.0f}x)")
    worst = max(ratios.values())
    if worst > LIMIT:
        print(f"FAIL: a {args.events:,}-event stream costs {worst:.2f}x a 100-event one", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
