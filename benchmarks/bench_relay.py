"""Relay throughput to Redis Streams, against a raw redis-py pipelined XADD loop.

    python benchmarks/bench_relay.py [N] [--url redis://127.0.0.1:6379/0]

Builds a store of N events (default 100,000) in a temporary folder, then in the same run:
  raw    — the same entries (same fields, the same envelope JSON) already in memory,
           XADDed by redis-py in pipelines of 1,000 (auto ids): the ceiling;
  relay  — evt.relay.relay() from the store: read, XADD with explicit ids, confirm,
           save the position after each batch of 1,000 (durable, synchronous=FULL).
Prints events/second for both and the ratio (goal: relay >= 0.5 of raw).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid

import redis

from evt import NewEvent, Store
from evt.relay import relay
from evt.relay.engine import read_rows
from evt.relay.redis import RedisTarget

BATCH = 1000


def build_store(path: str, n: int) -> Store:
    store = Store(path)
    types = ("order.placed", "order.shipped", "account.credited")
    store.write(
        (
            NewEvent(
                f"{types[i % 3].split('.')[0]}-{i % 1000}",
                types[i % 3],
                {"orderId": f"ord_{i}", "total": i * 1.5, "items": [{"productId": "prod_a", "quantity": 2, "price": 9.99}]},
                correlation_id=f"req-{i // 3}",
                source="checkout",
            )
            for i in range(n)
        ),
        validate=False,
    )
    return store


def raw_loop(client, key: str, entries: list[dict]) -> float:
    start = time.perf_counter()
    for i in range(0, len(entries), BATCH):
        pipe = client.pipeline(transaction=False)
        for fields in entries[i : i + BATCH]:
            pipe.xadd(key, fields)
        pipe.execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    prefix = f"evt-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        store = build_store(os.path.join(folder, "events.db"), args.n)
        rows = read_rows(store, 0, args.n)
        entries = [
            {"type": t, "stream": s, "id": i, "position": p, "timestamp": ts, "data": d, "envelope": e}
            for p, s, i, t, ts, d, e in rows
        ]
        try:
            raw = raw_loop(client, f"{prefix}-raw", entries)
            start = time.perf_counter()
            result = relay(store, RedisTarget(args.url, key=f"{prefix}-relay"), batch=BATCH)
            relayed = time.perf_counter() - start
            assert result.published == args.n and client.xlen(f"{prefix}-relay") == args.n
        finally:
            client.delete(f"{prefix}-raw", f"{prefix}-relay")
    print(f"events          {args.n:>10,}")
    print(f"raw XADD loop   {args.n / raw:>10,.0f} events/s  ({raw:.2f}s)")
    print(f"evt relay       {args.n / relayed:>10,.0f} events/s  ({relayed:.2f}s)")
    print(f"ratio           {raw / relayed:>10.2f}  (goal >= 0.5)")


if __name__ == "__main__":
    main()
