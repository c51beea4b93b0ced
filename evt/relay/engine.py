"""The relay and ingest loops, whatever the broker.

A target publishes a batch of rows and returns only once the broker confirmed it; a
source fetches messages and acknowledges them. Both raise ``BrokerUnavailable`` when the
connection is lost; the loops then reconnect with backoff and carry on from what is
known to be safe: the relay from its saved position (a re-published event is refused by
Redis or deduplicated by ``message_id``), the ingest from the broker's unacknowledged
messages (appending them again is idempotent by event id).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

from ..errors import BrokerUnavailable, Conflict, EvtError, InvalidInput, UsageError
from ..log import cloudevents
from ..log.envelope import NewEvent, loads
from ..log.filters import Filter
from ..log.keys import MARK
from ..log.sqlite import translate_errors
from ..log.store import JSON_LINE, Store
from .state import RelayLock, load_position, record_bad_message, save_position

# One row per event: everything a target puts on the wire, built by SQLite.
Row = tuple  # (position, stream, id, type, timestamp, data, envelope JSON or structured CloudEvent JSON)

ROW_COLUMNS = "position, stream, id, type, timestamp, data, {line}"
SELECT_ROWS = f"SELECT {ROW_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
SELECT_ENVELOPES = SELECT_ROWS.format(line=JSON_LINE)
SELECT_CLOUDEVENTS = SELECT_ROWS.format(line=cloudevents.SQL_LINE)


class Target(Protocol):
    kind: str
    name: str
    # None: the evt envelope as the message; "structured" or "binary": a CloudEvent in
    # that content mode (rows then carry the structured CloudEvent's JSON).
    cloudevents: str | None

    def connect(self) -> None: ...
    def publish(self, rows: Sequence[Row]) -> tuple[int, int]: ...  # (published, already there)
    def idle(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Message:
    "One message from a broker: its handle for acknowledging, and its body (None if gone)."

    ref: object
    body: bytes | None
    error: str | None = None  # why it cannot be stored, when the source already knows
    # The broker's own identity for the message (a Redis entry id, an AMQP message_id):
    # the event id of an envelope that carries none, so a redelivery stays idempotent.
    broker_id: str | None = None
    # A binary-mode CloudEvent: its attributes, from the message's headers (the body is its data).
    attributes: dict | None = None


class Source(Protocol):
    name: str

    def connect(self) -> None: ...
    def fetch(self, count: int) -> list[Message]: ...  # [] when nothing arrived for a while
    def ack(self, messages: Sequence[Message]) -> None: ...
    def close(self) -> None: ...


class Retry:
    """Backoff between reconnects: ``retries`` attempts, the first delay ``backoff`` seconds, doubling.

    ``on_retry(message)`` is told before each wait; ``reset()`` after progress starts over.
    """

    def __init__(self, retries: int = 5, backoff: float = 0.5, on_retry: Callable[[str], None] | None = None, cap: float = 30.0):
        self.retries = retries
        self.backoff = backoff
        self.on_retry = on_retry
        self.cap = cap
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def wait(self, error: BrokerUnavailable, sleep: Callable[[float], None] = time.sleep) -> None:
        "Sleep before the next attempt, or raise when the retries are spent."
        self.failures += 1
        if self.failures > self.retries:
            raise BrokerUnavailable(f"{error} (gave up after {_attempts(self.failures)}; is the broker running?)") from error
        delay = min(self.backoff * 2 ** (self.failures - 1), self.cap)
        if self.on_retry:
            self.on_retry(f"{error}; retrying in {delay:g}s (retry {self.failures} of {self.retries})")
        sleep(delay)


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


class Interrupted(KeyboardInterrupt):
    "Ctrl-C ended a relay or an ingest; ``result`` is what it had done (its work up to there is saved)."

    def __init__(self, result: "RelayResult | IngestResult"):
        super().__init__()
        self.result = result


@dataclass
class RelayResult:
    name: str
    position: int
    published: int = 0
    skipped: int = 0

    def to_dict(self) -> dict:
        return {"relay": self.name, "published": self.published, "alreadyPublished": self.skipped, "position": self.position}


@dataclass
class IngestResult:
    name: str
    received: int = 0
    appended: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    def to_dict(self) -> dict:
        return {
            "ingest": self.name,
            "received": self.received,
            "appended": self.appended,
            "duplicates": self.duplicates,
            "deadLettered": self.dead_lettered,
        }


def read_rows(store: Store, after: int, limit: int, cloudevents: bool = False, filter: Filter | None = None) -> list[Row]:
    """The next ``limit`` events after a position (those ``filter`` selects, by their stored type),
    as wire rows (carrying CloudEvents, if asked)."""
    with translate_errors(store.path):
        if filter is None:
            rows = store.conn.execute(SELECT_CLOUDEVENTS if cloudevents else SELECT_ENVELOPES, (after, limit)).fetchall()
        else:
            line = _cloudevents_line() if cloudevents else JSON_LINE
            sql, params = filter.replace(after=after, limit=limit, backwards=False).to_sql(ROW_COLUMNS.format(line=line))
            rows = store.conn.execute(sql, params).fetchall()
        return _decrypted(store, rows)


def _decrypted(store: Store, rows: list[Row]) -> list[Row]:
    "The rows with their personal fields decrypted (data and line), as every reader sees them."
    if not any(MARK in row[5] for row in rows):
        return rows
    decrypt = store.decryptor()
    out = []
    for row in rows:
        if MARK in row[5]:
            position, id_, data = row[0], row[2], row[5]
            row = row[:5] + (decrypt.text(id_, data, position), decrypt.line(row[6], id_, data, position)) + row[7:]
        out.append(row)
    return out


def _cloudevents_line() -> str:
    return cloudevents.SQL_LINE


def data_version(store: Store) -> int:
    "Changes whenever another connection commits (the cheap way to wait for appends)."
    with translate_errors(store.path):
        return store.conn.execute("PRAGMA data_version").fetchone()[0]


def relay(
    store: Store,
    target: Target,
    *,
    name: str | None = None,
    filter: Filter | None = None,
    batch: int = 1000,
    follow: bool = False,
    retry: Retry | None = None,
    poll_interval: float = 0.05,
    on_wait: Callable[[str], None] | None = None,
) -> RelayResult:
    """Publish the events after the relay's position; save the position after each confirmed batch.

    ``filter`` narrows what is published (as ``evt read`` filters, by stored type); the
    position still passes every event examined, so the lag counts down to 0. One relay
    runs under a name at a time: a second one waits for the first to end (``on_wait`` is
    told once). Catches up and returns, or with ``follow`` waits for new events forever.
    """
    name = name or target.name
    retry = retry or Retry()
    if filter is not None and not getattr(target, "takes_gaps", True):
        raise UsageError(
            f"a {target.kind} relay publishes every event, as the message numbered by its position: it takes no filters "
            "(consumers can pick by subject, SUBJECT.TYPE or SUBJECT.CATEGORY)"
        )
    with RelayLock(store.path, name, on_wait), StopRequests() as stop:
        return _relay(store, target, name, filter, batch, follow, retry, poll_interval, stop)


def _relay(
    store: Store, target: Target, name: str, filter: Filter | None, batch: int, follow: bool, retry: Retry, poll_interval: float,
    stop: StopRequests,
) -> RelayResult:
    result = RelayResult(name, load_position(store, name))
    as_cloudevents = getattr(target, "cloudevents", None) is not None
    try:  # whatever ends the loop (the end of the log, Ctrl-C, a refusal) closes the connection
        connected = _connect(target, retry, stop)
        while True:
            stop.check()
            version = data_version(store)
            head = store.head() if filter is not None else 0  # read first: every event up to it is examined below
            rows = read_rows(store, result.position, batch, as_cloudevents, filter)
            passed = max(rows[-1][0] if rows else 0, head if len(rows) < batch else 0)
            if not rows:
                if passed > result.position:  # only events the filter leaves out: the position passes them
                    with store.transaction():
                        save_position(store, name, passed)
                    result.position = passed
                if not follow:
                    break
                connected = _wait_for_appends(store, version, target if connected else None, poll_interval, stop)
                continue
            try:
                if not connected:
                    target.connect()
                    connected = True
                published, skipped = target.publish(rows)
            except BrokerUnavailable as e:
                target.close()
                connected = False
                retry.wait(e, stop.sleep)
                continue
            retry.reset()
            with interrupts_deferred(), store.transaction():  # the summary counts what is saved, no more, no less
                save_position(store, name, passed)
                result.position = passed
                result.published += published
                result.skipped += skipped
    except KeyboardInterrupt:
        raise Interrupted(result) from None
    finally:
        target.close()
    return result


class StopRequests:
    """Ctrl-C as a request to stop: a relay or an ingest ends at its next safe point —
    between batches, or in a wait (within ``--wait`` seconds for an ingest) — and raises
    KeyboardInterrupt there, instead of wherever the signal happens to land.

    Landing anywhere, it broke things: in a lazy import (the module was left half made,
    and closing the connection then failed on it: an internal error), inside the broker
    client's event loop (its tasks left pending, which asyncio reports on stderr at
    exit). A second Ctrl-C stops at once, as before. Signal handlers belong to the main
    thread: elsewhere, and when SIGINT is not Python's default, this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _request(self, number: int, frame: object) -> None:
        if self.requested:  # the second Ctrl-C: at once
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        "Raise KeyboardInterrupt if Ctrl-C was pressed."
        if self.requested:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        "time.sleep, ending early (KeyboardInterrupt) when Ctrl-C is pressed."
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C back until the block has ended (committed or failed), then raise it.

    A commit and the counts of a summary then change together. Signal handlers belong to
    the main thread: elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    caught: list = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(*caught[0])  # Python's own handler raises KeyboardInterrupt
            else:
                raise KeyboardInterrupt


def _connect(target: Target, retry: Retry, stop: StopRequests) -> bool:
    "Connect up front, so a broker that is down is reported even with nothing to publish."
    while True:
        try:
            target.connect()
            return True
        except BrokerUnavailable as e:
            target.close()
            retry.wait(e, stop.sleep)


def _wait_for_appends(store: Store, version: int, target: Target | None, poll_interval: float, stop: StopRequests) -> bool:
    "Wait for another connection's commit; whether the target is still connected."
    while data_version(store) == version:
        stop.check()
        if target is not None:
            try:
                target.idle()
            except BrokerUnavailable:
                target.close()  # the next publish reconnects (waiting on, not spinning on a dead connection)
                target = None
        time.sleep(poll_interval)
    return target is not None


def ingest(
    store: Store,
    source: Source,
    *,
    batch: int = 500,
    follow: bool = False,
    retry: Retry | None = None,
) -> IngestResult:
    """Append what the source delivers, acknowledging each batch after it is committed.

    Returns when the source has nothing more (after its wait), or with ``follow`` never.
    """
    retry = retry or Retry()
    with StopRequests() as stop:
        return _ingest(store, source, batch, follow, retry, stop)


def _ingest(store: Store, source: Source, batch: int, follow: bool, retry: Retry, stop: StopRequests) -> IngestResult:
    result = IngestResult(source.name)
    try:  # whatever ends the loop (drained, Ctrl-C, a refusal) closes the connection
        while True:
            try:
                stop.check()
                source.connect()
                while True:
                    stop.check()
                    messages = source.fetch(batch)
                    if not messages:
                        if follow:
                            continue
                        return result
                    with interrupts_deferred():  # the summary counts what is stored, no more, no less
                        store_messages(store, source.name, messages, result)
                    source.ack(messages)
                    retry.reset()
            except BrokerUnavailable as e:
                source.close()
                retry.wait(e, stop.sleep)
    except KeyboardInterrupt:
        raise Interrupted(result) from None
    finally:
        source.close()


def store_messages(store: Store, consumer: str, messages: Sequence[Message], result: IngestResult) -> None:
    "Append the good messages in one transaction; keep the bad ones as dead letters."
    good, bad = [], []
    for message in messages:
        try:
            good.append((message, decode(message)))
        except InvalidInput as e:
            bad.append((message, str(e)))
    result.received += len(messages)
    head = store.head()
    try:
        positions = store.write([event for _, event in good], validate=False)
    except (Conflict, InvalidInput):
        positions = _write_one_by_one(store, good, bad)
    appended = len({p for p in positions if p > head})  # a message delivered twice in one batch counts once
    result.appended += appended
    result.duplicates += len(positions) - appended
    for message, error in bad:
        record_bad_message(store, consumer, _payload_text(message), error)
    result.dead_lettered += len(bad)


def _write_one_by_one(store: Store, good: list[tuple[Message, NewEvent]], bad: list) -> list[int]:
    "The slow path, when a batch holds a conflicting event: store the others."
    positions = []
    for message, event in good:
        try:
            positions += store.write([event], validate=False)
        except (Conflict, InvalidInput) as e:
            bad.append((message, str(e)))
    return positions


def decode(message: Message) -> NewEvent:
    "The event a message carries; InvalidInput when it carries none."
    if message.error is not None:
        raise InvalidInput(message.error)
    if message.attributes is not None:
        event = cloudevents.from_binary(message.attributes, message.body)
    else:
        try:
            envelope = loads(message.body)
        except ValueError as e:
            raise InvalidInput(f"not JSON: {e}") from None
        try:
            event = cloudevents.new_event(envelope)
        except EvtError as e:
            if cloudevents.is_cloudevent(envelope):
                raise InvalidInput(str(e)) from None  # it names the CloudEvent already
            raise InvalidInput(f"not an evt envelope: {e}") from None
    if event.id is None and message.broker_id is not None:
        event.id = message.broker_id
    return event


def _payload_text(message: Message) -> str:
    if message.attributes is not None:
        return cloudevents.binary_payload(message.attributes, message.body)
    if message.body is None:
        return ""
    if isinstance(message.body, bytes):
        return message.body.decode("utf-8", "replace")
    return message.body
