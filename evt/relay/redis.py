"""Redis Streams: relay the log with XADD, ingest it with a consumer group.

Each event is one stream entry whose id is ``<position>-0``. Redis refuses an id that is
not above the stream's last one, so an event published again after a crash is refused
by Redis itself: exactly once in the stream. With one key per category the ids are still
increasing in every key, because positions are global.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from ..config import MAX_SECONDS
from ..errors import BrokerRefused, BrokerUnavailable
from ..log.envelope import category_of
from .engine import Message, Row
from .urls import connection_refused, host_port, redact, usage_error

ALREADY_THERE = "equal or smaller than the target stream top item"


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    "redis-py's errors become evt's, in one place."
    import redis

    errors = redis.exceptions
    try:
        yield
    except (errors.AuthenticationError, errors.AuthenticationWrongNumberOfArgsError) as e:
        # A ConnectionError to redis-py, but retrying will not make the password right.
        reason = str(e).rstrip(".") if _has_password(url) else "it needs a password (redis://:PASSWORD@HOST:PORT/DB)"
        raise BrokerRefused(f"Redis at {redact(url)} refused the login: {reason}") from e
    except (errors.ConnectionError, errors.TimeoutError, OSError) as e:
        if connection_refused(e):
            reason = f"nothing is listening on {host_port(url, 6379)} (connection refused)"
        else:
            reason = str(e).rstrip(".")
        raise BrokerUnavailable(f"Redis at {redact(url)} is unavailable: {reason}") from e
    except errors.RedisError as e:
        raise BrokerRefused(f"Redis at {redact(url)} refused: {e}") from e


def _has_password(url: str) -> bool:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    return bool(parts.password or parse_qs(parts.query).get("password"))


# Query parameters redis-py takes from a URL but only checks when it connects (if at all).
SECONDS = ("socket_timeout", "socket_connect_timeout", "timeout")
LEAST = {"db": 0, "socket_read_size": 1, "max_connections": 1, "health_check_interval": 0}


def check_url(url: str) -> None:
    """UsageError unless redis-py takes every part of the URL: checked by building a
    connection (not opening it), then the values it would only trip over when connecting."""
    import math
    import re

    import redis

    try:
        redis.ConnectionPool.from_url(url).make_connection()
    except TypeError as e:  # a query parameter no connection takes
        unknown = re.search(r"keyword argument '(\w+)'", str(e))
        raise usage_error("Redis", url, f"unknown parameter {unknown[1]!r}" if unknown else e) from None
    except (ValueError, redis.exceptions.RedisError) as e:
        raise usage_error("Redis", url, e) from None
    options = redis.connection.parse_url(url)
    for name in SECONDS:
        value = options.get(name)
        if value is not None and not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
            raise usage_error("Redis", url, f"{name} must be a number of seconds above 0 (at most {MAX_SECONDS:g})")
    for name, least in LEAST.items():
        if name in options and options[name] < least:
            raise usage_error("Redis", url, f"{name} must be a whole number of at least {least}")
    if "retry_on_error" in options:
        raise usage_error("Redis", url, "retry_on_error cannot be set: evt reconnects by itself (--retries, --backoff)")


def connect(url: str, socket_timeout: float = 30.0):
    "A client that does not retry by itself (evt's own backoff decides)."
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with translate_errors(url):
        try:
            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5, socket_timeout=socket_timeout)
            client.ping()
        except (ValueError, TypeError, OverflowError) as e:
            # A URL value redis-py only trips over when it connects (check_url knows the
            # ones seen so far): the URL is at fault, not the broker.
            raise usage_error("Redis", url, e) from None
    return client


class RedisTarget:
    "Publishes rows to one stream key, or to ``KEY:CATEGORY`` keys."

    kind = "redis"

    def __init__(self, url: str, *, key: str = "events", key_per_category: bool = False, maxlen: int | None = None, cloudevents: str | None = None):
        self.url = url
        self.cloudevents = cloudevents  # None, "structured" or "binary" (evt.log.cloudevents)
        self.key = key
        self.key_per_category = key_per_category
        self.trim = ("MAXLEN", "~", maxlen) if maxlen else ()
        self.name = f"{redact(url)}#{key}{':*' if key_per_category else ''}"
        self.client = None
        self.checked = False

    def key_for(self, stream: str) -> str:
        return f"{self.key}:{category_of(stream)}" if self.key_per_category else self.key

    def connect(self) -> None:
        self.client = connect(self.url)
        self.checked = False

    def publish(self, rows: Sequence[Row]) -> tuple[int, int]:
        "XADD the rows in one pipeline; (published, already in the stream)."
        if not self.checked:  # first batch since connecting: check what the stream already holds first
            tops = {key: self._top(key) for key in {self.key_for(row[1]) for row in rows}}
            behind = [row for row in rows if row[0] <= tops[self.key_for(row[1])]]
            if behind:
                self._check_already_there(behind)
            self.checked = True
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            command, trim, key_for, single = pipe.execute_command, self.trim, self.key_for, self.key
            per_category = self.key_per_category
            if self.cloudevents is not None:
                self._add_cloudevents(command, rows)
            else:
                for position, stream, id, type, timestamp, data, envelope in rows:
                    command(
                        "XADD", key_for(stream) if per_category else single, *trim, f"{position}-0",
                        "type", type, "stream", stream, "id", id, "position", position,
                        "timestamp", timestamp, "data", data, "envelope", envelope,
                    )  # fmt: skip
            replies = pipe.execute(raise_on_error=False)
        published, refused = _count(replies, self.url)
        if refused:
            self._check_already_there([rows[i] for i in refused])
        return published, len(refused)

    def _add_cloudevents(self, command, rows: Sequence[Row]) -> None:
        """Structured: the fields ``type``, ``id``, ``position`` and ``cloudevent`` (the JSON).
        Binary: one field per CloudEvents attribute, and ``data``."""
        from ..log.cloudevents import binary_attributes_of

        binary = self.cloudevents == "binary"
        for position, stream, id, type, timestamp, data, cloudevent in rows:
            key = self.key_for(stream)
            if binary:
                fields = [item for pair in binary_attributes_of(cloudevent).items() for item in pair]
                command("XADD", key, *self.trim, f"{position}-0", *fields, "data", data)
            else:
                command("XADD", key, *self.trim, f"{position}-0", "type", type, "id", id, "position", position, "cloudevent", cloudevent)

    def _check_already_there(self, rows: Sequence[Row]) -> None:
        """Make sure the entries Redis refused are this store's own events, published before a
        crash, and not another store's or program's that share the key (which would make this
        relay skip its events silently); BrokerRefused otherwise."""
        keys = [self.key_for(row[1]) for row in rows]
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for key, row in zip(keys, rows):
                pipe.execute_command("XRANGE", key, f"{row[0]}-0", f"{row[0]}-0")
            found = pipe.execute()
            infos: dict[str, dict] = {}
            for key, row, entries in zip(keys, rows, found):
                if entries and _field(entries[0][1], b"id") == row[2].encode():
                    continue
                if not entries and self._gone(key, row[0], infos):
                    continue  # trimmed (--maxlen) or deleted since it was published
                raise BrokerRefused(
                    f"Redis stream {key!r} is already past entry {row[0]}-0, which is not this store's event "
                    f"{row[2]}: another store or program writes to that key; relay each store to its own --key"
                )

    def _top(self, key: str) -> int:
        "The position of the stream's last entry ever added (0 for a stream that does not exist)."
        with translate_errors(self.url):
            last = self.client.execute_command("XREVRANGE", key, "+", "-", "COUNT", 1)
        return int(_text(last[0][0]).split("-")[0]) if last else 0

    def _gone(self, key: str, position: int, infos: dict[str, dict]) -> bool:
        """Whether entry ``<position>-0`` may have been removed from the stream: deleted
        (XDEL, up to max-deleted-entry-id) or trimmed (below the first entry, when that one
        was written by a relay too: its position field matches its id)."""
        info = infos.get(key)
        if info is None:
            info = self.client.execute_command("XINFO", "STREAM", key)
            if isinstance(info, list):
                info = dict(zip(info[::2], info[1::2]))
            info = infos[key] = {_text(k): v for k, v in info.items()}
        deleted = info.get("max-deleted-entry-id")
        if deleted is None:
            return True  # a Redis before 7 does not say: trust it, as before
        if position <= int(_text(deleted).split("-")[0]):
            return True
        first = info.get("first-entry")
        if not first:
            return False
        first_id, fields = first
        first_position = _text(first_id).split("-")[0]
        written = _field(fields, b"position") or _field(fields, b"sequence") or b""  # sequence: a binary CloudEvent
        return _text(written).lstrip("0") == first_position and position < int(first_position)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _count(replies: list, url: str) -> tuple[int, list[int]]:
    "(how many were added, the indexes of those Redis refused as not above the stream's top)."
    published, refused = 0, []
    for i, reply in enumerate(replies):
        if not isinstance(reply, Exception):
            published += 1
        elif ALREADY_THERE in str(reply):
            refused.append(i)
        else:
            with translate_errors(url):
                raise reply
    return published, refused


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields, name: bytes):
    "One field of a stream entry, whether redis-py gives a dict or a flat list."
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2]))
    return fields.get(name)


class RedisSource:
    """Entries of a stream key through a consumer group (created from the start if missing).

    On (re)connecting, entries pending in the group — delivered to a consumer that died
    before acknowledging — are claimed (XAUTOCLAIM) and delivered again first.
    """

    def __init__(self, url: str, *, key: str = "events", group: str, consumer: str = "evt", wait: float = 1.0):
        self.url = url
        self.key = key
        self.group = group
        self.consumer = consumer
        self.block_ms = max(1, int(wait * 1000))
        self.name = f"{redact(url)}#{key}/{group}"
        self.client = None
        self.cursor = "0"  # "0": our pending entries first; ">": new ones

    def connect(self) -> None:
        self.client = connect(self.url, socket_timeout=self.block_ms / 1000 + 30)
        with translate_errors(self.url):
            self._create_group()
            self._claim_pending()
        self.cursor = "0"

    def _create_group(self) -> None:
        import redis

        try:
            self.client.execute_command("XGROUP", "CREATE", self.key, self.group, "0", "MKSTREAM")
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _claim_pending(self) -> None:
        "Take over every entry pending in the group; ingest is idempotent, so a second delivery is harmless."
        start = "0-0"
        while True:
            reply = self.client.execute_command("XAUTOCLAIM", self.key, self.group, self.consumer, 0, start, "COUNT", 1000)
            start = reply[0]
            if start in (b"0-0", "0-0"):
                return

    def fetch(self, count: int) -> list[Message]:
        with translate_errors(self.url):
            if self.cursor != ">":
                entries = self._read(count, self.cursor, block=None)
                if entries:
                    self.cursor = entries[-1][0]
                    return [_message(entry, self.key) for entry in entries]
                self.cursor = ">"
            return [_message(entry, self.key) for entry in self._read(count, ">", block=self.block_ms)]

    def _read(self, count: int, cursor, block: int | None) -> list:
        args = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        if block is not None:
            args += ["BLOCK", block]
        reply = self.client.execute_command(*args, "STREAMS", self.key, cursor)
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3
            return next(iter(reply.values()))[0] if reply else []
        return reply[0][1]

    def ack(self, messages: Sequence[Message]) -> None:
        with translate_errors(self.url):
            self.client.execute_command("XACK", self.key, self.group, *(m.ref for m in messages))

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None


def _message(entry, key: str) -> Message:
    "One stream entry as a message: its envelope field is the body."
    entry_id, fields = entry
    text_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    if not fields:  # XREADGROUP gives a trimmed entry no fields
        return Message(entry_id, None, "the entry was trimmed from the stream before it was ingested")
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2]))
    body = fields.get(b"envelope") or fields.get(b"cloudevent")  # an evt envelope, or a structured CloudEvent
    if body is None and b"specversion" in fields:  # a binary CloudEvent: attributes as fields, and data
        attributes = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in fields.items() if k != b"data"}
        return Message(entry_id, fields.get(b"data"), broker_id=f"redis:{key}:{text_id}", attributes=attributes)
    if body is None:
        return Message(entry_id, _fields_text(fields), "the entry has no 'envelope' field")
    return Message(entry_id, body, broker_id=f"redis:{key}:{text_id}")


def _fields_text(fields: dict) -> bytes:
    from ..log.envelope import dumps

    return dumps({k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in fields.items()}).encode()
