"""Benchmark: migrating 100,000 events (evt upcast run --out) vs a bulk append of them.

Both are measured in the same run, as real `evt` processes, on the same events: an
orders log where order.placed v1 events (product ids as strings) need the v1 -> v2
upcaster of sample_streams/model.py. The goal: the migration costs no more than about
twice the append.

    python benchmarks/bench_upcast.py [--events 100000] [--upcast-share 0.5] [--only-placed]

Prints one JSON object: events, how many were upcast, seconds for each, the ratio
(and, for information, the time of an --in-place run on the appended store).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

MODEL = '''
import pydantic
from evt import Model

model = Model()


class Item(pydantic.BaseModel):
    productId: str
    quantity: int
    price: float | None


class OrderPlacedV2(pydantic.BaseModel):
    orderId: str
    customerId: str
    items: list[Item]
    total: float


model.schema("order.placed", version=2)(OrderPlacedV2)


@model.upcaster("order.placed", version=1)
def order_placed_v1_to_v2(data):
    items = [{"productId": p, "quantity": 1, "price": None} for p in data["items"]]
    return {**data, "items": items}
'''


def generate(path: str, count: int, upcast_share: float, only_placed: bool = False) -> int:
    "An orders log of ``count`` events; returns how many need upcasting."
    rng = random.Random(7)
    pending = 0
    with open(path, "w") as out:
        n = 0
        order = 0
        while n < count:
            order += 1
            stream = f"order-ord_{order:06d}"
            correlation = f"req-{order}"
            products = [f"prod_{rng.randrange(50)}" for _ in range(rng.randrange(1, 4))]
            if rng.random() < upcast_share:
                data = {"orderId": stream[6:], "customerId": f"cust_{rng.randrange(999)}", "items": products, "total": 12.5}
                version = 1
                pending += 1
            else:
                items = [{"productId": p, "quantity": rng.randrange(1, 4), "price": 4.5} for p in products]
                data = {"orderId": stream[6:], "customerId": f"cust_{rng.randrange(999)}", "items": items, "total": 12.5}
                version = 2
            lines = [("order.placed", version, data), ("order.shipped", 1, {"orderId": stream[6:], "carrier": "ups", "trackingNumber": f"1Z{order}"})]
            if only_placed:
                lines = lines[:1]
            for type_, v, d in lines[: count - n]:
                ts = f"2026-11-{1 + n % 27:02d}T{n % 24:02d}:00:00.000000Z"
                out.write(json.dumps({"stream": stream, "type": type_, "version": v, "data": d, "source": "checkout", "correlationId": correlation, "timestamp": ts}) + "\n")
                n += 1
    return pending


def evt(*args: str, cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "evt", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"evt {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--upcast-share", type=float, default=0.5, help="share of orders stored as order.placed v1")
    parser.add_argument("--only-placed", action="store_true", help="no order.shipped events (with --upcast-share 1: every event is upcast)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "model.py"), "w") as f:
            f.write(MODEL)
        with open(os.path.join(folder, "evt.toml"), "w") as f:
            f.write('db = "events.db"\nmodel = "model.py"\n')
        pending = generate(os.path.join(folder, "events.ndjson"), args.events, args.upcast_share, args.only_placed)
        append = evt("append", "--ndjson", "events.ndjson", "--quiet", cwd=folder)
        migrate = evt("upcast", "run", "--out", "migrated.db", cwd=folder)
        in_place = evt("upcast", "run", "--in-place", cwd=folder)
    print(json.dumps({
        "events": args.events,
        "upcast": pending,
        "appendSeconds": round(append, 3),
        "migrateSeconds": round(migrate, 3),
        "ratio": round(migrate / append, 2),
        "inPlaceSeconds": round(in_place, 3),
        "goal": "ratio <= 2",
    }))


if __name__ == "__main__":
    main()
