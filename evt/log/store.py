"""The event log: one SQLite file, append-only, durable, safe for many writers.

``Store`` is the public entry point: ``Store(path).append([...])``, ``.read(...)``,
``.follow(...)``, ``.streams()``, ``.stats()``. The CLI is a thin layer over it.
"""

from __future__ import annotations

import glob
import os
import sqlite3
import threading
import time
import weakref
from array import array
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from ..errors import (
    Conflict,
    EvtError,
    InvalidInput,
    NotAStore,
    StoreMissing,
    StoreReadOnly,
    StoreTooNew,
    StoreTooOld,
    StoreUnavailable,
    StreamNotFound,
)
from . import batch, checkpoints, files, migrations, writers
from .batch import INSERT  # noqa: F401 (the insert statement, for whole-store operations)
from .envelope import ANY, Event, NewEvent, load_stored, loads
from .filters import MAX_INTEGER, Filter, renamed_type_condition, text_argument
from .hooks import ModelHooks
from .keys import MARK, SQL_FLAG, Decryptor, Keys
from .sqlite import connect, corrupted, translate_environment, translate_errors
from .timestamps import now
from .writers import WriterQueue

DEFAULT_PATH = "events.db"
REACTOR = "reactor"  # the kind of a checkpoint saved with appends (a process manager's)
DEFAULT_BUSY_TIMEOUT = 10.0
# New stores are made with pages of 2048 bytes (SQLite's default is 4096). A small append
# changes one page of the table and one of each index (id, stream, category, timestamp):
# with half-size pages, its commit writes and syncs about half the bytes to the WAL, and
# writes of 1-100 events took 5-13 % less time (benchmarks/README, "Again on Tuesday
# 2026-12-01, a later session"). The costs, measured: bulk appends of 100,000 events
# 3-5 % slower, reads of events over about 2 KB (spilling to a second page) 5-10 %;
# other reads the same. A file keeps the page size it was made with.
PAGE_SIZE = 2048

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


# The id and the data of a row whose data may hold an encrypted value, as one JSON array
# (NULL otherwise): one look at the data per row, one column more than the line.
FLAGGED_ID_AND_DATA = f"CASE WHEN {SQL_FLAG} THEN json_array(id, data) END"


def row_to_event(row: tuple) -> Event:
    return Event(*row[:10], load_stored(row[10]), load_stored(row[11]))


class Store:
    """An evt event store in one SQLite file.

    ``create=False`` refuses to create a missing store (read commands never create one).
    ``synchronous`` is ``"full"`` (the default: an acknowledged append survives a power
    cut) or ``"normal"`` (faster; the last appends may be lost on a power cut, never
    corrupted). ``model`` is the user's model, or anything else with the ``ModelHooks``
    of ``evt.log.hooks``: it validates appends and upcasts reads. ``migrate=False`` opens
    a store of an older format as it is, never writing to it (``StoreTooOld`` if it is
    not an evt store yet), for a reader that checks the format it needs (``format()``);
    ``check=False`` skips the bounded check for damaged pages on opening, for a reader
    that checks every page itself (``evt verify``).

    One Store may be shared by many threads: each thread gets its own connection to the
    file (``store.conn`` is the calling thread's), and writers — threads and processes
    alike — queue for their turn (``evt.log.writers``). A store in memory (``":memory:"``)
    has one connection, and its threads take turns on it.
    """

    def __init__(
        self,
        path: str | os.PathLike = DEFAULT_PATH,
        *,
        create: bool = True,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: str = "full",
        model: ModelHooks | None = None,
        migrate: bool = True,
        check: bool = True,
        keys: str | os.PathLike | None = None,
    ):
        self.path = os.fspath(path)
        self.migrate = migrate
        self.model = model
        # Where the keys of personal fields live: the key file ``keys``, else the store itself.
        self.keys = Keys(self.path, lambda: self.conn, os.fspath(keys) if keys is not None else None, busy_timeout)
        self.create = create
        self.busy_timeout = busy_timeout
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        self.synchronous = synchronous
        if not create and not os.path.exists(self.path):
            raise StoreMissing(
                f"no store at {self.path} (evt append creates one; pass --db PATH or set EVT_DB to use another)"
            )
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._shared: sqlite3.Connection | None = None  # the one connection of a store in memory
        self._writer: _Connection | None = None  # see _writer_connection
        self._writer_made = threading.Lock()
        self._immutable = False  # opened read-only as immutable (see _read_as_it_stands)
        # The file's signature when read as immutable though its owner may still write it
        # (a store this user may not write): follow() reopens when it changes.
        self._watched: tuple | None = None
        self._generation = 0  # connections reopened by follow(), see _data_version
        self._closed = False
        in_memory = self.path == ":memory:"
        if not in_memory and _read_as_it_stands(self.path):
            self._immutable = True
            self._watched = _signature(self.path)
        try:
            conn = self._connect()
        except StoreUnavailable:
            if self._immutable or not (os.path.exists(self.path) and files.on_read_only_filesystem(self.path)):
                raise
            # SQLite cannot make the -shm file a WAL store needs for reading there; nothing
            # can change the file either, so it may be read as immutable.
            self._immutable = True
            conn = self._connect()
        if in_memory:
            self._shared = conn
        # a store this user cannot write gets no lock file either: its appends are refused
        self.queue = WriterQueue(None if in_memory else self.path, create=create and not self._immutable)
        _STORES.add(self)
        with translate_errors(self.path):
            self._ensure_format(conn)
        if check and not in_memory:  # never add to a damaged store, and say so alike whatever reads it
            check_not_corrupted(conn, self.path)

    # -- connections -----------------------------------------------------------------

    @property
    def immutable(self) -> bool:
        """Whether the file is read as immutable, without SQLite's locks: a store on a
        read-only file system, or one this user may read but not write, that no process
        has open (see ``_read_as_it_stands``)."""
        return self._immutable

    @property
    def conn(self) -> sqlite3.Connection:
        "The calling thread's connection to the store (made on first use)."
        if self._shared is not None:
            return self._shared
        try:
            return self._local.conn
        except AttributeError:
            if self._closed:
                raise StoreUnavailable(f"{self.path}: the store is closed") from None
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        "A new connection for this thread, kept in its thread-locals (closed when the thread ends)."
        conn = self._open()
        holder = _Connection(conn)
        self._local.holder = holder
        self._local.conn = conn
        self._connections.add(holder)
        return conn

    def _writer_connection(self) -> sqlite3.Connection:
        """The connection that carries this process's small writes, whichever thread leads
        them (only the thread holding the turn uses it). One connection keeps its page
        cache from one write to the next; SQLite empties a connection's cache whenever
        another connection has written since it last read, so writes taking turns on
        each thread's own connection would read the same index pages again every time."""
        if self._shared is not None:
            return self._shared
        holder = self._writer
        if holder is None:
            with self._writer_made:  # one, whichever threads ask first
                holder = self._writer
                if holder is None:
                    if self._closed:
                        raise StoreUnavailable(f"{self.path}: the store is closed")
                    holder = self._writer = _Connection(self._open(writers.WRITER_BUSY_TIMEOUT))
                    self._connections.add(holder)
        return holder.conn

    def _busy_timeout_of(self, conn: sqlite3.Connection) -> float:
        "How long ``conn`` itself waits for SQLite's lock: the writer connection, not at all."
        writer = self._writer
        return writers.WRITER_BUSY_TIMEOUT if writer is not None and conn is writer.conn else self.busy_timeout

    def _as_writer(self) -> "_AsWriter":
        """``with store._as_writer() as conn:`` the writer connection as this thread's for
        the block: an append that holds the turn writes on it, and what it reads through
        ``self.conn`` (keys) sees its open transaction. Only for evt's own appends, which
        run no caller's code inside."""
        return _AsWriter(self)

    def _open(self, busy_timeout: float | None = None) -> sqlite3.Connection:
        "A new connection; ``busy_timeout``, its wait for SQLite's lock, if not the store's."
        with translate_errors(self.path):
            if self.path == ":memory:":
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            else:  # a path, never a URI: --db 'file:x.db' is the file of that name
                conn = connect(
                    self.path, immutable=self._immutable, isolation_level=None,
                    timeout=self.busy_timeout if busy_timeout is None else busy_timeout,
                    check_same_thread=False,
                )
            try:
                conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            except BaseException:
                conn.close()
                raise
        return conn

    def _ensure_format(self, conn: sqlite3.Connection) -> None:
        app_id, version = self._format(conn)
        if app_id == migrations.APPLICATION_ID and version == migrations.FORMAT_VERSION:
            return
        self._check_format(conn, app_id, version)
        if not self.migrate:
            if app_id == 0:
                raise StoreTooOld(f"{self.path} is not an evt store yet")
            return
        if app_id == 0:  # a new store (an empty file): its page size, before anything is written
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            app_id, version = self._format(conn)  # another process may have just done it
            self._check_format(conn, app_id, version)
            migrations.apply_migrations(conn, version, now())

    def format(self) -> int:
        "The store's format version (the number of migrations applied to it)."
        with translate_errors(self.path):
            return self._format(self.conn)[1]

    def _format(self, conn: sqlite3.Connection) -> tuple[int, int]:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return app_id, version

    def _check_format(self, conn: sqlite3.Connection, app_id: int, version: int) -> None:
        if app_id == 0:
            if conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
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

    def _after_fork(self) -> None:
        """In a child process: start afresh, leaving the parent's connections alone.

        SQLite connections must not be used across ``fork()``, nor closed in the child
        (closing the last connection of a process checkpoints and removes the WAL the
        parent still uses), so they are kept, unused, for the child's lifetime.
        """
        if self._shared is None:
            _INHERITED.extend(holder.conn for holder in self._connections)
            self._connections = weakref.WeakSet()
            self._local = threading.local()
            self._writer = None
            self._writer_made = threading.Lock()
        self.queue.after_fork()
        self.keys.after_fork()

    def close(self) -> None:
        "Close every thread's connection (and the writers' queue); the store is unusable after."
        self._closed = True
        for holder in list(self._connections):
            holder.close()
        self._local = threading.local()
        self._writer = None
        if self._shared is not None:
            self._shared.close()
        self.queue.close()
        self.keys.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        "Whether the calling thread holds a write transaction on the store."
        return self.queue.held()

    @contextmanager
    def transaction(self, *, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection, after queueing for the turn.

        ``timeout`` (default: the busy timeout) bounds the whole wait, in the queue and
        for SQLite's lock; past it, ``StoreLocked``. Committed when the block ends,
        rolled back (nothing written) if it raises.
        """
        conn = self.conn
        writers.begin(conn, self.queue, self.path, self.busy_timeout if timeout is None else timeout, self._busy_timeout_of(conn))
        try:
            with translate_environment(self.path):  # a read-only or full file is exit 6, whatever SQL finds it
                yield conn
        except BaseException:
            writers.rollback(conn, self.queue)
            raise
        writers.commit(conn, self.queue, self.path)

    # -- appending -----------------------------------------------------------------

    def append(
        self, events: Iterable[NewEvent] | NewEvent, *, checkpoint: tuple[str, int] | None = None
    ) -> list[Event]:
        """Append events in one transaction; return them as stored.

        An event whose id is already stored with the same content is not stored again:
        the stored event is returned in its place. ``checkpoint`` as for ``write``.
        """
        if isinstance(events, NewEvent):
            events = [events]
        return list(self.events_at(self.write(events, checkpoint=checkpoint), raw=True))

    def write(
        self, events: Iterable[NewEvent], *, validate: bool = True, checkpoint: tuple[str, int] | None = None
    ) -> list[int]:
        """Append events in one transaction; return the position of each, in order.

        Events carrying a ``line`` attribute (an NDJSON batch) name it in errors.
        ``validate=False`` skips the model's schema validation (trusted imports).
        ``checkpoint=(name, position)`` moves that checkpoint forward in the same
        transaction (a reader that appends what it makes of the log — a process manager —
        commits its events and how far it has read together: exactly once). A checkpoint
        only moves forward: a position below the stored one is a ``Conflict`` and nothing
        is written.

        The events are validated and encoded before the write queues for the lock (all
        of them for a write of up to 500), so a bad event is refused without waiting.
        """
        if self.in_transaction:  # inside the caller's ``with store.transaction():``
            return self.write_in_transaction(events, validate=validate, checkpoint=checkpoint)
        chunks = batch.prepare(events, self.model, validate)
        first = next(chunks, [])
        if len(first) < batch.CHUNK:  # all of it is prepared: it may go in one transaction with others'
            return self._write_small(_Write(first, checkpoint))
        with translate_errors(self.path), _conflicts(), self._as_writer(), self.transaction() as conn:
            placement = batch.Placement(conn, self.keys)
            positions = placement.place(first)
            for chunk in chunks:
                positions += placement.place(chunk)
            if checkpoint is not None:
                _save_checkpoint(conn, checkpoint)
            return positions

    def _write_small(self, request: "_Write") -> list[int]:
        """A write of up to one chunk, as one transaction — or in one with the writes of
        other threads of this process waiting behind it (group commit).

        The thread whose turn it is leads: it takes the small writes queued right behind
        it, carries out each in a savepoint of one transaction (a write that fails —
        an expected revision, a reused id — is undone alone and its writer gets the error)
        and commits once: one sync to disk for them all, and each writer returns only
        once that commit is done. Every write stays atomic and in queue order.
        """
        waited = self.queue.join(self.busy_timeout, request)
        if waited is None:  # carried out by the thread whose turn it was
            return request.outcome()
        taken = self.queue.take(GROUP_EVENTS, _Write.size)
        group = [request] + [waiter.request for waiter in taken]
        try:
            with self._as_writer() as conn:
                busy_timeout = self._busy_timeout_of(conn)
                writers.begin_immediate(conn, self.path, self.busy_timeout, busy_timeout, waited)
                try:
                    if not all(each.carry_out(conn, self.path, alone=len(group) == 1, keys=self.keys) for each in group):
                        # A write failed after changing something (a checkpoint behind, a
                        # row refused half-way): the group again, each write in a savepoint.
                        writers.rollback_only(conn)
                        writers.begin_immediate(conn, self.path, self.busy_timeout, busy_timeout, 0.0)
                        for each in group:
                            each.carry_out(conn, self.path, alone=False, keys=self.keys, savepoint=True)
                    with translate_errors(self.path):
                        conn.execute("COMMIT")
                except BaseException:
                    writers.rollback_only(conn)
                    raise
        except BaseException as e:
            for each in group[1:]:
                each.fail(e)
            raise
        finally:
            self.queue.finish(taken)
            self.queue.release()
        return request.outcome()

    def checkpoint(self, name: str) -> int:
        "The position a reader saved under ``name`` (0 when it has saved none)."
        with translate_errors(self.path):
            return checkpoints.load(self.conn, name) or 0

    def save_checkpoint(self, name: str, position: int) -> None:
        """Move the checkpoint ``name`` forward to ``position``: in the transaction this
        thread holds (``with store.transaction(): …``), else in one of its own.
        A position below the stored one is a ``Conflict``."""
        conn = self.conn
        if self.in_transaction:
            _save_checkpoint(conn, (name, position))
            return
        with translate_errors(self.path), self.transaction():
            _save_checkpoint(conn, (name, position))

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

    def write_in_transaction(
        self, events: Iterable[NewEvent], *, validate: bool = True, checkpoint: tuple[str, int] | None = None
    ) -> list[int]:
        "Like ``write``, inside a transaction the caller holds (``with store.transaction():``)."
        conn = self.conn
        placement = batch.Placement(conn, self.keys)
        positions: list[int] = []
        with translate_errors(self.path), _conflicts():
            for chunk in batch.prepare(events, self.model, validate):
                positions += placement.place(chunk)
            if checkpoint is not None:
                _save_checkpoint(conn, checkpoint)
        return positions

    def head(self) -> int:
        "The position of the last event (0 for an empty log)."
        with translate_errors(self.path):
            return self.conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]

    def stream_revision(self, stream: str) -> int:
        "The revision of a stream (0 when it does not exist)."
        text_argument("stream", stream)
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

    def decryptor(self) -> Decryptor:
        "What decrypts the personal fields of this store's events, for one read (``evt.log.keys``)."
        return Decryptor(self.keys)

    def _select_events(self, filter: Filter, raw: bool) -> Iterator[Event]:
        model = self._upcaster(raw)
        sql, params = filter.to_sql(COLUMNS, self._type_matcher(raw))
        decrypt = Decryptor(self.keys)
        with translate_errors(self.path):
            for row in self.conn.execute(sql, params):
                if MARK in row[10]:
                    row = decrypt.row(row)
                event = row_to_event(row)
                yield model.upcast(event) if model else event

    def _select_json(self, filter: Filter, raw: bool, cloudevents: bool = False) -> Iterator[str]:
        model = self._upcaster(raw)
        if cloudevents:
            from . import cloudevents as ce

            line, encode = ce.SQL_LINE, ce.to_json
        else:
            line, encode = JSON_LINE, Event.to_json
        decrypt = Decryptor(self.keys)
        if model is None:
            # Rows with an encrypted value (rare, and found by SQLite) carry their id and data.
            sql, params = filter.to_sql(f"{line}, {FLAGGED_ID_AND_DATA}", self._type_matcher(raw))
            with translate_errors(self.path):
                for text, flagged in self.conn.execute(sql, params):
                    if flagged is None:
                        yield text
                    else:
                        yield decrypt.line(text, *loads(flagged))
            return
        sql, params = filter.to_sql(f"{line}, type, version, {COLUMNS}", self._type_matcher(raw))
        upcastable = model.upcastable
        with translate_errors(self.path):
            for row in self.conn.execute(sql, params):
                if (row[1], row[2]) in upcastable:
                    stored = row[3:]
                    if MARK in stored[10]:
                        stored = decrypt.row(stored)
                    yield encode(model.upcast(row_to_event(stored)))
                elif MARK in row[13]:
                    yield decrypt.line(row[0], row[6], row[13], row[3])
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

    def last(self, filter: Filter | None = None, n: int = 10, *, raw: bool = False) -> tuple[Filter, int]:
        """The last ``n`` events matching a filter, as a filter that reads exactly them
        forwards (``read``/``read_json`` stream them in position order), and the head of
        the log they were taken at (where ``follow`` goes on from).

        One backwards query through the filter's own index finds the first and the last
        of them (positions, or revisions in a stream) and holds no event in memory; the
        forward read is then a range, however large ``n``.
        """
        filter = (filter or Filter()).replace(limit=None, backwards=False)
        bound = "revision" if filter.stream is not None else "position"
        inner, params = filter.replace(limit=max(n, 0), backwards=True).to_sql(bound, self._type_matcher(raw))
        sql = f"SELECT count(*), min({bound}), max({bound}), (SELECT coalesce(max(position), 0) FROM events) FROM ({inner})"
        with translate_errors(self.path):
            count, first, last, head = self.conn.execute(sql, params).fetchone()
        if not count:
            return filter.replace(limit=0), head
        start = first if filter.start is None else max(filter.start, first)
        end = last if filter.end is None else min(filter.end, last)
        return filter.replace(start=start, end=end), head

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

        Each round reads only what is new: the events between the last position looked
        at and the head read just before (a stream's by revision, through its index), so
        a filter no index serves (``--type``) costs the new events, never the log since
        its last match.
        """
        base = (filter or Filter()).replace(after=None, limit=None, backwards=False)
        select = self._select_json if as_json else self._select_events
        stream = base.stream
        with translate_errors(self.path):
            if stream is None:
                seen = after
            else:  # a stream is read by revision: its revision as of position `after`
                row = self.conn.execute(
                    "SELECT revision FROM events WHERE stream = ? AND position <= ? ORDER BY revision DESC LIMIT 1",
                    (stream, min(after, MAX_INTEGER)),
                ).fetchone()
                seen = row[0] if row else 0
        while True:
            version = self._data_version()
            with translate_errors(self.path):
                if stream is None:
                    head = self.conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
                else:
                    head = self.conn.execute("SELECT coalesce(max(revision), 0) FROM events WHERE stream = ?", (stream,)).fetchone()[0]
            if head > seen:
                start = seen + 1 if base.start is None else max(base.start, seen + 1)
                end = head if base.end is None else min(base.end, head)
                if start <= end:
                    yield from select(base.replace(start=start, end=end), raw)
                seen = head
            while self._data_version() == version:
                if idle is not None:
                    idle()
                time.sleep(poll_interval)

    def ensure_writable(self) -> None:
        """``StoreReadOnly`` (exit 6) unless this user can write the store: for a command
        that writes it, before it does anything else (a relay before it publishes, a
        consumer before it runs its command)."""
        if self.path == ":memory:":
            return
        files.ensure_writable(self.path)

    def _data_version(self) -> tuple[int, int]:
        "What changes when another connection commits (or follow() had to reopen the store)."
        if self._watched is not None:
            self._reopen_if_written()
        with translate_errors(self.path):
            return self._generation, self.conn.execute("PRAGMA data_version").fetchone()[0]

    def _reopen_if_written(self) -> None:
        """For a store read as immutable that its owner may write: once the file changes,
        this thread reads it afresh; once a writer has it open (its -shm file exists),
        through that file like any reader, which sees every commit from then on."""
        signature = _signature(self.path)
        if signature == self._watched:
            return
        holder = getattr(self._local, "holder", None)
        if holder is not None:
            holder.close()
            del self._local.holder, self._local.conn
        self._generation += 1
        self._watched = signature
        if signature and signature[-1]:  # a writer has it open
            self._immutable = False
            try:
                self._connect()
                self._watched = None
                return
            except StoreUnavailable:  # its last connection closed meanwhile, taking the -shm file
                self._immutable = True
                self._watched = _signature(self.path)
        self._connect()

    # -- summaries -----------------------------------------------------------------

    def streams(self, category: str | None = None) -> list[dict]:
        "One summary per stream: name, category, revision, first and last timestamp."
        text_argument("category", category)
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


# Opening a store reads every page of its log and indexes, and decodes every row's text,
# when the store is at most this big (about 8 ms per MiB); a bigger one, the last pages.
CHECK_EVERY_PAGE_UP_TO = 2 * 1024 * 1024


def check_not_corrupted(conn: sqlite3.Connection, path: str) -> None:
    """StoreCorrupted if the pages of the log are damaged, checked at a bounded cost.

    SQLite checks every page it reads (its header, its cells, the pages it points to), and
    Python every text it decodes. A store up to ``CHECK_EVERY_PAGE_UP_TO`` has every page
    of the events table and of each of its indexes read and every row's text decoded; a
    bigger one, the last pages of each — where appends go (SQLite checks the rest of an
    append's path as it writes). This is not ``PRAGMA integrity_check``, which reads
    everything and cross-checks the indexes against the table: that one is for a person
    to run when this reports a damaged store.
    """
    with translate_errors(path):
        try:
            _read_the_log(conn)
        except sqlite3.DataError as e:  # "string or blob too big": a stored length no write could have made
            raise corrupted(path, "a record's length is damaged") from e


def _read_the_log(conn: sqlite3.Connection) -> None:
    "Read the pages check_not_corrupted looks at (see there)."
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    everything = pages * conn.execute("PRAGMA page_size").fetchone()[0] <= CHECK_EVERY_PAGE_UP_TO
    if everything:
        for _ in conn.execute(ROW_TEXT):  # each row's text decoded (by Python, which checks it is UTF-8)
            pass
    else:
        conn.execute("SELECT max(position) FROM events").fetchone()
    for (index,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events'").fetchall():
        columns = [_sql_name(c) for (c,) in conn.execute(f"SELECT name FROM pragma_index_info({_sql_text(index)})")]
        first, index = columns[0], _sql_name(index)
        where = f"FROM events INDEXED BY {index} WHERE {first} IS NOT NULL"
        if everything:  # each entry read whole (its columns and the position it points to), as count(*) would not
            conn.execute(f"SELECT sum({' + '.join(f'length({c})' for c in columns)}), sum(position) {where}").fetchone()
        else:
            conn.execute(f"SELECT {first} {where} ORDER BY {first} DESC LIMIT 1").fetchone()


ROW_TEXT = (
    "SELECT position + revision + version, stream || id || type || timestamp || ifnull(source, '') "
    "|| ifnull(correlation_id, '') || ifnull(causation_id, '') || data || metadata FROM events"
)


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Every open Store, so that a forked child starts with its own connections (see _after_fork);
# the connections a child inherited, never used nor closed there.
_STORES: "weakref.WeakSet[Store]" = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []


def _forget_the_parents_connections() -> None:
    for store in list(_STORES):
        store._after_fork()


os.register_at_fork(after_in_child=_forget_the_parents_connections)

# A write carried out for others takes at most this many events from the line behind it.
GROUP_EVENTS = 1000


class _Write:
    "A small write (one prepared chunk), carried out by its own thread or by the one whose turn it is."

    __slots__ = ("chunk", "checkpoint", "positions", "error")

    def __init__(self, chunk: list, checkpoint: tuple[str, int] | None):
        if checkpoint is not None:
            _check_checkpoint(checkpoint)
        self.chunk = chunk
        self.checkpoint = checkpoint
        self.positions: list[int] | None = None
        self.error: BaseException | None = None

    def size(self) -> int:
        return len(self.chunk)

    def carry_out(
        self, conn: sqlite3.Connection, path: str, alone: bool, keys: Keys | None = None, savepoint: bool = False
    ) -> bool:
        """Place the write in the open transaction; False if it failed and left changes.

        ``alone``, its errors are raised (the transaction is undone). Among others, evt's
        errors are kept for its writer and the others go on: a write is checked before it
        changes anything (expected revisions, ids given again), so a failed one has
        almost always changed nothing. When it has (``total_changes`` moved: a
        checkpoint behind, a row refused half-way), it says so, and the group is carried
        out again with each write in a ``savepoint``, whose rollback undoes it alone.
        (A savepoint for every write costs two more statements each, and each statement
        hands the GIL to other threads and waits to get it back.)"""
        if alone:
            self.positions = self._place(conn, path, keys)
            return True
        self.positions = self.error = None
        if savepoint:
            with translate_errors(path):
                conn.execute("SAVEPOINT evt_write")
        before = conn.total_changes
        try:
            self.positions = self._place(conn, path, keys)
        except (Conflict, InvalidInput) as e:  # this write's own fault: the others go on
            self.error = e
            if not savepoint:
                return conn.total_changes == before
            with translate_errors(path):
                conn.execute("ROLLBACK TO evt_write")
        if savepoint:
            with translate_errors(path):
                conn.execute("RELEASE evt_write")
        return True

    def _place(self, conn: sqlite3.Connection, path: str, keys: Keys | None) -> list[int]:
        with translate_errors(path), _conflicts():
            positions = batch.Placement(conn, keys).place(self.chunk) if self.chunk else []
            if self.checkpoint is not None:
                _save_checkpoint(conn, self.checkpoint)
        return positions

    def fail(self, error: BaseException) -> None:
        "The transaction carrying this write failed: so did the write."
        if self.error is None:
            import copy

            self.error = copy.copy(error) if isinstance(error, EvtError) else StoreUnavailable(
                f"the transaction carrying this write failed ({type(error).__name__}: {error}); nothing was written"
            )
            self.positions = None

    def outcome(self) -> list[int]:
        if self.error is not None:
            raise self.error
        return self.positions


def _check_checkpoint(checkpoint: Any) -> None:
    if not (isinstance(checkpoint, tuple) and len(checkpoint) == 2 and isinstance(checkpoint[0], str)):
        raise ValueError(f"checkpoint is (name, position), not {checkpoint!r}")


def _save_checkpoint(conn: sqlite3.Connection, checkpoint: tuple[str, int]) -> None:
    _check_checkpoint(checkpoint)
    checkpoints.save(conn, checkpoint[0], REACTOR, checkpoint[1])


class _conflicts:
    "A unique constraint of the events table refusing a row: another writer got there first."

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if kind is not None and issubclass(kind, sqlite3.IntegrityError):
            raise Conflict(f"the store refused the append ({error}); another writer changed it meanwhile: try again") from error
        return False


class _AsWriter:
    __slots__ = ("store", "own")

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self.store
        local = store._local.__dict__
        self.own = local.get("conn")
        local["conn"] = conn = store._writer_connection()
        return conn

    def __exit__(self, *exc: object) -> bool:
        local = self.store._local.__dict__
        if self.own is None:
            local.pop("conn", None)
        else:
            local["conn"] = self.own
        return False


class _Connection:
    """A thread's connection, weakly listed by its Store so that ``close`` reaches every
    thread's — and closed as soon as its thread ends (its thread-locals go). Without that
    it would stay open until the garbage collector finds it (sqlite3's statement cache
    refers back to its connection), past ``Store.close``, keeping ``-wal`` in place."""

    __slots__ = ("conn", "pid", "__weakref__")

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.pid = os.getpid()

    def close(self) -> None:
        self.conn.close()

    def __del__(self) -> None:
        if self.pid == os.getpid():  # never in a forked child: the parent still uses the file (see _after_fork)
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


def _read_as_it_stands(path: str) -> bool:
    """Whether a store is to be read as immutable, creating nothing beside it.

    Reading a WAL store takes its -shm file, which SQLite makes beside it if no process
    has the store open. A user who may read the store but not write it or its folder (a
    store another user owns, a file made read-only) would get an error, or leave -wal
    and -shm files behind. With no -shm file no process has the store open, so it is
    read as it stands in its file. Once a writer opens it the -shm file exists (made by
    the writer, readable by whoever may read the store) and SQLite reads through it.
    """
    if os.path.exists(path + "-shm") or not os.path.isfile(path):
        return False
    return not (os.access(path, os.W_OK) and os.access(os.path.dirname(path) or os.curdir, os.W_OK))


def _signature(path: str) -> tuple:
    "What changes when a file is written (or replaced), and whether a process has it open."
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return st.st_ino, st.st_size, st.st_mtime_ns, os.path.exists(path + "-shm")


def _file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


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
    folder = os.path.dirname(path) or os.curdir
    if not os.path.isdir(folder):
        raise StoreUnavailable(f"cannot create {path}: folder {os.path.dirname(os.path.abspath(path))} does not exist")
    if files.on_read_only_filesystem(path):
        raise StoreReadOnly(f"cannot create {path}: the file system is read-only")
    staging_path = files.temporary_name(path, STAGING)
    files.remove_abandoned(glob.escape(path), STAGING)
    given: dict[int, tuple] = {}
    lines = array("q")
    try:
        with _naming(staging_path, path), cls(staging_path, **options) as staging:
            positions = staging.write(_remembering(events, given, lines), validate=validate)
            staging.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            files.publish(staging_path, path)
        except FileExistsError:  # published by another writer meanwhile
            with _naming(staging_path, path), cls(staging_path, create=False, **options) as staging:
                store = cls(path, **options)
                try:
                    staged = _staged_events(staging, positions, given, lines)
                    return store, store.write(staged, validate=False)
                except BaseException:
                    store.close()
                    raise
    finally:
        files.remove_sqlite_files(staging_path)
    return cls(path, **options), positions


@contextmanager
def _naming(staging_path: str, path: str) -> Iterator[None]:
    "Errors about the staging file name the store the user asked for."
    try:
        yield
    except StoreUnavailable as e:
        raise type(e)(str(e).replace(staging_path, path)) from e


def _remembering(events: Iterable[NewEvent], given: dict[int, tuple], lines: array) -> Iterator[NewEvent]:
    """The events, noting what must be given again if they are appended elsewhere: the
    line of each (compactly), and each expected revision or timestamp the writer gave."""
    for index, event in enumerate(events):
        if event.expected != ANY or event.timestamp is not None:
            given[index] = (event.expected, event.timestamp)
        lines.append(event.line or 0)
        yield event


def _staged_events(staging: Store, positions: list[int], given: dict[int, tuple], lines: array) -> Iterator[NewEvent]:
    "The events of a staged batch as they were given (an id given twice, twice), to append elsewhere."
    stored = staging.read(raw=True)
    seen = 0
    for index, position in enumerate(positions):
        if position > seen:
            event, seen = next(stored), position
        else:
            event = next(staging.events_at([position], raw=True))
        expected, timestamp = given.get(index, (ANY, None))
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
            timestamp=timestamp,
            expected=expected,
        )
        again.line = lines[index] or None
        yield again
