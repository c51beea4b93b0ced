"""What personal-field encryption costs, measured against a baseline in the same run.

1. ``Store.read_json`` of a log with no personal fields (SQLite also looks for encrypted
   values in each row) against the bare SQL line query it used before. Target: ≤ 1.10×.
2. ``Store.read_json`` of a log whose every event has two personal fields (decrypted in
   Python) against the same log read by ``Store.read`` of plain events. Reported only.
3. Appends (batches of 500) of events with two personal fields, 1,000 subjects, against
   the same events with no personal fields. Reported only.

Run: ``.venv/bin/python benchmarks/bench_forget.py [--events N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from evt.log.envelope import NewEvent  # noqa: E402
from evt.log.store import JSON_LINE, Store  # noqa: E402


class Personal:
    "The hooks of a model whose customer.registered has two personal fields."

    upcastable = frozenset()

    def validate(self, event):
        pass

    def upcast(self, event):
        return event

    def renamed_types(self):
        return {}

    def personal(self, type_, version, data):
        return (data["customer_id"], ("email", "name")) if type_ == "customer.registered" else None


def events(n: int, type_: str) -> list[NewEvent]:
    return [
        NewEvent(f"customer-{i % 1000}", type_, {"customer_id": f"c-{i % 1000}", "email": f"p{i}@example.com", "name": f"Person {i}", "plan": "pro"})
        for i in range(n)
    ]


def timed(fn, repeat: int = 3) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    n = parser.parse_args().events
    folder = tempfile.mkdtemp(prefix="bench-forget-")
    plain = Store(os.path.join(folder, "plain.db"), synchronous="normal", model=Personal())
    personal = Store(os.path.join(folder, "personal.db"), synchronous="normal", model=Personal())

    def append(store, type_):
        batch = events(n, type_)
        return lambda: [store.write(batch[i : i + 500]) for i in range(0, n, 500)]

    plain_append = timed(append(plain, "customer.seen"), 1)
    personal_append = timed(append(personal, "customer.registered"), 1)

    def bare():
        for _ in plain.conn.execute(f"SELECT {JSON_LINE} FROM events ORDER BY position"):
            pass

    def evt_plain():
        for _ in plain.read_json():
            pass

    def evt_personal():
        for _ in personal.read_json():
            pass

    def evt_plain_events():
        for _ in plain.read():
            pass

    baseline, measured = timed(bare), timed(evt_plain)
    ratio = measured / baseline
    print(f"read_json, no personal fields: {measured:.3f} s against the bare SQL lines {baseline:.3f} s: {ratio:.2f}x (target <= 1.10x: {'met' if ratio <= 1.10 else 'NOT met'})")
    decrypting, python_read = timed(evt_personal), timed(evt_plain_events)
    print(f"read_json, two personal fields per event: {decrypting:.3f} s against Store.read of plain events {python_read:.3f} s: {decrypting / python_read:.2f}x")
    print(f"append in batches of 500: personal {personal_append:.3f} s against plain {plain_append:.3f} s: {personal_append / plain_append:.2f}x")


if __name__ == "__main__":
    main()
