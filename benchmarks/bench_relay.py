"""Relay throughput to Redis Streams and NATS JetStream, each against a raw client loop.

    python benchmarks/bench_relay.py [N] [--broker redis|nats|all] [--redis URL] [--nats URL]

Builds a store of N events (default 100,000) in a temporary folder, then, per broker, in
the same run:
  Redis  raw   — the same entries (same fields, the same envelope JSON) already in memory,
               XADDed by redis-py in pipelines of 1,000 (auto ids): the ceiling;
         relay — evt.relay.relay() from the store: read, XADD with explicit ids, confirm,
               save the position after each batch of 1,000 (durable, synchronous=FULL).
  NATS   raw   — the same messages (subjects PREFIX.TYPE, the envelope JSON, Nats-Msg-Id)
               already in memory, published by nats-py's JetStream publish_async in
               batches of 1,000, each batch awaited until every ack is in: the ceiling;
         relay — evt.relay.relay() to a JetStream stream: read, publish with Nats-Msg-Id
               and Nats-Expected-Last-Sequence, wait for every ack, save the position
               after each batch of 1,000.
Prints events/second for both and the ratio relay/raw (goal: >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid

from evt import NewEvent, Store
from evt.relay import relay
from evt.relay.engine import read_rows

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


def bench_redis(store: Store, rows: list, url: str) -> tuple[float, float]:
    import redis

    from evt.relay.redis import RedisTarget

    client = redis.Redis.from_url(url)
    prefix = f"evt-bench-{uuid.uuid4().hex[:8]}"
    entries = [
        {"type": t, "stream": s, "id": i, "position": p, "timestamp": ts, "data": d, "envelope": e}
        for p, s, i, t, ts, d, e in rows
    ]
    try:
        start = time.perf_counter()
        for i in range(0, len(entries), BATCH):
            pipe = client.pipeline(transaction=False)
            for fields in entries[i : i + BATCH]:
                pipe.xadd(f"{prefix}-raw", fields)
            pipe.execute()
        raw = time.perf_counter() - start
        start = time.perf_counter()
        result = relay(store, RedisTarget(url, key=f"{prefix}-relay"), batch=BATCH)
        relayed = time.perf_counter() - start
        assert result.published == len(rows) and client.xlen(f"{prefix}-relay") == len(rows)
    finally:
        client.delete(f"{prefix}-raw", f"{prefix}-relay")
    return raw, relayed


def bench_nats(store: Store, rows: list, url: str) -> tuple[float, float]:
    import nats
    from nats.js.api import StreamConfig

    from evt.relay.nats import NatsTarget, subject_part

    prefix = f"evt-bench-{uuid.uuid4().hex[:8]}"
    raw_stream, relay_stream = f"{prefix}-raw", f"{prefix}-relay"
    messages = [(f"{raw_stream}.{subject_part(t, dotted=True)}", e.encode(), i) for p, s, i, t, ts, d, e in rows]

    async def raw_loop() -> float:
        nc = await nats.connect(url)
        js = nc.jetstream(publish_async_max_pending=BATCH)
        await js.add_stream(StreamConfig(name=raw_stream, subjects=[f"{raw_stream}.>"]))
        try:
            start = time.perf_counter()
            for i in range(0, len(messages), BATCH):
                acks = [await js.publish_async(subject, body, headers={"Nats-Msg-Id": id}) for subject, body, id in messages[i : i + BATCH]]
                await asyncio.gather(*acks)
            elapsed = time.perf_counter() - start
            assert (await js.stream_info(raw_stream)).state.messages == len(messages)
            return elapsed
        finally:
            await js.delete_stream(raw_stream)
            await nc.close()

    async def delete_relay_stream() -> int:
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            count = (await js.stream_info(relay_stream)).state.messages
            await js.delete_stream(relay_stream)
            return count
        finally:
            await nc.close()

    raw = asyncio.run(raw_loop())
    try:
        start = time.perf_counter()
        result = relay(store, NatsTarget(url, stream=relay_stream, subject=relay_stream), batch=BATCH)
        relayed = time.perf_counter() - start
    finally:
        count = asyncio.run(delete_relay_stream())
    assert result.published == len(rows) == count
    return raw, relayed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--broker", choices=("redis", "nats", "all"), default="all")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = build_store(os.path.join(folder, "events.db"), args.n)
        rows = read_rows(store, 0, args.n)
        print(f"events              {args.n:>10,}")
        for broker, bench, url in (("redis", bench_redis, args.redis), ("nats", bench_nats, args.nats)):
            if args.broker not in (broker, "all"):
                continue
            with store.transaction():  # each relay starts from the beginning
                store.conn.execute("DELETE FROM evt_checkpoints WHERE kind = 'relay'")
            raw, relayed = bench(store, rows, url)
            label = {"redis": "raw XADD loop", "nats": "raw nats-py loop"}[broker]
            print(f"{broker:<6}{label:<16}{args.n / raw:>9,.0f} events/s  ({raw:.2f}s)")
            print(f"{broker:<6}{'evt relay':<16}{args.n / relayed:>9,.0f} events/s  ({relayed:.2f}s)")
            print(f"{broker:<6}{'ratio':<16}{raw / relayed:>9.2f}  (goal >= 0.5)")


if __name__ == "__main__":
    main()
