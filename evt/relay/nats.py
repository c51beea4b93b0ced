"""NATS JetStream: relay the log into a stream exactly once; ingest it with a durable consumer.

The relay publishes every event to one JetStream stream (created if missing, with the
subjects ``PREFIX.>``), on the subject ``PREFIX.TYPE`` (or ``PREFIX.CATEGORY``), with
two guards JetStream checks itself:

- ``Nats-Expected-Last-Sequence: position - 1``: the stream takes the event only as its
  message number ``position``. A relay restarted after a crash publishes its last batch
  again, and JetStream refuses what it already has; evt then checks that the message at
  that sequence carries the event's id (``Nats-Msg-Id``), so a stream that another store
  or program also publishes to is an error (exit 6), never a silent skip.
- ``Nats-Msg-Id: event id``: within the stream's duplicate window JetStream answers a
  re-published event with the sequence it already has (``duplicate``).

The position moves only after JetStream acknowledged the whole batch. The ingest reads
through a durable pull consumer with explicit acks, appends idempotently by event id and
acknowledges after the commit; what a killed ingest never acknowledged is delivered again
after the consumer's ack wait.

nats-py is asyncio; evt is synchronous. Each target and source runs its client on a
private event loop, driven by ``run()`` from the calling thread, so the engine's
synchronous Target/Source protocols (and their retries) apply unchanged. nats-py's own
reconnecting is off: evt's backoff decides.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from ..errors import BrokerRefused, BrokerUnavailable, UsageError
from ..log.envelope import category_of
from .engine import Message, Row
from .urls import redact as redact_password

WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed Nats-Expected-Last-Sequence
NOT_FOUND_CODES = (10059, 10014, 10037)  # stream, consumer, message not found
STREAM_NAME_IN_USE = 10058

# A subject token: printable ASCII but for the separators, wildcards and % (which escapes).
_TOKEN_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - set(".*>%")
_STREAM_NAME = re.compile(r"[^\s.*>/\\]+")

FLUSH_TIMEOUT = 5  # seconds for the server to answer a PING (as long as connecting may take)


def _escape(char: str) -> str:
    return char if char in _TOKEN_SAFE else "".join(f"%{b:02X}" for b in char.encode())


def subject_part(name: str, dotted: bool) -> str:
    """A type (``dotted``: its dots separate subject tokens, so ``order.*`` subscriptions
    work) or a category as subject tokens. Anything a token cannot hold (spaces,
    wildcards, non-ASCII, a dot that would leave a token empty) is percent-encoded."""
    out: list[str] = []
    token = ""
    for i, char in enumerate(name):
        if char == "." and dotted and token and i + 1 < len(name) and name[i + 1] != ".":
            out.append(token)
            token = ""
        else:
            token += _escape(char)
    out.append(token)
    return ".".join(out)


def check_stream_name(name: str) -> str:
    if not _STREAM_NAME.fullmatch(name) or not name.isprintable():
        raise UsageError(f"--stream {name!r} is not a JetStream stream name (no spaces, '.', '*', '>', '/' or '\\')")
    return name


def check_subject_prefix(prefix: str) -> str:
    tokens = prefix.split(".")
    if not all(tokens) or any(set(t) - _TOKEN_SAFE for t in tokens):
        raise UsageError(f"--subject {prefix!r} is not a NATS subject prefix (tokens of printable ASCII, no spaces, '*', '>' or '%')")
    return prefix


def check_url(url: str) -> None:
    "UsageError unless the URL is one nats-py connects with as written: nats://[USER:PASS@ or TOKEN@]HOST[:PORT]."
    from urllib.parse import urlsplit

    from .urls import usage_error

    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query or not parts.hostname:
        raise usage_error("NATS", url, "a NATS URL is nats://[USER:PASSWORD@ or TOKEN@]HOST[:PORT], with no path or query")


def redact(url: str) -> str:
    """The URL fit for messages and names: a password, or a token (``nats://TOKEN@HOST``,
    a user name without a password), as ***."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.username and parts.password is None:
        return url.replace(f"{parts.username}@", "***@", 1)
    return redact_password(url)


@contextmanager
def translate_errors(url: str, last_error: list | None = None) -> Iterator[None]:
    "nats-py's errors become evt's, in one place."
    import asyncio

    import nats.errors as ne
    import nats.js.errors as jse

    shown = redact(url)
    try:
        yield
    except (ne.AuthorizationError, ne.InvalidUserCredentialsError) as e:
        raise BrokerRefused(f"NATS at {shown} refused the login: {_describe(e)}") from e
    except ne.NoServersError as e:
        cause = last_error[-1] if last_error else e
        raise BrokerUnavailable(f"NATS at {shown} is unavailable: {_describe(cause)}") from e
    except jse.ServiceUnavailableError as e:
        raise BrokerUnavailable(f"NATS JetStream at {shown} is unavailable: {e.description}") from e
    except jse.NoStreamResponseError as e:
        raise BrokerRefused(f"NATS at {shown} did not answer for JetStream: is JetStream enabled on the server?") from e
    except jse.APIError as e:
        raise BrokerRefused(f"NATS JetStream at {shown} refused: {e.description} (error {e.err_code})") from e
    except ne.MaxPayloadError as e:
        raise BrokerRefused(f"NATS at {shown} refused a message larger than the server's max_payload") from e
    except (ne.ConnectionClosedError, ne.StaleConnectionError, ne.TimeoutError, ne.OutboundBufferLimitError,
            ne.NoRespondersError, asyncio.TimeoutError, OSError, EOFError) as e:  # fmt: skip
        raise BrokerUnavailable(f"NATS at {shown} is unavailable: {_describe(e)}") from e
    except ne.Error as e:
        if "authorization violation" in str(e).lower():
            raise BrokerRefused(f"NATS at {shown} refused the login: Authorization Violation") from e
        raise BrokerUnavailable(f"NATS at {shown} is unavailable: {_describe(e)}") from e


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    text = str(error).removeprefix("nats: ").strip("'")
    if not text and isinstance(error, TimeoutError):
        return "no answer in time"
    return text or type(error).__name__


class Client:
    "A nats-py connection on a private event loop, driven synchronously with ``run``."

    def __init__(self, url: str):
        self.url = url
        self.loop = None
        self.nc = None
        self.errors: list[BaseException] = []

    def connect(self) -> None:
        import asyncio

        import nats

        self.loop = asyncio.new_event_loop()
        self.errors = []

        async def error_cb(error: BaseException) -> None:
            self.errors.append(error)

        async def quiet() -> None:
            pass

        connecting = nats.connect(
            self.url,
            name="evt",
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would retry forever; 1 gives up after a second, immediate try
            reconnect_time_wait=0,
            connect_timeout=5,
            error_cb=error_cb,
            disconnected_cb=quiet,
            closed_cb=quiet,
        )
        try:
            self.nc = self.run(connecting)
        except BaseException:
            self.close()
            raise

    def run(self, coroutine, timeout: float | None = None) -> Any:
        "Run a coroutine on the private loop; nats-py's errors become evt's."
        import asyncio

        if timeout is not None:
            coroutine = asyncio.wait_for(coroutine, timeout)
        task = asyncio.ensure_future(coroutine, loop=self.loop)
        with translate_errors(self.url, self.errors):
            try:
                return self.loop.run_until_complete(task)
            except BaseException:
                # Ctrl-C raised inside the task ends it with that exception, which asyncio
                # would print as "never retrieved" once the task is collected: retrieve it.
                if task.done() and not task.cancelled():
                    task.exception()
                raise

    def check_open(self) -> None:
        "BrokerUnavailable once the connection is lost (nats-py then closes it)."
        if self.nc is None or self.nc.is_closed:
            raise BrokerUnavailable(f"NATS at {redact(self.url)} is unavailable: {_describe(self.errors[-1]) if self.errors else 'connection closed'}")

    def idle(self) -> None:
        "Let the client answer the server's pings while nothing else happens."
        import asyncio

        self.check_open()
        self.run(asyncio.sleep(0))

    def close(self) -> None:
        import asyncio

        loop, nc = self.loop, self.nc
        self.loop = self.nc = None
        if loop is None:
            return
        try:
            if nc is not None and not nc.is_closed:
                loop.run_until_complete(asyncio.wait_for(nc.close(), 5))
        except Exception:  # closing a connection that is already broken
            pass
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()


def ensure_stream(client: Client, js, stream: str, subject: str):
    "The stream's info; the stream is created (subjects ``SUBJECT.>``) if missing."
    import nats.js.errors as jse
    from nats.js.api import StreamConfig

    async def ensure():
        try:
            return await js.stream_info(stream)
        except jse.NotFoundError:
            pass
        try:
            return await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
        except jse.BadRequestError as e:
            if e.err_code != STREAM_NAME_IN_USE:  # created by another relay or ingest meanwhile
                raise
            return await js.stream_info(stream)

    return client.run(ensure(), timeout=30)


class NatsTarget:
    """Publishes rows to a JetStream stream, each as message number ``position``.

    ``subject``: the subject prefix; a message goes to ``PREFIX.TYPE``, or with
    ``subject_per_category`` to ``PREFIX.CATEGORY``.
    """

    kind = "nats"
    takes_gaps = False  # message number = position: a filtered relay would leave gaps JetStream refuses

    def __init__(
        self,
        url: str,
        *,
        stream: str = "events",
        subject: str = "events",
        subject_per_category: bool = False,
        cloudevents: str | None = None,
        ack_timeout: float = 30.0,
    ):
        self.url = url
        self.stream = check_stream_name(stream)
        self.prefix = check_subject_prefix(subject)
        self.per_category = subject_per_category
        self.cloudevents = cloudevents
        self.ack_timeout = ack_timeout
        self.name = f"{redact(url)}#{stream}"
        self.client = Client(url)
        self.js = None
        self.checked = False
        self.sent = 0
        self.replies: dict[int, Any] = {}

    def subject_for(self, stream: str, type: str) -> str:
        if self.per_category:
            return f"{self.prefix}.{subject_part(category_of(stream), dotted=False)}"
        return f"{self.prefix}.{subject_part(type, dotted=True)}"

    def connect(self) -> None:
        import asyncio

        self.client.connect()
        nc = self.client.nc
        self.js = nc.jetstream()
        ensure_stream(self.client, self.js, self.stream, self.prefix)
        self.inbox = nc.new_inbox()
        self.replies, self.sent, self.arrived = {}, 0, asyncio.Event()

        async def on_reply(msg) -> None:
            self.replies[int(msg.subject.rsplit(".", 1)[1])] = msg
            self.arrived.set()

        self.client.run(nc.subscribe(f"{self.inbox}.*", cb=on_reply))
        self.checked = False

    def publish(self, rows: Sequence[Row]) -> tuple[int, int]:
        "Publish the rows; return once JetStream acknowledged every one: (published, already there)."
        skipped = 0
        if not self.checked:  # first batch since connecting: compare with what the stream holds
            last = self._last_sequence()
            if last < rows[0][0] - 1:
                raise self._behind(last, rows[0][0] - 1)
            behind = [row for row in rows if row[0] <= last]
            self._check_already_there(behind)
            skipped, rows = len(behind), rows[len(behind) :]
            self.checked = True
        if not rows:
            return 0, skipped
        first = self.sent
        self.client.run(self._send(rows))
        self.client.run(self._wait_for(first, len(rows)))
        published, already = self._read_acks(rows, first)
        return published, skipped + already

    def _last_sequence(self) -> int:
        return self.client.run(self.js.stream_info(self.stream), timeout=self.ack_timeout).state.last_seq

    async def _send(self, rows: Sequence[Row]) -> None:
        from ..log.cloudevents import (
            CONTENT_TYPE,
            DATA_CONTENT_TYPE,
            binary_attributes_of,
            percent_encode,
        )

        publish, inbox, stream, subject_for = self.client.nc.publish, self.inbox, self.stream, self.subject_for
        mode = self.cloudevents
        content_type = CONTENT_TYPE if mode == "structured" else DATA_CONTENT_TYPE
        for position, evt_stream, id, type, _timestamp, data, document in rows:
            headers = {
                "Nats-Msg-Id": id,
                "Nats-Expected-Last-Sequence": str(position - 1),
                "Nats-Expected-Stream": stream,
                "Content-Type": content_type,
            }
            if mode == "binary":  # attributes as ce- headers (percent-encoded, as in HTTP), data as the body
                for name, value in binary_attributes_of(document).items():
                    if name != "datacontenttype":
                        headers[f"ce-{name}"] = percent_encode(value)
                body = data
            else:
                body = document
            await publish(subject_for(evt_stream, type), body.encode(), reply=f"{inbox}.{self.sent}", headers=headers)
            self.sent += 1

    async def _wait_for(self, first: int, count: int) -> None:
        "Until JetStream answered messages ``first`` … ``first + count - 1``; BrokerUnavailable if the connection goes."
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout
        wanted = range(first, first + count)
        while not all(n in self.replies for n in wanted):
            self.client.check_open()
            if loop.time() > deadline:
                raise BrokerUnavailable(f"NATS at {redact(self.url)} acknowledged nothing for {self.ack_timeout:g}s")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    def _read_acks(self, rows: Sequence[Row], first: int) -> tuple[int, int]:
        published, refused = 0, []
        for n, row in enumerate(rows, first):
            msg = self.replies.pop(n)
            position = row[0]
            if msg.headers and msg.headers.get("Status") == "503":
                raise BrokerRefused(
                    f"no JetStream stream takes the subject {self.subject_for(row[1], row[3])!r} on NATS at {redact(self.url)}: "
                    f"stream {self.stream!r} must take {self.prefix}.>"
                )
            reply = json.loads(msg.data)
            error = reply.get("error")
            if error is not None:
                last = _wrong_last_sequence(error)
                if last is None:
                    raise BrokerRefused(f"NATS JetStream at {redact(self.url)} refused event {row[2]}: {error.get('description')} (error {error.get('err_code')})")
                if last < position - 1:
                    raise self._behind(last, position - 1)
                refused.append((row, last))
                continue
            if reply.get("seq") != position:
                raise self._foreign(position, row[2], f"took it as message {reply.get('seq')}")
            if reply.get("duplicate"):
                refused.append((row, None))  # JetStream recognised the id: it has it, at the right sequence
            else:
                published += 1
        self._check_already_there([row for row, last in refused if last is not None])
        return published, len(refused)

    def _check_already_there(self, rows: Sequence[Row]) -> None:
        """Make sure the messages JetStream already has at these rows' positions carry their
        event ids — this store's events, published before a crash — and not another
        store's or program's (which would make this relay skip its events silently);
        BrokerRefused otherwise. A message deleted or purged since counts as published."""
        if not rows:
            return
        import asyncio

        import nats.js.errors as jse

        async def get(position: int):
            try:
                return await self.js.get_msg(self.stream, position)
            except jse.NotFoundError:
                return None

        async def get_all():
            return await asyncio.gather(*(get(row[0]) for row in rows))

        for row, msg in zip(rows, self.client.run(get_all(), timeout=self.ack_timeout)):
            if msg is None:
                continue  # deleted or purged since it was published
            if (msg.headers or {}).get("Nats-Msg-Id") != row[2]:
                raise self._foreign(row[0], row[2], "holds another message there")

    def _foreign(self, position: int, id: str, what: str) -> BrokerRefused:
        return BrokerRefused(
            f"JetStream stream {self.stream!r} {what} at sequence {position}, where this store's event {id} belongs: "
            f"another store or program publishes to that stream; relay each store to its own --stream"
        )

    def _behind(self, last: int, position: int) -> BrokerRefused:
        return BrokerRefused(
            f"JetStream stream {self.stream!r} ends at sequence {last}, but this relay has published up to position {position}: "
            f"the stream was deleted or recreated since; relay from the start with a new --name, or to another --stream"
        )

    def idle(self) -> None:
        self.client.idle()

    def close(self) -> None:
        self.client.close()
        self.js = None


def _wrong_last_sequence(error: dict) -> int | None:
    "The stream's last sequence, when JetStream refused a message for its expected last sequence."
    if error.get("err_code") != WRONG_LAST_SEQUENCE:
        return None
    match = re.search(r"(\d+)\s*$", error.get("description") or "")
    return int(match.group(1)) if match else None


class NatsSource:
    """Messages of a JetStream stream through a durable pull consumer (created if missing:
    every message from the start, explicit acks, redelivered after ``ack_wait`` seconds
    without an ack, and at most ``max_ack_pending`` delivered but unacknowledged — one
    batch — so the batch of an ingest that died is delivered again before anything newer,
    and events arrive in stream order).

    ``fetch`` returns [] only when the consumer has nothing left: no message undelivered
    and none delivered but unacknowledged (a killed ingest's, which come back after the
    ack wait).
    """

    def __init__(
        self,
        url: str,
        *,
        durable: str,
        stream: str = "events",
        subject: str = "events",
        wait: float = 1.0,
        ack_wait: float = 30.0,
        max_ack_pending: int = 500,
    ):
        self.url = url
        self.durable = check_stream_name(durable)
        self.stream = check_stream_name(stream)
        self.prefix = check_subject_prefix(subject)
        self.wait = wait
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.name = f"{redact(url)}#{stream}/{durable}"
        self.client = Client(url)
        self.js = self.sub = None
        self.limit: int | None = None  # the consumer's max_ack_pending

    def connect(self) -> None:
        import nats.js.errors as jse
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self.client.connect()
        self.js = js = self.client.nc.jetstream()
        ensure_stream(self.client, js, self.stream, self.prefix)

        async def ensure_consumer():
            try:
                info = await js.consumer_info(self.stream, self.durable)
            except jse.NotFoundError:
                config = ConsumerConfig(
                    durable_name=self.durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=self.ack_wait,
                    max_ack_pending=self.max_ack_pending,
                )
                info = await js.add_consumer(self.stream, config)
            # A pull for more than the consumer lets be unacknowledged waits out its whole timeout.
            self.limit = info.config.max_ack_pending if info.config.max_ack_pending and info.config.max_ack_pending > 0 else None
            return await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

        self.sub = self.client.run(ensure_consumer(), timeout=30)

    def fetch(self, count: int) -> list[Message]:
        import asyncio

        if self.limit is not None:
            count = min(count, self.limit)

        async def fetch():
            try:
                return await self.sub.fetch(count, timeout=self.wait)
            except asyncio.TimeoutError:  # nats-py's TimeoutError too: nothing came
                return []

        while True:
            self.client.check_open()
            messages = self.client.run(fetch(), timeout=self.wait + 30)
            if messages:
                return [self._message(m) for m in messages]
            info = self.client.run(self.js.consumer_info(self.stream, self.durable), timeout=30)
            if not info.num_pending and not info.num_ack_pending:
                return []

    def _message(self, msg) -> Message:
        from ..log.cloudevents import binary_attributes, percent_decode

        headers = msg.headers or {}
        try:
            seq = msg.metadata.sequence.stream
        except Exception:  # not a JetStream message (cannot happen through a consumer)
            seq = None
        broker_id = f"nats:{self.stream}:{seq}" if seq is not None else None
        attributes = binary_attributes(headers, ("ce-",), headers.get("Content-Type"))
        if attributes is not None:
            attributes = {k: percent_decode(v) if isinstance(v, str) else v for k, v in attributes.items()}
        return Message(msg, msg.data, broker_id=broker_id, attributes=attributes)

    def ack(self, messages: Sequence[Message]) -> None:
        "Acknowledge, and make sure the server has the acks before returning."

        async def ack_all():
            for message in messages:
                await message.ref.ack()
            # A round trip to the server; on a connection that went away without closing
            # (the acks never arrive) this is how long until the retry. Unacknowledged, the
            # batch comes again after --ack-wait, and its events are already stored: nothing
            # is lost or doubled either way.
            await self.client.nc.flush(timeout=FLUSH_TIMEOUT)

        self.client.check_open()
        self.client.run(ack_all())

    def close(self) -> None:
        self.client.close()
        self.js = self.sub = None
