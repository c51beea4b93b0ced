"""Commands that connect the log to message brokers: relay (out) and ingest (in)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .command import EvtCommand
from .context import Context
from .options import (
    Category,
    ConfigFile,
    Correlation,
    Db,
    ExactTypes,
    Keys,
    Since,
    Types,
    Until,
    at_least,
)

Url = Annotated[str, typer.Argument(metavar="URL", help="redis://HOST:PORT/DB, amqp://USER:PASS@HOST:PORT/VHOST or nats://HOST:PORT.", show_default=False)]
Key = Annotated[str, typer.Option("--key", metavar="KEY", help="Redis: the stream key.")]
Exchange = Annotated[str, typer.Option("--exchange", metavar="NAME", help="RabbitMQ: the durable topic exchange.")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep going as new events arrive, until interrupted [default: catch up and exit].")]
Retries = Annotated[int, typer.Option("--retries", metavar="N", callback=at_least(0), help="Reconnect attempts when the broker is down or goes away, before giving up (exit 6).")]
Backoff = Annotated[float, typer.Option("--backoff", metavar="SECONDS", callback=at_least(0), help="Seconds before the first reconnect; doubling, at most 30.")]
JsStream = Annotated[str, typer.Option("--stream", metavar="NAME", help="NATS: the JetStream stream (created if missing, taking SUBJECT.>).")]
Subject = Annotated[str, typer.Option("--subject", metavar="SUBJECT", help="NATS: the subject prefix; events go to SUBJECT.TYPE (or SUBJECT.CATEGORY).")]
CLOUDEVENTS_MODES = ("structured", "binary")


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
    event_stream: Annotated[Optional[str], typer.Argument(metavar="STREAM", help="Only this stream of events [default: the whole log].", show_default=False)] = None,
    category: Category = None,
    type: Types = None,
    exact_type: ExactTypes = None,
    correlation_id: Correlation = None,
    since: Since = None,
    until: Until = None,
    key: Key = "events",
    key_per_category: Annotated[bool, typer.Option("--key-per-category", help="Redis: one stream per category, KEY:CATEGORY (e.g. events:order).")] = False,
    maxlen: Annotated[Optional[int], typer.Option("--maxlen", metavar="N", callback=at_least(1), help="Redis: trim each stream to about N entries.", show_default=False)] = None,
    exchange: Exchange = "events",
    stream: JsStream = "events",
    subject: Subject = "events",
    subject_per_category: Annotated[bool, typer.Option("--subject-per-category", help="NATS: publish to SUBJECT.CATEGORY (e.g. events.order) instead of SUBJECT.TYPE.")] = False,
    cloudevents: Annotated[
        Optional[str],
        typer.Option("--cloudevents", metavar="MODE", help="Publish CloudEvents 1.0 instead of evt envelopes: structured (the event as JSON) or binary (attributes in headers, data as the body).", show_default=False),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", metavar="N", callback=at_least(1), help="Events per confirmed batch (the position is saved after each).")] = 1000,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="The relay's name, under which its position is kept [default: the URL and key, exchange or stream, and the filters].", show_default=False)] = None,
    follow: Follow = False,
    retries: Retries = 5,
    backoff: Backoff = 0.5,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
) -> int:
    """Publish the log to Redis Streams, RabbitMQ or NATS JetStream.

    It resumes from where this relay left off. The filters of evt read choose what is published (types as stored); a relay under the same name already running is waited for.

    Redis: XADD with the entry id <position>-0, so Redis refuses an event published twice (exactly once in the stream). RabbitMQ: persistent messages routed by event type, message_id = event id, confirmed before the position moves (at least once). NATS: message number <position> in the stream, guarded by Nats-Expected-Last-Sequence and Nats-Msg-Id (exactly once in the stream). --cloudevents publishes CloudEvents instead of evt envelopes.

    Catches up, prints a summary (published, alreadyPublished, position) and exits; --follow keeps going until Ctrl-C, which prints the summary too (exit 130).
    """
    from ..relay import Retry, target_for
    from ..relay import relay as run_relay
    from ..relay.urls import scheme_of

    scheme = scheme_of(url)
    if scheme != "redis" and (key != "events" or key_per_category or maxlen):
        raise _usage("--key, --key-per-category and --maxlen apply to redis:// targets")
    if scheme != "amqp" and exchange != "events":
        raise _usage("--exchange applies to amqp:// targets")
    if scheme != "nats" and (stream != "events" or subject != "events" or subject_per_category):
        raise _usage("--stream, --subject and --subject-per-category apply to nats:// targets")
    if cloudevents is not None and cloudevents not in CLOUDEVENTS_MODES:
        raise _usage(f"--cloudevents takes structured or binary, not {cloudevents!r}")
    keep_sockets_alive()
    from .log import build_filter

    filter = build_filter(event_stream, category, type, correlation_id, since, until, exact_types=exact_type)
    given = filter_flags(event_stream, category, type, exact_type, correlation_id, since, until)
    nats = {"stream": stream, "subject": subject, "subject_per_category": subject_per_category} if scheme == "nats" else {}
    target = target_for(url, key=key, key_per_category=key_per_category, maxlen=maxlen, exchange=exchange, cloudevents=cloudevents, **nats)
    store = Context(db, config, keys=keys).open(with_model=False, write=True)  # its position is kept in the store
    if name is None and given:
        name = f"{target.name} [{given}]"  # another selection is another relay, with a position of its own
    return summarized(
        run_relay, store, target, name=name, filter=filter if given else None, batch=batch, follow=follow, retry=Retry(retries, backoff, warn), on_wait=warn
    )


def filter_flags(stream, category, types, exact_types, correlation_id, since, until) -> str:
    "The filters as given, for a relay's default name: --category order --type order.* …"
    flags = [stream] if stream else []
    for option, values in (
        ("--category", [category] if category else []),
        ("--type", types or []),
        ("--exact-type", exact_types or []),
        ("--correlation-id", [correlation_id] if correlation_id else []),
        ("--since", [since] if since else []),
        ("--until", [until] if until else []),
    ):
        flags += [f"{option} {value}" for value in values]
    return " ".join(flags)


def ingest(
    url: Url,
    group: Annotated[Optional[str], typer.Option("--group", metavar="GROUP", help="Redis: the consumer group (created at the start of the stream if missing).", show_default=False)] = None,
    key: Key = "events",
    consumer: Annotated[str, typer.Option("--consumer", metavar="NAME", help="Redis: this consumer's name in the group.")] = "evt",
    queue: Annotated[Optional[str], typer.Option("--queue", metavar="QUEUE", help="RabbitMQ: the durable queue to consume (declared if missing).", show_default=False)] = None,
    bind: Annotated[Optional[list[str]], typer.Option("--bind", metavar="KEY", help="RabbitMQ: bind the queue to the exchange with this key, e.g. 'order.*'; repeatable [default: # for a new queue, everything; an existing queue keeps its bindings].", show_default=False)] = None,
    exchange: Exchange = "events",
    durable: Annotated[Optional[str], typer.Option("--durable", metavar="NAME", help="NATS: the durable pull consumer (created if missing, from the start of the stream).", show_default=False)] = None,
    stream: JsStream = "events",
    subject: Annotated[str, typer.Option("--subject", metavar="SUBJECT", help="NATS: the subject prefix of a stream created here (SUBJECT.>).")] = "events",
    ack_wait: Annotated[float, typer.Option("--ack-wait", metavar="SECONDS", callback=at_least(0.1), help="NATS: seconds before a delivered message nobody acknowledged is delivered again (set when the consumer is created).")] = 30.0,
    batch: Annotated[int, typer.Option("--batch", metavar="N", callback=at_least(1), help="Messages per local transaction (acknowledged after it commits).")] = 500,
    wait: Annotated[float, typer.Option("--wait", metavar="SECONDS", callback=at_least(0.01), help="Seconds without a message after which the source counts as drained.")] = 1.0,
    follow: Follow = False,
    retries: Retries = 5,
    backoff: Backoff = 0.5,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
) -> int:
    """Append events from Redis, RabbitMQ or NATS; idempotent by id.

    Reads a Redis stream (in a consumer group), a RabbitMQ queue or a JetStream durable consumer. Messages are evt envelopes or CloudEvents (structured or binary).

    Each batch is acknowledged (XACK / basic.ack / JetStream ack) only after it is committed; after a crash the unacknowledged messages are delivered again and appending them is a no-op. A message that is not an event, or reuses an id with other content, is kept as a dead letter and acknowledged.

    Catches up and exits when nothing arrives for --wait seconds, printing a summary; --follow keeps going until Ctrl-C, which prints the summary too (exit 130).
    """
    from ..relay import Retry, source_for
    from ..relay import ingest as run_ingest
    from ..relay.urls import scheme_of

    scheme = scheme_of(url)
    if scheme != "nats" and (durable or stream != "events" or subject != "events" or ack_wait != 30.0):
        raise _usage("--durable, --stream, --subject and --ack-wait apply to nats:// sources")
    keep_sockets_alive()
    nats = {"stream": stream, "subject": subject, "ack_wait": ack_wait} if scheme == "nats" else {}
    source = source_for(
        url, group=group, key=key, consumer=consumer, queue=queue, bindings=bind, exchange=exchange, prefetch=batch, wait=wait, durable=durable, **nats
    )
    # The model is not asked to validate what arrives (ingest appends it as given), only
    # which fields are personal: those are stored encrypted, as evt append stores them.
    store = Context(db, config, keys=keys).open(create=True)
    return summarized(run_ingest, store, source, batch=batch, follow=follow, retry=Retry(retries, backoff, warn))


def summarized(run, *args, **options) -> int:
    "Run a relay or an ingest and print its summary, also when Ctrl-C ends it (then exit 130)."
    from ..relay.engine import Interrupted

    try:
        result = run(*args, **options)
    except Interrupted as e:
        print_summary(e.result.to_dict())
        return 130
    print_summary(result.to_dict())
    return 0


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
