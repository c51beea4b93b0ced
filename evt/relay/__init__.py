"""Relay the log to message brokers, and ingest events from them.

``relay(store, target)`` publishes every event after the relay's saved position to a
broker (``RedisTarget``, ``AmqpTarget``, ``NatsTarget``), as evt envelopes or as
CloudEvents, and saves the position only after the broker confirmed the batch.
``ingest(store, source)`` appends what a broker delivers (``RedisSource``,
``AmqpSource``, ``NatsSource``) idempotently by event id and acknowledges it only after
the local commit. ``target_for(url, …)`` and ``source_for(url, …)`` pick the broker from
the URL's scheme. The broker clients (redis-py, pika, nats-py) are imported only when a
broker is used.
"""

from __future__ import annotations

from .engine import IngestResult, Interrupted, RelayResult, Retry, ingest, relay
from .urls import source_for, target_for

__all__ = ["IngestResult", "Interrupted", "RelayResult", "Retry", "ingest", "relay", "source_for", "target_for"]
