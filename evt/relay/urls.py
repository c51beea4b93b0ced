"""Broker URLs: which client a URL needs, and how to show it without its password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "amqps")
NATS_SCHEMES = ("nats",)


def scheme_of(url: str) -> str:
    "``redis``, ``amqp`` or ``nats``; UsageError for anything else."
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES:
        return "redis"
    if scheme in AMQP_SCHEMES:
        return "amqp"
    if scheme in NATS_SCHEMES:
        return "nats"
    raise UsageError(
        f"unsupported broker URL {redact(url)!r}: expected redis://HOST:PORT/DB, amqp://USER:PASS@HOST:PORT/VHOST or nats://HOST:PORT"
    )


def redact(url: str) -> str:
    "The URL with its password replaced by ***, fit for messages and names."
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def target_for(
    url: str,
    *,
    key: str = "events",
    key_per_category: bool = False,
    maxlen: int | None = None,
    exchange: str = "events",
    cloudevents: str | None = None,
    **nats: object,
):
    """The relay target for a broker URL; ``cloudevents`` (``structured`` or ``binary``)
    publishes CloudEvents instead of evt envelopes; ``nats`` are ``NatsTarget``'s options."""
    if cloudevents not in (None, "structured", "binary"):
        raise UsageError(f"--cloudevents takes structured or binary, not {cloudevents!r}")
    scheme = scheme_of(url)
    if scheme == "nats":
        from .nats import NatsTarget

        return NatsTarget(url, cloudevents=cloudevents, **nats)  # type: ignore[arg-type]
    if scheme == "redis":
        from .redis import RedisTarget

        return RedisTarget(url, key=key, key_per_category=key_per_category, maxlen=maxlen, cloudevents=cloudevents)
    from .amqp import AmqpTarget

    return AmqpTarget(url, exchange=exchange, cloudevents=cloudevents)


def source_for(
    url: str,
    *,
    group: str | None = None,
    key: str = "events",
    consumer: str = "evt",
    queue: str | None = None,
    bindings: list[str] | None = None,
    exchange: str = "events",
    prefetch: int = 500,
    wait: float = 1.0,
    durable: str | None = None,
    **nats: object,
):
    "The ingest source for a broker URL; ``nats`` are ``NatsSource``'s options."
    if scheme_of(url) == "nats":
        if not durable:
            raise UsageError("ingest from NATS needs --durable NAME (the durable consumer)")
        from .nats import NatsSource

        return NatsSource(url, durable=durable, wait=wait, max_ack_pending=prefetch, **nats)  # type: ignore[arg-type]
    if scheme_of(url) == "redis":
        if not group:
            raise UsageError("ingest from Redis needs --group NAME (the consumer group)")
        from .redis import RedisSource

        return RedisSource(url, key=key, group=group, consumer=consumer, wait=wait)
    if not queue:
        raise UsageError("ingest from RabbitMQ needs --queue NAME")
    from .amqp import AmqpSource

    return AmqpSource(url, queue=queue, bindings=bindings or None, exchange=exchange, prefetch=prefetch, wait=wait)
