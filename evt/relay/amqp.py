"""RabbitMQ: relay the log to a topic exchange, ingest it from a queue.

Messages are persistent, routed by event type (so ``order.*`` bindings work), carry the
envelope as their JSON body and the event id as ``message_id``. The relay waits for the
broker's publisher confirm before its position moves; a relay restarted after a crash may
publish the events of its last unconfirmed batch again (at-least-once), which consumers
deduplicate by ``message_id`` — ``evt ingest`` does so by event id.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from ..errors import BrokerRefused, BrokerUnavailable
from .engine import Message, Row
from .urls import connection_refused, host_port, redact, usage_error


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    "pika's errors become evt's, in one place."
    import pika.exceptions as px
    from pika.adapters.utils.connection_workflow import (
        AMQPConnectorException,
        AMQPConnectorStackTimeout,
    )

    try:
        yield
    except (px.ProbableAuthenticationError, px.ProbableAccessDeniedError) as e:
        if _lost_in_handshake(e):
            raise BrokerUnavailable(f"RabbitMQ at {redact(url)} is unavailable: the connection dropped while logging in") from e
        raise BrokerRefused(f"RabbitMQ at {redact(url)} refused the login: {_describe(e)}") from e
    except (px.ChannelClosedByBroker, px.ConnectionClosedByBroker) as e:
        if getattr(e, "reply_code", None) in (320, 541):  # the broker is shutting down or failed
            raise BrokerUnavailable(f"RabbitMQ at {redact(url)} closed the connection: {e.reply_text}") from e
        raise BrokerRefused(f"RabbitMQ at {redact(url)} refused: {e.reply_code} {e.reply_text}") from e
    except (px.AMQPError, AMQPConnectorException, OSError) as e:
        # Connection, channel and protocol errors, and pika's connection workflow failing
        # (AMQPConnectorStackTimeout: something answers on the port, but not AMQP in time).
        where = host_port(url, 5671 if url.lower().startswith("amqps") else 5672)
        if connection_refused(e):
            reason = f"nothing is listening on {where} (connection refused)"
        elif isinstance(e, AMQPConnectorStackTimeout):
            reason = f"no AMQP handshake with {where} in time (is it RabbitMQ that listens there?)"
        else:
            reason = _describe(e)
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)} is unavailable: {reason}") from e
    except ValueError as e:
        # pika sets up its transport on the socket it connected; if the connection drops
        # in between, that raises ValueError ("Expected connected socket, but
        # getpeername() failed"), and pika hands it on unwrapped. A lost connection, like
        # any other. A ValueError from anywhere else is a bug, and stays one.
        if not _raised_in_pika(e):
            raise
        raise BrokerUnavailable(f"RabbitMQ at {redact(url)} is unavailable: the connection dropped while connecting") from e


def _raised_in_pika(error: BaseException) -> bool:
    "Whether the error was raised by pika's own code (the innermost frame of its traceback)."
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("pika.")


def check_url(url: str) -> None:
    """UsageError unless pika takes every part of the URL, naming the parameter it refuses.

    pika's parser raises whatever its parts raise (ValueError, TypeError, SyntaxError
    from a ``?ssl_options=`` literal, OSError from a certificate file it names), so any
    exception here means the URL cannot be used.
    """
    import pika
    from urllib.parse import parse_qsl, urlsplit

    for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name in OWN_RETRIES:
            raise usage_error("RabbitMQ", url, f"{name}: evt retries a lost connection itself; use --retries and --backoff")
    try:
        pika.URLParameters(url)
    except Exception as e:
        raise usage_error("RabbitMQ", url, _refused_part(url, e)) from None


# pika's own reconnect loop (it would sleep and retry inside each of evt's attempts).
OWN_RETRIES = ("connection_attempts", "retry_delay")


def _refused_part(url: str, error: Exception) -> str:
    "What pika refused in a URL: the first query parameter it refuses on its own, or the error."
    from urllib.parse import parse_qsl, urlencode, urlsplit

    import pika

    parts = urlsplit(url)
    if parts.username is not None and parts.password is None:
        return "a user name needs a password: amqp://USER:PASS@HOST:PORT/VHOST"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            pika.URLParameters(f"{parts.scheme}://localhost/?{urlencode({name: value})}")
        except Exception as e:
            return _parameter_error(name, e)
    return _parameter_error(None, error)


def _parameter_error(name: str | None, error: Exception) -> str:
    "pika's refusal of a parameter in words (a literal it could not read says so, not 'malformed node')."
    text = str(error)
    if text.startswith("Unknown URL parameter"):
        return f"unknown parameter {name!r}"
    if isinstance(error, SyntaxError) or (isinstance(error, ValueError) and "malformed node" in text):
        example = " such as {'ca_certs': '/path/ca.pem'}" if name == "ssl_options" else ""
        text = f"not a Python dict literal{example}"
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = text.split(": ValueError(")[0] or type(error).__name__
    return f"{name}: {text}" if name and name not in text else text


def _lost_in_handshake(error: BaseException) -> bool:
    """pika's guess of a refused login or vhost is a connection that ended during the
    handshake, whatever ended it; RabbitMQ refuses with a Connection.Close (403), while a
    connection lost on the way (a broker restarting, a network cut) is a StreamLostError,
    worth retrying. pika keeps only the original error's repr."""
    return bool(error.args) and str(error.args[0]).startswith("StreamLostError")


def _describe(error: BaseException) -> str:
    "The innermost cause pika wraps, in words (pika nests the socket's error)."
    while True:
        inner = getattr(error, "exception", None)
        if inner is None and error.args and isinstance(error.args[0], BaseException):
            inner = error.args[0]
        if not isinstance(inner, BaseException):
            break
        error = inner
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def connect(url: str):
    import pika

    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    with translate_errors(url):
        return pika.BlockingConnection(params)


class AmqpTarget:
    """Publishes rows to a durable topic exchange and waits for the broker's confirms.

    pika's blocking channel waits for each message's confirm before sending the next,
    one round trip (and one broker fsync) per event. Publishing a whole batch on the
    underlying asynchronous channel and then waiting for all its confirms is an order of
    magnitude faster, and no less safe: the position moves only when every message of
    the batch is confirmed.
    """

    kind = "amqp"

    def __init__(self, url: str, *, exchange: str = "events", confirm_timeout: float = 60.0, cloudevents: str | None = None):
        self.url = url
        self.cloudevents = cloudevents  # None, "structured" or "binary" (evt.log.cloudevents)
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self.name = f"{redact(url)}#{exchange}"
        self.connection = self.channel = None
        self.published = 0  # delivery tags are numbered 1, 2, … per channel
        self.unconfirmed: set[int] = set()
        self.nacked = False

    def connect(self) -> None:
        self.connection = connect(self.url)
        with translate_errors(self.url):
            self.channel = self.connection.channel()
            self.channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            selected: list[bool] = []
            self.channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=lambda _frame: selected.append(True))
            self._wait_until(lambda: bool(selected))
        self.published, self.unconfirmed, self.nacked = 0, set(), False

    def _on_confirm(self, frame) -> None:
        from pika.spec import Basic

        method = frame.method
        if isinstance(method, Basic.Nack):
            self.nacked = True
        if method.multiple:
            self.unconfirmed = {tag for tag in self.unconfirmed if tag > method.delivery_tag}
        else:
            self.unconfirmed.discard(method.delivery_tag)

    def publish(self, rows: Sequence[Row]) -> tuple[int, int]:
        "Publish the rows, then wait until the broker confirmed them all; (published, 0)."
        from pika import BasicProperties

        from ..log.cloudevents import binary_attributes_of

        publish, exchange = self.channel._impl.basic_publish, self.exchange
        content_type, binary = _content(self.cloudevents)
        with translate_errors(self.url):
            for position, stream, id, type, timestamp, data, envelope in rows:
                if binary:  # CloudEvents attributes as cloudEvents:-prefixed application properties, data as the body
                    headers = {f"cloudEvents:{k}": v for k, v in binary_attributes_of(envelope).items() if k != "datacontenttype"}
                    body = data
                else:
                    headers, body = {"stream": stream, "position": position, "timestamp": timestamp}, envelope
                properties = BasicProperties(
                    content_type=content_type,
                    delivery_mode=2,
                    message_id=id,
                    type=type,
                    app_id="evt",
                    headers=headers,
                )
                publish(exchange, type, body.encode(), properties)
                self.published += 1
                self.unconfirmed.add(self.published)
            self._wait_until(lambda: not self.unconfirmed or self.nacked)
        if self.nacked:
            raise BrokerUnavailable(f"RabbitMQ at {redact(self.url)} did not accept a message (nack); publishing the batch again")
        return len(rows), 0

    def _wait_until(self, done) -> None:
        "Serve the connection until ``done()``; BrokerUnavailable if the channel closes or nothing comes."
        import time

        deadline = time.monotonic() + self.confirm_timeout
        while not done():
            if self.channel.is_closed:
                raise BrokerUnavailable(f"RabbitMQ at {redact(self.url)} closed the channel")
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"RabbitMQ at {redact(self.url)} confirmed nothing for {self.confirm_timeout:g}s")
            self.connection.process_data_events(time_limit=0.1)

    def idle(self) -> None:
        "Answer the broker's heartbeats while waiting for events."
        with translate_errors(self.url):
            self.connection.process_data_events(0)

    def close(self) -> None:
        _close(self.connection)
        self.connection = self.channel = None


def _content(cloudevents: str | None) -> tuple[str, bool]:
    "(the messages' content_type, whether they are binary CloudEvents)."
    from ..log.cloudevents import CONTENT_TYPE, DATA_CONTENT_TYPE

    return (CONTENT_TYPE if cloudevents == "structured" else DATA_CONTENT_TYPE), cloudevents == "binary"


class AmqpSource:
    """Messages from a durable queue, bound to the exchange by the given keys.

    Without keys, a queue that does not exist yet is bound with ``#`` (every event); an
    existing queue keeps the bindings it has.

    Unacknowledged messages go back to the queue when the connection ends, so a crash
    before the acknowledgement means they are delivered (and appended, idempotently) again.
    """

    def __init__(self, url: str, *, queue: str, bindings: list[str] | None = None, exchange: str = "events", prefetch: int = 500, wait: float = 1.0):
        self.url = url
        self.queue = queue
        self.bindings = bindings
        self.exchange = exchange
        self.prefetch = prefetch
        self.wait = wait
        self.tick = min(0.05, wait)
        self.name = f"{redact(url)}#{queue}"
        self.connection = self.channel = self.deliveries = None

    def connect(self) -> None:
        self.connection = connect(self.url)
        with translate_errors(self.url):
            bindings = self.bindings if self.bindings is not None else self._default_bindings()
            channel = self.channel = self.connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            channel.queue_declare(self.queue, durable=True)
            for key in bindings:
                channel.queue_bind(self.queue, self.exchange, routing_key=key)
            channel.basic_qos(prefetch_count=self.prefetch)
            self.deliveries = channel.consume(self.queue, inactivity_timeout=self.tick)

    def _default_bindings(self) -> list[str]:
        "``#`` for a new queue; none for an existing one (a passive declare closes its channel when the queue is missing)."
        import pika.exceptions as px

        probe = self.connection.channel()
        try:
            probe.queue_declare(self.queue, passive=True)
        except px.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return ["#"]
            raise
        probe.close()
        return []

    def fetch(self, count: int) -> list[Message]:
        "Up to ``count`` messages: what is there, or [] when nothing came for ``wait`` seconds."
        messages: list[Message] = []
        idle = 0.0
        with translate_errors(self.url):
            for method, properties, body in self.deliveries:
                if method is None:
                    if messages:
                        return messages
                    idle += self.tick
                    if idle >= self.wait:
                        return messages
                    continue
                message_id = getattr(properties, "message_id", None)
                messages.append(Message(method.delivery_tag, body, broker_id=f"amqp:{message_id}" if message_id else None, attributes=_cloudevent_attributes(properties)))
                if len(messages) >= count:
                    return messages
        return messages

    def ack(self, messages: Sequence[Message]) -> None:
        with translate_errors(self.url):
            self.channel.basic_ack(delivery_tag=messages[-1].ref, multiple=True)

    def close(self) -> None:
        _close(self.connection)
        self.connection = self.channel = self.deliveries = None


def _cloudevent_attributes(properties) -> dict | None:
    "A binary CloudEvent's attributes (cloudEvents: or cloudEvents_ application properties); None for other messages."
    headers = getattr(properties, "headers", None)
    if not headers:
        return None
    from ..log.cloudevents import binary_attributes

    return binary_attributes(headers, ("cloudEvents:", "cloudEvents_"), getattr(properties, "content_type", None))


def _close(connection) -> None:
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # closing a connection that is already broken
        pass
