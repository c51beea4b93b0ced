"""The event log: one SQLite file, append-only, durable, safe for many writers.

``Store`` is the public entry point: ``Store(path).append([...])``, ``.read(...)``,
``.follow(...)``, ``.streams()``, ``.stats()``. The CLI is a thin layer over it.
"""

from __future__ import annotations

import glob
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from ..errors import (
    DuplicateEventId,
    EvtError,
    InvalidInput,
    LineError,
    NotAStore,
    StoreMissing,
    StoreTooNew,
    StoreUnavailable,
    StreamNotFound,
    WrongExpectedRevision,
)
from . import files, migrations
from .envelope import ANY, EXISTS, Event, IdFactory, NewEvent, dumps, fast_dumps, loads
from .filters import Filter, renamed_type_condition
from .hooks import ModelHooks
from .sqlite import translate_errors
from .timestamps import now

DEFAULT_PATH = "events.db"
DEFAULT_BUSY_TIMEOUT = 10.0

COLUMNS = (
    "position, stream, revision, id, type, version, timestamp, source, "
    "correlation_id, causation_id, data, metadata"
)

# The envelope as one line of JSON, built by SQLite itself: no Python per field.
# data and metadata are stored as compact JSON text, so they are spliced in as they are.
JSON_LINE = (
    """'{"position":'||position||',"stream":'||json_quote(stream)||',"revision":'||revision"""
    """||',"id":'||json_quote(id)||',"type":'||json_quote(type)||',"version":'||version"""
    """||',"timestamp":'||json_quote(timestamp)||',"source":'||json_quote(source)"""
    """||',"correlationId":'||json_quote(correlation_id)||',"causationId":'||json_quote(causation_id)"""
    """||',"data":'||data||',"metadata":'||metadata||'}'"""
)

INSERT = (
    "INSERT INTO events (position, stream, revision, id, type, version, timestamp, source, "
    "correlation_id, causation_id, data, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# Given ids are looked up in chunks (well under SQLite's limit on host parameters).
ID_CHUNK = 500


def row_to_event(row: tuple) -> Event:
    return Event(*row[:10], loads(row[10]), loads(row[11]))


class Store:
    """An evt event store in one SQLite file.

    ``create=False`` refuses to create a missing store (read commands never create one).
    ``synchronous`` is ``"full"`` (the default: an acknowledged append survives a power
    cut) or ``"normal"`` (faster; the last appends may be lost on a power cut, never
    corrupted). ``model`` is the user's model, or anything else with the ``ModelHooks``
    of ``evt.log.hooks``: it validates appends and upcasts reads.
    """

    def __init__(
        self,
        path: str | os.PathLike = DEFAULT_PATH,
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: str = "full",
        model: ModelHooks | None = None,
    ):
        self.path = os.fspath(path)
        self.model = model
        self.create = create
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        if not create and not os.path.exists(self.path):
            raise StoreMissing(
                f"no store at {self.path} (evt append creates one; pass --db PATH or set EVT_DB to use another)"
            )
        try:
            self._open(self.path, busy_timeout, synchronous)
        except StoreUnavailable:
            if not (os.path.exists(self.path) and _on_read_only_filesystem(self.path)):
                raise
            # SQLite cannot make the -shm file a WAL store needs for reading there; nothing
            # can change the file either, so it may be read as immutable.
            from urllib.parse import quote

            self._open("file:" + quote(os.path.abspath(self.path)) + "?immutable=1", busy_timeout, synchronous)

    # -- opening -------------------------------------------------------------------

    def _open(self, target: str, busy_timeout: float, synchronous: str) -> None:
        with translate_errors(self.path):
            self.conn = sqlite3.connect(
                target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=target.startswith("file:")
            )
            self.conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._ensure_format()

    def _ensure_format(self) -> None:
        app_id, version = self._format()
        if app_id == migrations.APPLICATION_ID and version == migrations.FORMAT_VERSION:
            return
        self._check_format(app_id, version)
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            app_id, version = self._format()  # another process may have just done it
            self._check_format(app_id, version)
            migrations.apply_migrations(self.conn, version, now())

    def _format(self) -> tuple[int, int]:
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        return app_id, version

    def _check_format(self, app_id: int, version: int) -> None:
        if app_id == 0:
            if self.conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise NotAStore(f"{self.path} is a SQLite file but not an evt store")
            if not self.create:  # an empty file: reading never turns it into a store
                raise StoreMissing(f"{self.path} is empty, not an evt store yet (evt append creates one)")
            return
        if app_id != migrations.APPLICATION_ID:
            raise NotAStore(f"{self.path} is not an evt store (application id {app_id:#x})")
        if version > migrations.FORMAT_VERSION:
            raise StoreTooNew(
                f"{self.path} has store format {version}, newer than this evt understands "
                f"({migrations.FORMAT_VERSION}); upgrade evt"
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        "One write transaction, taken up front (BEGIN IMMEDIATE) so writers queue."
        with translate_errors(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            try:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            except sqlite3.ProgrammingError:  # closed already: Ctrl-C came between two steps
                pass
            raise
        with translate_errors(self.path):
            self.conn.execute("COMMIT")

    # -- appending -----------------------------------------------------------------

    def append(self, events: Iterable[NewEvent] | NewEvent) -> list[Event]:
        """Append events in one transaction; return them as stored.

        An event whose id is already stored with the same stream, type and data is not
        stored again: the stored event is returned in its place.
        """
        if isinstance(events, NewEvent):
            events = [events]
        return list(self.events_at(self.write(events), raw=True))

    def write(self, events: Iterable[NewEvent], *, validate: bool = True) -> list[int]:
        """Append events in one transaction; return the position of each, in order.

        Events carrying a ``line`` attribute (an NDJSON batch) name it in errors.
        ``validate=False`` skips the model's schema validation (trusted imports).
        """
        with translate_errors(self.path), self.transaction():
            return self.write_in_transaction(events, validate=validate)

    @classmethod
    def write_creating(
        cls, path: str | os.PathLike, events: Iterable[NewEvent], *, validate: bool = True, **options: Any
    ) -> tuple["Store", list[int]]:
        """Append events to the store at ``path``, creating it only if the append succeeds.

        Returns the open store and the position of each event. A store that does not
        exist yet is built in a staging file next to it and published (a hard link, which
        never replaces a file) once the batch has committed: a failed first append leaves
        nothing behind, and a writer that created the store a moment earlier loses nothing.
        If another process published the store first, the staged events are appended to
        it, their expected revisions checked again.
        """
        path = os.fspath(path)
        if os.path.exists(path):
            store = cls(path, **options)
            try:
                return store, store.write(events, validate=validate)
            except BaseException:
                store.close()
                raise
        return _create_with(cls, path, events, validate, options)

    def write_in_transaction(self, events: Iterable[NewEvent], *, validate: bool = True) -> list[int]:
        "Like ``write``, inside a transaction the caller holds (``with store.transaction():``)."
        return _Batch(self, validate and self.model is not None).write(events)

    def head(self) -> int:
        "The position of the last event (0 for an empty log)."
        with translate_errors(self.path):
            return self.conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]

    def stream_revision(self, stream: str) -> int:
        "The revision of a stream (0 when it does not exist)."
        with translate_errors(self.path):
            row = self.conn.execute("SELECT max(revision) FROM events WHERE stream = ?", (stream,)).fetchone()
        return row[0] or 0

    # -- reading -------------------------------------------------------------------

    def read(self, filter: Filter | None = None, *, raw: bool = False) -> Iterator[Event]:
        "Events matching a filter, in position order (streamed, never all in memory)."
        filter = filter or Filter()
        self._check_stream(filter)
        yield from self._select_events(filter, raw)

    def read_json(self, filter: Filter | None = None, *, raw: bool = False, cloudevents: bool = False) -> Iterator[str]:
        """Like ``read``, as envelope JSON lines (built by SQLite where nothing needs upcasting).

        ``cloudevents``: as structured CloudEvents instead (``evt.log.cloudevents``).
        """
        filter = filter or Filter()
        self._check_stream(filter)
        yield from self._select_json(filter, raw, cloudevents)

    def _check_stream(self, filter: Filter) -> None:
        if filter.stream is not None and not self.stream_revision(filter.stream):
            raise StreamNotFound(f"stream {filter.stream!r} not found")

    def _upcaster(self, raw: bool) -> ModelHooks | None:
        "The hooks that upcast reads, unless reading raw or there is nothing to upcast."
        if raw or self.model is None or not self.model.upcastable:
            return None
        return self.model

    def _select_events(self, filter: Filter, raw: bool) -> Iterator[Event]:
        model = self._upcaster(raw)
        sql, params = filter.to_sql(COLUMNS, self._type_matcher(raw))
        with translate_errors(self.path):
            for row in self.conn.execute(sql, params):
                event = row_to_event(row)
                yield model.upcast(event) if model else event

    def _select_json(self, filter: Filter, raw: bool, cloudevents: bool = False) -> Iterator[str]:
        model = self._upcaster(raw)
        if cloudevents:
            from . import cloudevents as ce

            line, encode = ce.SQL_LINE, ce.to_json
        else:
            line, encode = JSON_LINE, Event.to_json
        if model is None:
            sql, params = filter.to_sql(line, self._type_matcher(raw))
            with translate_errors(self.path):
                for (text,) in self.conn.execute(sql, params):
                    yield text
            return
        sql, params = filter.to_sql(f"{line}, type, version, {COLUMNS}", self._type_matcher(raw))
        upcastable = model.upcastable
        with translate_errors(self.path):
            for row in self.conn.execute(sql, params):
                if (row[1], row[2]) in upcastable:
                    yield encode(model.upcast(row_to_event(row[3:])))
                else:
                    yield row[0]

    def _type_matcher(self, raw: bool):
        "How ``--type`` globs become SQL: matching the types readers see after upcasting, unless raw."
        model = self._upcaster(raw)
        renamed = model.renamed_types() if model else None
        return renamed_type_condition(self.conn, renamed) if renamed else None

    def events_at(self, positions: Iterable[int], *, raw: bool = False) -> Iterator[Event]:
        "The events at these positions, in the order given (as stored with ``raw``)."
        for start, end in _runs(positions):
            yield from self._select_events(Filter(start=start, end=end), raw)

    def json_at(self, positions: Iterable[int], *, raw: bool = False) -> Iterator[str]:
        "The envelopes at these positions as JSON lines, in the order given (as stored with ``raw``)."
        for start, end in _runs(positions):
            yield from self._select_json(Filter(start=start, end=end), raw)

    def follow(
        self,
        filter: Filter | None = None,
        *,
        after: int = 0,
        raw: bool = False,
        poll_interval: float = 0.05,
        as_json: bool = False,
        idle: Callable[[], None] | None = None,
    ) -> Iterator[Any]:
        """Events after position ``after`` matching a filter, waiting for new ones forever.

        Waiting costs one ``PRAGMA data_version`` per poll interval: it changes only
        when another connection commits, so an idle follower does next to nothing.
        ``idle`` is called once per poll interval while waiting (it may raise to stop).
        """
        filter = (filter or Filter()).following(after)
        select = self._select_json if as_json else self._select_events
        while True:
            version = self._data_version()
            for item in select(filter, raw):
                yield item
                filter = filter.following(_position_of(item))
            while self._data_version() == version:
                if idle is not None:
                    idle()
                time.sleep(poll_interval)

    def _data_version(self) -> int:
        with translate_errors(self.path):
            return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # -- summaries -----------------------------------------------------------------

    def streams(self, category: str | None = None) -> list[dict]:
        "One summary per stream: name, category, revision, first and last timestamp."
        where, params = ("WHERE category = ?", (category,)) if category else ("", ())
        sql = f"""
            SELECT s.stream, s.category, s.revision,
                   (SELECT timestamp FROM events WHERE stream = s.stream AND revision = 1),
                   (SELECT timestamp FROM events WHERE stream = s.stream AND revision = s.revision)
            FROM (SELECT stream, category, max(revision) AS revision FROM events {where} GROUP BY stream) AS s
            ORDER BY s.stream
        """
        with translate_errors(self.path):
            rows = self.conn.execute(sql, params).fetchall()
        keys = ("stream", "category", "revision", "firstTimestamp", "lastTimestamp")
        return [dict(zip(keys, row)) for row in rows]

    def stats(self) -> dict:
        "Counts by type and version, positions, streams and file size."
        with translate_errors(self.path):
            conn = self.conn
            count, first, last, first_ts, last_ts = conn.execute(
                "SELECT count(*), min(position), max(position), min(timestamp), max(timestamp) FROM events"
            ).fetchone()
            streams = conn.execute("SELECT count(DISTINCT stream) FROM events").fetchone()[0]
            by_type = conn.execute(
                "SELECT type, version, count(*) FROM events GROUP BY type, version ORDER BY type, version"
            ).fetchall()
            fmt = conn.execute("PRAGMA user_version").fetchone()[0]
        types: dict[str, dict] = {}
        for type_, version, n in by_type:
            entry = types.setdefault(type_, {"count": 0, "versions": {}})
            entry["count"] += n
            entry["versions"][str(version)] = n
        return {
            "path": self.path,
            "events": count,
            "streams": streams,
            "firstPosition": first,
            "lastPosition": last,
            "firstTimestamp": first_ts,
            "lastTimestamp": last_ts,
            "fileSize": _file_size(self.path),
            "formatVersion": fmt,
            "types": types,
        }


def _on_read_only_filesystem(path: str) -> bool:
    try:
        return bool(os.statvfs(os.path.dirname(os.path.abspath(path))).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _position_of(item: Any) -> int:
    if isinstance(item, Event):
        return item.position
    return int(item[12 : item.index(",")])  # '{"position":N,…' as built by JSON_LINE or dumps


def _runs(positions: Iterable[int]) -> Iterator[tuple[int, int]]:
    "Consecutive runs of positions, as (first, last) pairs, in the order given."
    start = end = None
    for p in positions:
        if start is not None and p == end + 1:
            end = p
            continue
        if start is not None:
            yield start, end
        start = end = p
    if start is not None:
        yield start, end


STAGING = ".creating-"  # a new store is built as events.db.creating-PID


def _create_with(cls, path: str, events: Iterable[NewEvent], validate: bool, options: dict) -> tuple[Store, list[int]]:
    "``Store.write_creating`` for a store that does not exist yet."
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreUnavailable(f"cannot create {path}: folder {folder} does not exist")
    staging_path = files.temporary_name(path, STAGING)
    files.remove_abandoned(glob.escape(path), STAGING)
    expectations: dict[int, tuple] = {}
    try:
        with _naming(staging_path, path), cls(staging_path, **options) as staging:
            positions = staging.write(_remembering(events, expectations), validate=validate)
            staging.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            files.publish(staging_path, path)
        except FileExistsError:  # published by another writer meanwhile
            with _naming(staging_path, path), cls(staging_path, create=False, **options) as staging:
                store = cls(path, **options)
                try:
                    staged = _staged_events(staging, positions, expectations)
                    return store, store.write(staged, validate=False)
                except BaseException:
                    store.close()
                    raise
    finally:
        files.remove_sqlite_files(staging_path)
    files.sync_folder(folder)
    return cls(path, **options), positions


@contextmanager
def _naming(staging_path: str, path: str) -> Iterator[None]:
    "Errors about the staging file name the store the user asked for."
    try:
        yield
    except StoreUnavailable as e:
        raise type(e)(str(e).replace(staging_path, path)) from e


def _remembering(events: Iterable[NewEvent], expectations: dict[int, tuple]) -> Iterator[NewEvent]:
    "The events, noting each one's expected revision and line (needed if they must be appended again)."
    for index, event in enumerate(events):
        if event.expected != ANY or event.line is not None:
            expectations[index] = (event.expected, event.line)
        yield event


def _staged_events(staging: Store, positions: list[int], expectations: dict[int, tuple]) -> Iterator[NewEvent]:
    "The events of a staged batch as they were given (an id given twice, twice), to append elsewhere."
    stored = staging.read(raw=True)
    seen = 0
    for index, position in enumerate(positions):
        if position > seen:
            event, seen = next(stored), position
        else:
            event = next(staging.events_at([position], raw=True))
        expected, line = expectations.get(index, (ANY, None))
        again = NewEvent(
            event.stream,
            event.type,
            event.data,
            id=event.id,
            version=event.version,
            source=event.source,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            metadata=event.metadata,
            timestamp=event.timestamp,
            expected=expected,
        )
        again.line = line
        yield again


class _Batch:
    "The work of one append transaction: ids, expected revisions, positions."

    def __init__(self, store: Store, validate: bool):
        self.conn = store.conn
        self.model = store.model if validate else None
        self.position = store.conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        self.heads: dict[str, int] = {}
        self.seen: dict[str, tuple] = {}  # id -> (stream, type, data json, position, line), this batch
        self.new_id = IdFactory()
        self.timestamp = now()
        self.dumps = dumps  # orjson after the first chunk: small appends skip importing it

    def write(self, events: Iterable[NewEvent]) -> list[int]:
        positions: list[int] = []
        chunk: list[NewEvent] = []
        for event in events:
            chunk.append(event)
            if len(chunk) >= ID_CHUNK:
                positions += self._write_chunk(chunk)
                chunk = []
                self.dumps = fast_dumps
        if chunk:
            positions += self._write_chunk(chunk)
        return positions

    def _write_chunk(self, chunk: list[NewEvent]) -> list[int]:
        stored = self._stored_ids([e.id for e in chunk if e.id is not None])
        rows, positions, placed = [], [], []
        for event in chunk:
            try:
                positions.append(self._place(event, stored, rows))
            except EvtError as e:
                raise _on_line(event, e)
            if len(placed) < len(rows):
                placed.append(event)
        try:
            self.conn.executemany(INSERT, rows)
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") is JSON, but not text SQLite can store
            raise _unencodable(rows, placed) from None
        return positions

    def _place(self, event: NewEvent, stored: dict, rows: list) -> int:
        if self.model is not None:
            self.model.validate(event)
        data = self.dumps(event.data)
        if event.id is not None:
            existing = self.seen.get(event.id) or stored.get(event.id)
            if existing is not None:
                return _same_event(event, data, existing)
        revision = self._revision(event) + 1
        self.position += 1
        self.heads[event.stream] = revision
        event_id = event.id or self.new_id()
        self.seen[event_id] = (event.stream, event.type, data, self.position, event.line)
        rows.append(
            (
                self.position,
                event.stream,
                revision,
                event_id,
                event.type,
                event.version,
                event.timestamp or self.timestamp,
                event.source,
                event.correlation_id,
                event.causation_id,
                data,
                self.dumps(event.metadata),
            )
        )
        return self.position

    def _revision(self, event: NewEvent) -> int:
        "The stream's current revision, checked against the event's expectation."
        head = self.heads.get(event.stream)
        if head is None:
            row = self.conn.execute("SELECT max(revision) FROM events WHERE stream = ?", (event.stream,)).fetchone()
            head = self.heads[event.stream] = row[0] or 0
        expected = event.expected
        if expected == ANY:
            return head
        if expected == EXISTS:
            if head == 0:
                raise WrongExpectedRevision(f"stream {event.stream!r} does not exist (expected it to exist)")
        elif head != expected:
            raise WrongExpectedRevision(f"stream {event.stream!r} is at revision {head}, expected {expected}")
        return head

    def _stored_ids(self, ids: list[str]) -> dict[str, tuple]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT id, stream, type, data, position FROM events WHERE id IN ({marks})", ids
        ).fetchall()
        return {row[0]: row[1:] for row in rows}


def _on_line(event: NewEvent, error: EvtError) -> EvtError:
    "The error, naming the NDJSON line of the event when it came from one."
    return LineError(event.line, error) if event.line is not None else error


def _unencodable(rows: list[tuple], events: list[NewEvent]) -> EvtError:
    "InvalidInput for the first row holding text that is not valid Unicode."
    for row, event in zip(rows, events):
        for value in row:
            try:
                if isinstance(value, str):
                    value.encode()
            except UnicodeEncodeError as e:
                bad = value[e.start : e.end].encode("unicode_escape").decode()
                return _on_line(event, InvalidInput(f"{bad} is not valid Unicode text (a lone surrogate)"))
    return InvalidInput("the events hold text that is not valid Unicode")


def _same_event(event: NewEvent, data: str, existing: tuple) -> int:
    "The stored position of an idempotent re-append; DuplicateEventId if it differs."
    stream, type_, stored_data, position = existing[:4]
    if stream == event.stream and type_ == event.type and (stored_data == data or same_json(loads(stored_data), event.data)):
        return position
    if len(existing) > 4:  # an earlier event of this batch, not stored yet
        first = f" (first on line {existing[4]})" if existing[4] is not None else ""
        raise DuplicateEventId(f"event id {event.id!r} is given twice in this batch with other content{first}")
    raise DuplicateEventId(
        f"event id {event.id!r} is already stored (position {position}, stream {stream!r}, type {type_!r}) with other content"
    )


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
