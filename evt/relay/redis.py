"""Redis Streams: relay the log with XADD, ingest it with a consumer group.

Each event is one stream entry whose id is ``<position>-0``. Redis refuses an id that is
not above the stream's last one, so an event published again after a crash is refused
by Redis itself: exactly once in the stream. With one key per category the ids are still
increasing in every key, because positions are global.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from ..envelope import category_of
from ..errors import BrokerRefused, BrokerUnavailable
from .engine import Message, Row
from .urls import redact

ALREADY_THERE = "equal or smaller than the target stream top item"


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    "redis-py's errors become evt's, in one place."
    import redis

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
        raise BrokerUnavailable(f"Redis at {redact(url)} is unavailable: {str(e).rstrip('.')}") from e
    except redis.exceptions.RedisError as e:
        raise BrokerRefused(f"Redis at {redact(url)} refused: {e}") from e


def connect(url: str, socket_timeout: float = 30.0):
    "A client that does not retry by itself (evt's own backoff decides)."
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with translate_errors(url):
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5, socket_timeout=socket_timeout)
        client.ping()
    return client


class RedisTarget:
    "Publishes rows to one stream key, or to ``KEY:CATEGORY`` keys."

    kind = "redis"

    def __init__(self, url: str, *, key: str = "events", key_per_category: bool = False, maxlen: int | None = None):
        self.url = url
        self.key = key
        self.key_per_category = key_per_category
        self.trim = ("MAXLEN", "~", maxlen) if maxlen else ()
        self.name = f"{redact(url)}#{key}{':*' if key_per_category else ''}"
        self.client = None

    def key_for(self, stream: str) -> str:
        return f"{self.key}:{category_of(stream)}" if self.key_per_category else self.key

    def connect(self) -> None:
        self.client = connect(self.url)

    def publish(self, rows: Sequence[Row]) -> tuple[int, int]:
        "XADD the rows in one pipeline; (published, already in the stream)."
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            command, trim, key_for, single = pipe.execute_command, self.trim, self.key_for, self.key
            per_category = self.key_per_category
            for position, stream, id, type, timestamp, data, envelope in rows:
                command(
                    "XADD", key_for(stream) if per_category else single, *trim, f"{position}-0",
                    "type", type, "stream", stream, "id", id, "position", position,
                    "timestamp", timestamp, "data", data, "envelope", envelope,
                )  # fmt: skip
            replies = pipe.execute(raise_on_error=False)
        return _count(replies, self.url)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _count(replies: list, url: str) -> tuple[int, int]:
    published = skipped = 0
    for reply in replies:
        if not isinstance(reply, Exception):
            published += 1
        elif ALREADY_THERE in str(reply):
            skipped += 1
        else:
            with translate_errors(url):
                raise reply
    return published, skipped


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
                    return [_message(entry) for entry in entries]
                self.cursor = ">"
            return [_message(entry) for entry in self._read(count, ">", block=self.block_ms)]

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


def _message(entry) -> Message:
    "One stream entry as a message: its envelope field is the body."
    entry_id, fields = entry
    if not fields:  # XREADGROUP gives a trimmed entry no fields
        return Message(entry_id, None, "the entry was trimmed from the stream before it was ingested")
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2]))
    body = fields.get(b"envelope")
    if body is None:
        return Message(entry_id, _fields_text(fields), "the entry has no 'envelope' field")
    return Message(entry_id, body)


def _fields_text(fields: dict) -> bytes:
    from ..envelope import dumps

    return dumps({k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in fields.items()}).encode()
