"""Commands that connect the log to message brokers: relay (out) and ingest (in)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, at_least

Url = Annotated[str, typer.Argument(metavar="URL", help="redis://HOST:PORT/DB or amqp://USER:PASS@HOST:PORT/VHOST.", show_default=False)]
Key = Annotated[str, typer.Option("--key", metavar="KEY", help="Redis: the stream key.")]
Exchange = Annotated[str, typer.Option("--exchange", metavar="NAME", help="RabbitMQ: the durable topic exchange.")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep going as new events arrive, until interrupted [default: catch up and exit].")]
Retries = Annotated[int, typer.Option("--retries", metavar="N", callback=at_least(0), help="Reconnect attempts when the broker is down or goes away, before giving up (exit 6).")]
Backoff = Annotated[float, typer.Option("--backoff", metavar="SECONDS", callback=at_least(0), help="Seconds before the first reconnect; doubling, at most 30.")]


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand, no_args_is_help=True)(relay)
    app.command(cls=EvtCommand, no_args_is_help=True)(ingest)


def keep_sockets_alive() -> None:
    """Let a write to a broker that closed its socket raise an error, not kill evt.

    The CLI boundary restores SIGPIPE's default so that ``evt read | head -1`` ends
    quietly; with it, a broker going away mid-write would end relay/ingest silently
    (signal 13) instead of reconnecting.
    """
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def warn(message: str) -> None:
    sys.stderr.write(f"evt: {message}\n")
    sys.stderr.flush()


def relay(
    url: Url,
    key: Key = "events",
    key_per_category: Annotated[bool, typer.Option("--key-per-category", help="Redis: one stream per category, KEY:CATEGORY (e.g. events:order).")] = False,
    maxlen: Annotated[Optional[int], typer.Option("--maxlen", metavar="N", callback=at_least(1), help="Redis: trim each stream to about N entries.", show_default=False)] = None,
    exchange: Exchange = "events",
    batch: Annotated[int, typer.Option("--batch", metavar="N", callback=at_least(1), help="Events per confirmed batch (the position is saved after each).")] = 1000,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="The relay's name, under which its position is kept [default: the URL and key or exchange].", show_default=False)] = None,
    follow: Follow = False,
    retries: Retries = 5,
    backoff: Backoff = 0.5,
    db: Db = None,
    config: ConfigFile = None,
) -> None:
    """Publish the log to Redis Streams or RabbitMQ.

    It resumes from where this relay left off.

    Redis: XADD with the entry id <position>-0, so Redis refuses an event published twice (exactly once in the stream). RabbitMQ: persistent messages routed by event type, message_id = event id, confirmed before the position moves (at least once).

    Catches up, prints a summary (published, alreadyPublished, position) and exits; --follow keeps going.
    """
    from ..relay import Retry, target_for
    from ..relay import relay as run_relay
    from ..relay.urls import scheme_of

    if scheme_of(url) == "amqp" and (key != "events" or key_per_category or maxlen):
        raise _usage("--key, --key-per-category and --maxlen apply to redis:// targets")
    if scheme_of(url) == "redis" and exchange != "events":
        raise _usage("--exchange applies to amqp:// targets")
    keep_sockets_alive()
    target = target_for(url, key=key, key_per_category=key_per_category, maxlen=maxlen, exchange=exchange)
    store = Context(db, config).open(with_model=False)
    result = run_relay(store, target, name=name, batch=batch, follow=follow, retry=Retry(retries, backoff, warn))
    print_summary(result.to_dict())


def ingest(
    url: Url,
    group: Annotated[Optional[str], typer.Option("--group", metavar="GROUP", help="Redis: the consumer group (created at the start of the stream if missing).", show_default=False)] = None,
    key: Key = "events",
    consumer: Annotated[str, typer.Option("--consumer", metavar="NAME", help="Redis: this consumer's name in the group.")] = "evt",
    queue: Annotated[Optional[str], typer.Option("--queue", metavar="QUEUE", help="RabbitMQ: the durable queue to consume (declared if missing).", show_default=False)] = None,
    bind: Annotated[Optional[list[str]], typer.Option("--bind", metavar="KEY", help="RabbitMQ: bind the queue to the exchange with this key, e.g. 'order.*'; repeatable [default: # for a new queue, everything; an existing queue keeps its bindings].", show_default=False)] = None,
    exchange: Exchange = "events",
    batch: Annotated[int, typer.Option("--batch", metavar="N", callback=at_least(1), help="Messages per local transaction (acknowledged after it commits).")] = 500,
    wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", callback=at_least(0.01), help="Seconds without a message after which the source counts as drained.")] = 1.0,
    follow: Follow = False,
    retries: Retries = 5,
    backoff: Backoff = 0.5,
    db: Db = None,
    config: ConfigFile = None,
) -> None:
    """Append events from Redis or RabbitMQ, idempotently by id.

    Reads a Redis stream (in a consumer group) or a RabbitMQ queue.

    Each batch is acknowledged (XACK / basic.ack) only after it is committed; after a crash the unacknowledged messages are delivered again and appending them is a no-op. A message that is not an evt envelope, or reuses an id with other content, is kept as a dead letter and acknowledged.

    Catches up and exits when nothing arrives for --wait seconds, printing a summary; --follow keeps going.
    """
    from ..relay import Retry, source_for
    from ..relay import ingest as run_ingest

    keep_sockets_alive()
    source = source_for(url, group=group, key=key, consumer=consumer, queue=queue, bindings=bind, exchange=exchange, prefetch=batch, wait=wait)
    store = Context(db, config).open(create=True, with_model=False)
    result = run_ingest(store, source, batch=batch, follow=follow, retry=Retry(retries, backoff, warn))
    print_summary(result.to_dict())


def print_summary(summary: dict) -> None:
    from ..log.envelope import dumps

    try:
        sys.stdout.write(dumps(summary) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # nobody reads the summary: the work is done all the same
        pass


def _usage(message: str):
    from ..errors import UsageError

    return UsageError(message)
