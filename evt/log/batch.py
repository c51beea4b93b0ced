"""One append: its events prepared, then placed in the log inside the write transaction.

Preparing an event (the model's validation, JSON encoding, a generated id) needs the
event alone, so ``Store.write`` prepares the first chunk — all of a small write — before
it queues for the write lock: writers of many threads and processes prepare while
another one holds the lock, and the lock is held for the short part only. Placing needs
the log as it is now: the head, each stream's revision (expected revisions are checked
against it, earlier events of the batch included), the ids already stored (an
idempotent re-append returns the stored position). Chunks are placed and inserted one at
a time, so a batch of any size streams through in flat memory: what a chunk needs of
earlier ones it finds in the table, inside the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from typing import Any, Iterable, Iterator

from ..errors import (
    DuplicateEventId,
    EvtError,
    InvalidInput,
    LineError,
    WrongExpectedRevision,
)
from .chain import GENESIS, fixed, fixed_from, link, quoted_id, stamp, tail
from .envelope import ANY, EXISTS, MAX_DEPTH, NewEvent, check_depth, loads, thread_ids
from .hooks import ModelHooks
from .keys import MARK, Decryptor, Encryptor, Keys, refuse_marks
from .timestamps import now

# Events are prepared, looked up (given ids) and inserted this many at a time.
CHUNK = 500

COLUMNS = "position, stream, revision, id, type, version, timestamp, source, correlation_id, causation_id, data, metadata, hash"
INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Most events have no source, correlation or causation id: they are inserted without those
# columns (NULL by default). Python's sqlite3 binds str, int, float and bytearray directly,
# but looks every other value (None, bytes) up in its adapter registry first; for a small
# event that lookup is a third of the insert's cost. Hashes are bound as bytearray for the
# same reason (stored alike: a BLOB).
PLAIN_COLUMNS = "position, stream, revision, id, type, version, timestamp, data, metadata, hash"
INSERT_PLAIN = f"INSERT INTO events ({PLAIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

# Rows go in as few statements as possible: one INSERT with many VALUES rows.
# executemany steps its statement once per row, and Python's sqlite3 lets go of the GIL
# and takes it back at every step: among busy threads each of those takes can wait for
# another thread's turn, so a write of 100 events handed the GIL back and forth a hundred
# times. One statement of 100 rows also spends about a fifth less of SQLite's time per
# row than 100 steps, and than 64 + 32 + 4 rows. But compiling a statement costs about
# 9 us a row, so only a few sizes are made (each connection keeps them compiled: about
# 1.3 KB of memory a row), and a write takes the largest that fits, then the next:
# 100, 50, 20, 10 and 1 events are one statement each; 500, five. (SQLite before 3.32
# took 999 parameters at most: a statement there has up to 76 rows.)
SIZES = (100, 80, 64, 50, 40, 32, 25, 20, 16, 12, 10, 8, 7, 6, 5, 4, 3, 2, 1)
_STATEMENTS: dict[tuple[str, int, int], str] = {}

# The events of a write to one stream mostly share their stream, type, version,
# timestamp and metadata: those rows bind the five once for the statement (?1 to ?5) and
# five values a row (OWN_COLUMNS), which takes about an eighth off SQLite's time a row.
OWN_COLUMNS = "position, revision, id, data, hash"
SHARED_COLUMNS = "stream, type, version, timestamp, metadata"


def insert_rows(conn, columns: str, width: int, values: list, shared: tuple = ()) -> None:
    """Insert rows given as one flat list of ``width`` values each, in ``columns`` of events.

    ``shared``: the values of further columns, the same in every row, bound once (their
    names follow the rows' own in ``columns``)."""
    total, start = len(values) // width, 0
    most = (conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - len(shared)) // width
    for size in SIZES:
        if size > most:
            continue
        while total >= size:
            statement = _STATEMENTS.get((columns, size, len(shared)))
            if statement is None:
                statement = _STATEMENTS[(columns, size, len(shared))] = _statement(columns, width, size, len(shared))
            end = start + size * width
            chunk = values[start:end] if start or end < len(values) else values
            conn.execute(statement, [*shared, *chunk] if shared else chunk)
            start, total = end, total - size
        if not total:
            return
    raise ValueError(f"SQLite takes too few parameters a statement ({most * width + len(shared)}) for a row of {width + len(shared)}")


def _statement(columns: str, width: int, size: int, shared: int) -> str:
    "INSERT of ``size`` rows of ``width`` values each (and ``shared`` values bound once, as ?1 to ?shared)."
    if not shared:
        row = "(" + ",".join("?" * width) + ")"
        return f"INSERT INTO events ({columns}) VALUES " + ",".join([row] * size)
    common = ",".join(f"?{i}" for i in range(1, shared + 1))
    rows = (
        "(" + ",".join(f"?{shared + r * width + i}" for i in range(1, width + 1)) + "," + common + ")"
        for r in range(size)
    )
    return f"INSERT INTO events ({columns}) VALUES " + ",".join(rows)


def _spread(own: list, shared: tuple) -> list:
    "Rows of OWN_COLUMNS values and their shared ones, as PLAIN_COLUMNS rows (a write found not to share them)."
    stream, type_, version, timestamp, metadata = shared
    plain: list = []
    for i in range(0, len(own), 5):
        position, revision, id_, data, hash_ = own[i : i + 5]
        plain += (position, stream, revision, id_, type_, version, timestamp, data, metadata, hash_)
    return plain


# JSON as evt stores it: compact, UTF-8 kept as is, strict (no NaN), the same text for the
# same data whatever the size of the batch. The C encoder made once: json.dumps with
# these options builds a new encoder per call, at twice the cost.
_ENCODE = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", False, False, False
) if json.encoder.c_make_encoder is not None else None  # type: ignore[attr-defined]


def encode(value: Any, field: str = "data") -> str:
    "A JSON object as the compact text evt stores; InvalidInput for what is not JSON."
    if not value:
        return "{}"
    try:
        if _ENCODE is not None:
            return "".join(_ENCODE(value, 0))
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{field} is not JSON: {e}") from None
    except RecursionError:  # deeper than Python recurses, or an object holding itself: deeper than MAX_DEPTH either way
        raise InvalidInput(f"{field} nests objects and arrays more than {MAX_DEPTH} levels deep") from None


class Prepared:
    """An event ready to be placed (made by ``prepare``): its fields as stored, but for
    position, revision and timestamp.

    ``data`` is the plaintext (personal fields are encrypted when the event is placed);
    ``fixed``, the part of its hash chain body that does not depend on its place
    (``chain.fixed``); ``personal``, (subject, fields) to encrypt, or None."""

    __slots__ = ("event", "id", "given_id", "data", "metadata", "fixed", "personal")


def prepare(events: Iterable[NewEvent], hooks: ModelHooks | None, validate: bool = True) -> Iterator[list[Prepared]]:
    """The events in chunks, validated by ``hooks`` (unless ``validate`` is false) and encoded.

    The hooks' personal fields are marked for encryption whether validated or not.

    This loop runs once per event of every append, so the common case is inline: the
    JSON encoder called directly, ``{}`` for empty metadata; anything unusual takes the
    general path. The chain's part that does not depend on the event's place
    (``chain.fixed``) is made here, outside the lock.
    """
    new_id = thread_ids()
    chunk: list[Prepared] = []
    check = hooks is not None and validate
    personal_hook = getattr(hooks, "personal", None)
    new = Prepared.__new__
    encoder, join = _ENCODE, "".join
    last_key: tuple | None = None  # the tail of the chain's body (chain.tail) last made, and what it was made of
    last_tail = b""
    for event in events:
        try:
            value = event.data
            if not value:
                data = "{}"
            else:
                if encoder is not None:
                    try:
                        data = join(encoder(value, 0))
                    except (TypeError, ValueError, RecursionError):
                        data = encode(value)  # raises InvalidInput, saying what is wrong
                else:
                    data = encode(value)
                if len(data) > MAX_DEPTH:  # a shorter text cannot nest deeper
                    check_depth("data", value, data)
            if event.metadata:
                metadata = encode(event.metadata, "metadata")
                if len(metadata) > MAX_DEPTH:
                    check_depth("metadata", event.metadata, metadata)
            else:
                metadata = "{}"
            if check:  # after the depth check: a validator may recurse
                hooks.validate(event)
            personal = personal_hook(event.type, event.version, event.data) if personal_hook is not None else None
            if MARK in data:
                refuse_marks(event.data)
        except EvtError as e:
            raise on_line(event, e) from None
        p = new(Prepared)
        p.event = event
        p.data = data
        p.metadata = metadata
        p.personal = personal
        given = event.id
        source, correlation_id, causation_id = event.source, event.correlation_id, event.causation_id
        try:
            if given is None:  # a made id: hex digits and dashes, nothing to escape
                p.id = id_ = new_id()
                p.given_id = False
                quoted = b'"' + id_.encode() + b'"'
            else:
                p.id = id_ = given
                p.given_id = True
                quoted = quoted_id(id_)
            key = (event.stream, event.type, event.version, source, correlation_id, causation_id)
            if key != last_key:  # the events of a write to one stream mostly share it
                last_tail, last_key = tail(*key), key
            p.fixed = fixed_from(quoted, last_tail, data, metadata)
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") is JSON, but not text SQLite can store
            raise on_line(event, _unencodable_text((id_, event.stream, event.type, source, correlation_id, causation_id, data, metadata))) from None
        chunk.append(p)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class Placement:
    "The part of one write that needs the log: positions, revisions, stored ids, inserts."

    def __init__(self, conn, keys: Keys | None = None):
        self.conn = conn
        self.keys = keys
        self._encryptor: Encryptor | None = None
        self._decryptor: Decryptor | None = None
        head = conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
        self.start = self.position = head[0] if head else 0
        self.previous = head[1] or GENESIS if head else GENESIS  # the hash the next event chains to
        self.timestamp = now()
        self.stamp = stamp(self.timestamp)
        self.heads: dict[str, int] = {}
        self.lines = array("q")  # the NDJSON line of each event inserted, by position - start - 1 (0: none)

    def place(self, chunk: list[Prepared]) -> list[int]:
        """Insert a chunk's new events; return the position of each event (stored ones: theirs).

        Each event's place: the next position, its stream's next revision (checked against
        what it expected), the store's timestamp unless it has its own, and its hash,
        chained to the one before (``chain.link``)."""
        stored = self._stored([p.id for p in chunk if p.given_id])
        seen: dict[str, tuple] = {}  # given ids inserted in this chunk: id -> row (as _stored has them)
        plain: list = []  # the values of rows without source, correlation or causation id (PLAIN_COLUMNS), flat
        own: list = []  # ... or, while they all share stream, type, version, timestamp and metadata (``shared``), OWN_COLUMNS
        shared: tuple | None = None
        rows: list = []  # the values of other rows (COLUMNS), flat
        positions: list[int] = []
        heads, lines, conn = self.heads, self.lines, self.conn
        position, previous = self.position, self.previous
        store_timestamp, store_stamp = self.timestamp, self.stamp
        for p in chunk:
            event = p.event
            try:
                if p.given_id:
                    existing = seen.get(p.id) or stored.get(p.id)
                    if existing is not None:
                        positions.append(self._same_event(p, existing))
                        continue
                stream = event.stream
                head = heads.get(stream)
                if head is None:
                    head = conn.execute("SELECT max(revision) FROM events WHERE stream = ?", (stream,)).fetchone()[0] or 0
                expected = event.expected
                if expected != head and expected != ANY:  # (an expected revision met: nothing to check)
                    _check_expected(stream, head, expected)
                data, body = p.data, p.fixed
                if p.personal is not None:  # the chain covers what is stored: the ciphertext
                    data = self._encrypted(p)
                    body = fixed(p.id, stream, event.type, event.version, event.source, event.correlation_id, event.causation_id, data, p.metadata)
            except EvtError as e:
                raise on_line(event, e) from None
            head += 1
            heads[stream] = head
            position += 1
            timestamp = event.timestamp
            if timestamp is None:
                timestamp, stamped = store_timestamp, store_stamp
            else:
                stamped = stamp(timestamp)
            previous = link(previous, position, head, stamped, body)
            source, correlation_id, causation_id = event.source, event.correlation_id, event.causation_id
            if source is None and correlation_id is None and causation_id is None:
                if not plain:  # every such row so far shares stream, type, version, timestamp and metadata
                    key = (stream, event.type, event.version, timestamp, p.metadata)
                    if shared is None:
                        shared = key
                    elif key != shared:  # not after all: whole rows from here
                        plain, shared, own = _spread(own, shared), None, []
                if shared is not None:
                    own += (position, head, p.id, data, bytearray(previous))
                else:
                    plain += (position, stream, head, p.id, event.type, event.version, timestamp, data, p.metadata, bytearray(previous))
            else:
                rows += (
                    position, stream, head, p.id, event.type, event.version, timestamp,
                    source, correlation_id, causation_id, data, p.metadata, bytearray(previous),
                )
            positions.append(position)
            lines.append(event.line or 0)
            if p.given_id:
                seen[p.id] = (position, stream, head, p.id, event.type, event.version, timestamp, source, correlation_id, causation_id, data, p.metadata)
        self.position, self.previous = position, previous  # where the next chunk goes on
        if own:
            insert_rows(conn, f"{OWN_COLUMNS}, {SHARED_COLUMNS}", 5, own, shared)
        if plain:
            insert_rows(conn, PLAIN_COLUMNS, 10, plain)
        if rows:
            insert_rows(conn, COLUMNS, 13, rows)
        return positions

    def _encrypted(self, p: Prepared) -> str:
        "The data text to store: its personal fields encrypted with the subject's key."
        if self.keys is None:
            raise InvalidInput(f"{p.event.type} v{p.event.version} has personal fields, but this store cannot keep keys (a store in memory?)")
        if self._encryptor is None:
            self._encryptor = Encryptor(self.keys, self.conn)
        subject, fields = p.personal
        return encode(self._encryptor.data(p.id, p.event.data, subject, fields))

    def decrypted(self, row: tuple) -> tuple:
        "A stored row (as inserted) with its data decrypted, to compare with an event given again."
        if MARK not in row[10]:
            return row
        if self._decryptor is None:
            self._decryptor = Decryptor(self.keys)
        return self._decryptor.row(row)

    def _stored(self, ids: list[str]) -> dict[str, tuple]:
        "The stored rows (as inserted: the columns of INSERT) of these ids, earlier chunks of this write included."
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            "SELECT position, stream, revision, id, type, version, timestamp, source, correlation_id, causation_id, "
            f"data, metadata FROM events WHERE id IN ({marks})",
            ids,
        ).fetchall()
        return {row[3]: row for row in rows}

    def _same_event(self, p: Prepared, row: tuple) -> int:
        "The stored position of an idempotent re-append; DuplicateEventId if its content differs."
        if same_content(p, self.decrypted(row)):
            return row[0]
        position, stream, type_ = row[0], row[1], row[4]
        if position > self.start:  # an earlier event of this batch, not committed yet
            line = self.lines[position - self.start - 1]
            first = f" (first on line {line})" if line else ""
            raise DuplicateEventId(f"event id {p.id!r} is given twice in this batch with other content{first}")
        raise DuplicateEventId(
            f"event id {p.id!r} is already stored (position {position}, stream {stream!r}, type {type_!r}) with other content"
        )


def same_content(p: Prepared, row: tuple) -> bool:
    """Whether an event given again is the stored one: the same stream, type, version,
    source, correlation and causation ids, data and metadata (as JSON: key order aside),
    and the same timestamp if it gives one (an append that lets the store stamp the time
    is the same event whenever it runs again)."""
    event = p.event
    return (
        row[1] == event.stream
        and row[4] == event.type
        and row[5] == event.version
        and row[7] == event.source
        and row[8] == event.correlation_id
        and row[9] == event.causation_id
        and (event.timestamp is None or row[6] == event.timestamp)
        and _same_json_text(row[10], p.data, event.data)
        and _same_json_text(row[11], p.metadata, event.metadata)
    )


def _same_json_text(stored: str, text: str, value: Any) -> bool:
    return stored == text or same_json(loads(stored), value)


def _check_expected(stream: str, head: int, expected: int | str) -> None:
    if expected == EXISTS:
        if head == 0:
            raise WrongExpectedRevision(f"stream {stream!r} does not exist (expected it to exist)")
    elif head != expected:
        if head == 0:
            raise WrongExpectedRevision(f"stream {stream!r} does not exist (expected it at revision {expected})")
        if expected == 0:
            raise WrongExpectedRevision(f"stream {stream!r} already exists, at revision {head} (expected it not to exist)")
        raise WrongExpectedRevision(f"stream {stream!r} is at revision {head}, expected {expected}")


def on_line(event: NewEvent, error: EvtError) -> EvtError:
    "The error, naming the NDJSON line of the event when it came from one."
    return LineError(event.line, error) if event.line is not None else error


def _unencodable_text(values: tuple) -> EvtError:
    "InvalidInput naming the first of an event's texts that is not valid Unicode."
    for value in values:
        try:
            if isinstance(value, str):
                value.encode()
        except UnicodeEncodeError as e:
            bad = value[e.start : e.end].encode("unicode_escape").decode()
            return InvalidInput(f"{bad} is not valid Unicode text (a lone surrogate)")
    return InvalidInput("the event holds text that is not valid Unicode")


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON values are the same: key order aside, and 1 == 1.0.

    Python's ``==`` also holds ``true == 1`` and ``false == 0``, which JSON does not.
    """
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
