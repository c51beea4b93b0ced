"""Running a handler over the log: checkpoints, batched commits, retries, dead letters.

A *processor* (a SQL or Python projection, or a shell consumer) handles events; a
``Runner`` feeds it the log from its checkpoint. Everything a processor writes, its
checkpoint and its dead letters live in one SQLite file (its *target*) and are
committed together, a batch at a time, so a killed run resumes exactly where its last
commit left it: exactly-once for what the processor writes into SQLite.

Each event runs inside a savepoint (a failed event's partial writes are undone while
the batch goes on); a handler that is one SQL statement needs none, since SQLite
undoes a failed statement by itself.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..errors import EvtError, HandlerFailed, OutputClosed, join_lines
from ..log import checkpoints, files, writers
from ..log.filters import Filter, renamed_type_condition
from ..log.sqlite import connect, translate_environment, translate_errors
from ..log.store import COLUMNS, Store, row_to_event
from ..log.timestamps import now
from ..log.writers import WriterQueue
from . import deadletters
from .guard import RULE, Guard, one_line_statement

BATCH_SIZE = 1000  # events per commit
BATCH_SECONDS = 0.2  # and at least this often, so appenders queued behind a replay wait little
CHUNK = 1000  # events read at a time


class Target:
    """The SQLite file a processor writes into: its tables, its checkpoint, its dead letters.

    Its writes queue for their turn like every evt writer's (``evt.log.writers``): the
    events store's queue when the target is the store, the target file's own otherwise.
    """

    def __init__(self, store: Store, path: str | None = None, *, busy_timeout: float = 10.0, synchronous: str = "full"):
        self.store = store
        self.is_store = path is None or same_file(path, store.path)
        self.path = store.path if self.is_store else path
        self.held = False  # a transaction of this target's is open (the turn is held)
        if self.is_store:
            self.conn = store.conn
            self.queue = store.queue
            self.busy_timeout = store.busy_timeout
            return
        _create_like_the_store(path, store.path)
        self.busy_timeout = busy_timeout
        self.queue = WriterQueue(path)
        with translate_errors(path):
            self.conn = connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
            if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        with self.transaction():
            deadletters.create_bookkeeping(self.conn)

    def begin(self) -> None:
        writers.begin(self.conn, self.queue, self.path, self.busy_timeout, self.busy_timeout)
        self.held = True

    def commit(self) -> None:
        self.held = False
        writers.commit(self.conn, self.queue, self.path)

    def rollback(self) -> None:
        "Undo the open transaction, if there is one."
        if self.held:
            self.held = False
            writers.rollback(self.conn, self.queue)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        "One short write transaction on the target."
        self.begin()
        try:
            with translate_environment(self.path):  # a read-only or full file is exit 6
                yield self.conn
        except BaseException:
            self.rollback()
            raise
        self.commit()

    def checkpoint(self, name: str) -> int | None:
        "The last position a processor has handled; None when it never ran here."
        return checkpoints.load(self.conn, name)

    def save_checkpoint(self, name: str, kind: str, position: int, command: str | None = None) -> None:
        "Move the processor's checkpoint forward (a Conflict if it would move back)."
        checkpoints.save(self.conn, name, kind, position, command)

    def forget(self, name: str) -> None:
        "Drop a processor's checkpoint and dead letters (a rebuild starts from nothing)."
        checkpoints.delete(self.conn, name)
        deadletters.delete_consumer(self.conn, name)

    def close(self) -> None:
        if not self.is_store:
            self.conn.close()
            self.queue.close()


def _create_like_the_store(path: str, store_path: str) -> None:
    "A target file that does not exist yet is created with the store's permission bits (a private store, a private read model)."
    if os.path.lexists(path) or not os.path.exists(store_path):
        return
    try:
        files.create_like(path, store_path)
    except FileExistsError:  # another run created it meanwhile
        pass
    except OSError:  # a folder that is missing or read-only: SQLite says so when it opens it
        pass


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class Summary:
    """What one run did: events handled, dead letters made, time taken.

    ``events`` counts the events the processor has a handler for (dead-lettered ones
    included: ``failures`` is part of it), not the others it reads on the way.
    """

    def __init__(self, name: str, kind: str):
        self.name = name
        self.kind = kind
        self.events = 0
        self.failures = 0
        self.checkpoint = 0
        self.started = time.monotonic()
        self.seconds = 0.0

    def to_dict(self) -> dict:
        seconds = round(self.seconds, 3)
        rate = round(self.events / self.seconds) if self.seconds > 0 else 0
        return {
            "name": self.name,
            "kind": self.kind,
            "events": self.events,
            "seconds": seconds,
            "rate": rate,
            "failures": self.failures,
            "checkpoint": self.checkpoint,
        }


class TransactionLost(HandlerFailed):
    "A statement rolled back the whole transaction (ON CONFLICT ROLLBACK, RAISE(ROLLBACK))"


class LogProtected(HandlerFailed):
    "Projection code tried to change the log or evt's own tables (the guard refused it); the run stops"


# What a handler raises that ends the run instead of counting as the event's failure.
STOPS = (TransactionLost, LogProtected, OutputClosed)


class _Moved(Exception):
    "Another run of the same processor advanced its checkpoint while this one waited for the lock"


class Runner:
    """Feeds a processor the log from its checkpoint, in batches, with retries.

    ``filter`` narrows what is read (stream, category); ``batch_size`` and
    ``batch_seconds`` bound each transaction; ``warn`` receives one line per failed
    attempt; ``progress`` is called with the position reached now and then.
    """

    def __init__(
        self,
        store: Store,
        target: Target,
        processor: Any,
        *,
        filter: Filter | None = None,
        batch_size: int = BATCH_SIZE,
        batch_seconds: float = BATCH_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        warn: Callable[[str], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ):
        self.store = store
        self.target = target
        self.conn = target.conn
        self.proc = processor
        self.policy = processor.policy
        # Types are matched in the query, as readers see them (after upcasting): events the
        # processor does not take are never fetched, so a consumer of a rare type scans the
        # log at SQLite's speed and saves its position once, not once per skipped event.
        # The processor's own types (a consumer's --type) if it has them, else the filter's.
        own = tuple(getattr(processor, "types", ()) or ())
        base = filter or Filter()
        types, exact = (own, ()) if own else (base.types, base.exact_types)
        self.filter = base.replace(types=types, exact_types=exact, limit=None, backwards=False)
        self.batch_size = max(1, batch_size)
        self.batch_seconds = batch_seconds
        self.sleep = sleep
        self.warn = warn or (lambda line: None)
        self.progress = progress
        # A processor that writes nothing into SQLite (a shell command) runs outside any
        # transaction, so appenders never wait for it; its position is saved after each event.
        self.per_event = not getattr(processor, "writes", True)
        # What projection code does to the target is checked as it is prepared (evt.processing.guard).
        # A processor whose code never gets the database (a reactor: evt appends what it returns) needs none.
        # A processor may bring a guard of its own (a shadow rebuild's: its tables under other names).
        self.guard = None if self.per_event or not getattr(processor, "guarded", True) else getattr(processor, "make_guard", Guard)()
        self._guarded = False
        self.model = store.model
        self.upcastable = store.model.upcastable if store.model is not None else frozenset()
        self.renamed = store.model.renamed_types() if self.upcastable else {}
        self.type_condition = renamed_type_condition(store.conn, self.renamed) if (types or exact) and self.renamed else None
        self.summary = Summary(processor.name, processor.kind)
        self.position = 0
        self._committed = 0  # the checkpoint as this run last saw it stored
        self.parked: dict[str, int] = {}
        self._open = False
        self._since_commit = 0
        self._deadline = 0.0

    # -- the run -------------------------------------------------------------------

    def start(self, rebuild: bool = False) -> int:
        "Set the processor up (on its first run, or after a rebuild); return its checkpoint."
        with self.target.transaction() as conn:
            if rebuild:
                self.proc.drop(conn)
                self.target.forget(self.proc.name)
            checkpoint = self.target.checkpoint(self.proc.name)
            if checkpoint is None:
                self._setup(conn)
                checkpoint = 0
            self.target.save_checkpoint(self.proc.name, self.proc.kind, checkpoint, getattr(self.proc, "command", None))
            if self.policy.parks_streams:
                self.parked = deadletters.parked_streams(conn, self.proc.name)
        self.position = self._committed = self.summary.checkpoint = checkpoint
        return checkpoint

    def catch_up(self) -> Summary:
        "Handle every event after the checkpoint, up to the head; commit as it goes."
        head = self.store.head()
        try:
            while True:
                try:
                    if not self.per_event and not self._open:
                        self._begin()
                    rows = self._fetch()
                    if not rows:
                        break
                    for row in rows:
                        handled = self._handle(row)
                        if handled:
                            self.summary.events += 1
                        self.position = row[0]
                        self._since_commit += 1
                        if self.per_event:
                            if handled or self._open:  # an event it skipped needs no commit of its own
                                self._commit()
                        elif self._since_commit >= self.batch_size or time.monotonic() >= self._deadline:
                            self._commit()
                            self._begin()
                    if self.per_event and self.position != self._committed:
                        self._commit()  # past the skipped events of this chunk, once
                except _Moved:
                    continue  # go on from where the other run left the checkpoint
            self.position = max(self.position, head)
            if self.position == self._committed:
                self._rollback()  # nothing new: write nothing, or two followers would wake each other forever
            else:
                self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._unprotect()
            self.summary.seconds = time.monotonic() - self.summary.started
        return self.summary

    def _fetch(self) -> list[tuple]:
        sql, params = self.filter.replace(after=self.position, limit=CHUNK).to_sql(COLUMNS, self.type_condition)
        with translate_errors(self.store.path):
            rows = self.store.conn.execute(sql, params).fetchall()
            decrypt = self.store.decryptor()  # personal fields, as every reader sees them
            return [decrypt.row(row) for row in rows]

    def _begin(self, check: bool = True) -> None:
        """Open a batch's transaction; _Moved (the transaction left open) when another run of
        the same processor has moved the checkpoint meanwhile: this one adopts it."""
        self.target.begin()
        self._open = True
        self._since_commit = 0
        self._deadline = time.monotonic() + self.batch_seconds
        if check:
            stored = self.target.checkpoint(self.proc.name)
            if stored is not None and stored != self._committed:
                self.position = self._committed = stored
                raise _Moved()

    def _commit(self) -> None:
        "Save the checkpoint and commit (opening a transaction first if none is open)."
        self._unprotect()
        if not self._open:
            self._begin(check=False)
        self.position = max(self.position, self.target.checkpoint(self.proc.name) or 0)
        self.target.save_checkpoint(self.proc.name, self.proc.kind, self.position)
        self.target.commit()
        self._open = False
        self._committed = self.summary.checkpoint = self.position
        if self.progress is not None:
            self.progress(self.position)

    def _rollback(self) -> None:
        self.target.rollback()
        self._open = False

    # -- one event -----------------------------------------------------------------

    def _handle(self, row: tuple) -> bool:
        "Handle one event (retrying, then dead-lettering it); False when the processor ignores it."
        try:
            resolved = self._resolve(row)
            if resolved is None:
                return False
            if row[1] in self.parked:
                self._park(row)
                return True
            self._apply(*resolved)
            return True
        except STOPS:
            raise
        except Exception as e:
            failure = self._failure(e)
        self._failed(row, failure)
        return True

    def _failure(self, error: Exception) -> tuple[str, str | None]:
        "(the error in one line, the full error or None when there is no more to it) of a handler's exception."
        line = join_lines(self.proc.describe(error), "; ")
        detail = self.proc.detail(error) if hasattr(self.proc, "detail") else None
        return line, (detail if detail and detail.strip() != line else None)

    def _resolve(self, row: tuple):
        "(apply, plan, item) for a row, after upcasting; None when the processor ignores it."
        if (row[4], row[5]) in self.upcastable:
            event = self.model.upcast(row_to_event(row))
            plan = self.proc.plan(event.type)
            return (self.proc.apply_event, plan, event) if plan else None
        plan = self.proc.plan(row[4])
        return (self.proc.apply_row, plan, row) if plan else None

    def _apply(self, apply, plan, item) -> None:
        conn = self.conn
        self._protect()
        if self.proc.atomic(plan):
            try:
                apply(conn, plan, item)
            except Exception as e:
                self._check_transaction()
                self._check_guard(item, e)
                raise
            self._check_guard(item)
            return
        conn.execute("SAVEPOINT evt_event")
        try:
            apply(conn, plan, item)
        except BaseException as e:
            self._check_transaction()
            conn.execute("ROLLBACK TO evt_event")
            conn.execute("RELEASE evt_event")
            self._check_guard(item, e)
            raise
        self._check_guard(item)
        if not conn.in_transaction:
            self._open = False
            raise TransactionLost(
                f"{self.proc.name}: the handler of position {_position(item)} "
                "ended evt's transaction (a commit?); handlers must not commit: evt commits each batch with its checkpoint"
            )
        conn.execute("RELEASE evt_event")

    # -- the log's guard -------------------------------------------------------------

    def _protect(self) -> None:
        "Projection code runs next: the guard on the target's connection (a no-op when it is on)."
        if self.guard is not None and not self._guarded:
            self.conn.set_authorizer(self.guard)  # expires prepared statements: each is authorized again
            self._guarded = True
        if self.guard is not None:
            self.guard.reset()

    def _unprotect(self) -> None:
        "evt's own bookkeeping (checkpoints, dead letters) runs next."
        if self._guarded:
            self.conn.set_authorizer(None)
            self._guarded = False

    def _setup(self, conn: sqlite3.Connection) -> None:
        "The processor's setup, under the guard."
        self._protect()
        try:
            self.proc.setup(conn)
        except Exception as e:
            self._check_guard(None, e)
            raise
        finally:
            self._unprotect()
        self._check_guard(None)

    def _check_guard(self, item, error: BaseException | None = None) -> None:
        "LogProtected if the code just run tried something the guard refused (even if it caught the error)."
        if self.guard is None or self.guard.attempt is None:
            return
        attempt, self.guard.attempt = self.guard.attempt, None
        who = "its setup" if item is None else f"the handler of position {_position(item)} ({_type(item)})"
        where = ""
        if error is not None:
            statement = getattr(error, "evt_statement", None)
            where = f" ({one_line_statement(statement)})" if statement else _first_user_location(error)
        raise LogProtected(f"{self.proc.name}: {who} tried to {attempt}{where}; {RULE}") from None

    def _check_transaction(self) -> None:
        if self._open and not self.conn.in_transaction:
            self._open = False
            raise TransactionLost(
                f"{self.proc.name}: a statement rolled back the whole transaction (ON CONFLICT ROLLBACK or "
                f"RAISE(ROLLBACK)); stopped at checkpoint {self.summary.checkpoint}, nothing after it was kept"
            )

    def _failed(self, row: tuple, failure: tuple[str, str | None]) -> None:
        "Retry with backoff; then dead-letter the event, or stop before it."
        first = now()
        attempts = 1
        error = failure[0]
        self._warn_attempt(row, attempts, error)
        if self._open and (self.policy.max_attempts > 1 or self.policy.on_error == "stop"):
            self._commit()  # keep what came before; release the lock while waiting
        while attempts < self.policy.max_attempts:
            attempts += 1
            self.sleep(self.policy.delay(attempts))
            if not self.per_event:
                self._begin()
            try:
                resolved = self._resolve(row)
                if resolved is not None:
                    self._apply(*resolved)
                return  # the batch goes on in this transaction
            except STOPS:
                raise
            except Exception as e:
                failure = self._failure(e)
                error = failure[0]
            self._rollback()
            self._warn_attempt(row, attempts, error)
        if self.policy.on_error == "stop":
            raise HandlerFailed(
                f"{self.proc.name} stopped at position {row[0]} ({row[4]}) after {attempts} "
                f"attempt{'s' if attempts > 1 else ''}: {error}"
            )
        if not self._open:
            self._begin()
        entry = self._record(row, error, attempts, first, failure[1])
        if self.policy.parks_streams:
            self.parked.setdefault(row[1], entry)

    def _park(self, row: tuple) -> None:
        blocker = self.parked[row[1]]
        self._record(row, f"parked behind dead letter {blocker} (stream {row[1]})", 0, now())

    def _record(self, row: tuple, error: str, attempts: int, first: str, detail: str | None = None) -> int:
        self._unprotect()
        id = deadletters.next_id(self.store)
        deadletters.record(self.conn, id, self.proc.name, _Seen(row, self._type_seen(row)), error, attempts, first, now(), detail)
        self.summary.failures += 1
        return id

    def _type_seen(self, row: tuple) -> str:
        return self.renamed.get((row[4], row[5]), row[4])

    def _warn_attempt(self, row: tuple, attempt: int, error: str) -> None:
        self.warn(
            f"{self.proc.name}: position {row[0]} ({self._type_seen(row)}) failed, "
            f"attempt {attempt} of {self.policy.max_attempts}: {error}"
        )

    # -- dead letters, again ---------------------------------------------------------

    def retry(self, entry: deadletters.DeadLetter) -> str | None:
        "Run the handler as it is now on a dead letter's event: None and the entry gone, or the error."
        if self.per_event:
            return self._retry_outside(entry)
        with self.target.transaction() as conn:
            self._open = True
            held = self._held_back(conn, entry)
            if held is not None:
                failure = (held, None)
            else:
                try:
                    failure = self._retry_event(entry)
                finally:
                    self._unprotect()
            self._settle(conn, entry, failure, tried=held is None)
        self._open = False
        return None if failure is None else failure[0]

    def _retry_outside(self, entry: deadletters.DeadLetter) -> str | None:
        "A retry for a processor that writes nothing: run it first, then settle the entry."
        held = self._held_back(self.conn, entry)
        failure = (held, None) if held is not None else self._retry_event(entry)
        with self.target.transaction() as conn:
            self._settle(conn, entry, failure, tried=held is None)
        return None if failure is None else failure[0]

    def _held_back(self, conn, entry: deadletters.DeadLetter) -> str | None:
        """Why an entry must wait for an earlier dead letter of its stream, or None.

        Only a stream's order kept by ``park-stream`` holds an entry back: an entry parked
        behind another (never tried: 0 attempts), or any entry of a processor whose policy
        parks streams. Under ``dlq`` a failed event is retried on its own, whatever else of
        its stream failed before it.
        """
        if entry.attempts > 0 and not self.policy.parks_streams:
            return None
        blocker = deadletters.blocker(conn, entry)
        if blocker is None:
            return None
        return f"parked behind dead letter {blocker} (stream {entry.stream}); retry that one first"

    @staticmethod
    def _settle(conn, entry: deadletters.DeadLetter, failure: tuple[str, str | None] | None, tried: bool) -> None:
        "Clear a retried entry, or record how it failed (an entry held back was not tried: no attempt counted)."
        if failure is None:
            deadletters.delete(conn, [entry.id])
        elif tried:
            deadletters.failed_again(conn, entry.id, failure[0], now(), failure[1])
        else:
            deadletters.held_back(conn, entry.id, failure[0])

    def _retry_event(self, entry: deadletters.DeadLetter) -> tuple[str, str | None] | None:
        "Run the handler on a dead letter's event: None on success, else the failure (error, detail)."
        row = self.store.conn.execute(f"SELECT {COLUMNS} FROM events WHERE position = ?", (entry.position,)).fetchone()
        if row is None:
            return f"the event at position {entry.position} is not in the store", None
        row = self.store.decryptor().row(row)
        savepoint = self.conn.in_transaction
        if savepoint:
            self.conn.execute("SAVEPOINT evt_retry")
        try:
            resolved = self._resolve(row)
            if resolved is not None:
                self._apply(*resolved)
        except STOPS:
            raise
        except Exception as e:
            if savepoint:
                self.conn.execute("ROLLBACK TO evt_retry")
                self.conn.execute("RELEASE evt_retry")
            return self._failure(e)
        if savepoint:
            self.conn.execute("RELEASE evt_retry")
        return None


def _position(item) -> int:
    "The position of what a handler got: a stored row or an Event."
    return item[0] if isinstance(item, tuple) else item.position


def _type(item) -> str:
    return item[4] if isinstance(item, tuple) else item.type


def _first_user_location(error: BaseException | None) -> str:
    "Where in the user's code an error, or the one it was raised from, came from."
    seen = 0
    while error is not None and seen < 10:
        where = user_location(error)
        if where:
            return where
        error, seen = error.__cause__ or error.__context__, seen + 1
    return ""


def user_location(error: BaseException) -> str:
    "' (file.py, line N)': where in the user's code an error was raised (empty if nowhere)."
    import traceback

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # evt/
    frames = [
        f for f in traceback.extract_tb(error.__traceback__)
        if not f.filename.startswith(here) and "site-packages" not in f.filename and "/lib/python" not in f.filename
    ]
    if not frames:
        return ""
    return f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"


class _Seen:
    "The fields of a stored row a dead letter keeps."

    __slots__ = ("position", "id", "stream", "type")

    def __init__(self, row: tuple, type: str):
        self.position, self.stream, self.id, self.type = row[0], row[1], row[3], type


def follow(runners: list[Runner], store: Store, poll_interval: float = 0.05) -> None:
    "Keep runners caught up as other processes append, until interrupted (their summaries' time then counts the whole run)."
    try:
        while True:
            version = store.conn.execute("PRAGMA data_version").fetchone()[0]
            for runner in runners:
                runner.catch_up()
            while store.conn.execute("PRAGMA data_version").fetchone()[0] == version:
                time.sleep(poll_interval)
    finally:
        for runner in runners:
            runner.summary.seconds = time.monotonic() - runner.summary.started


def describe_exception(error: BaseException, where: str = "") -> str:
    "An exception as one line: its class, its message and, for user code, where it came from."
    if isinstance(error, EvtError):
        return str(error)
    return f"{type(error).__name__}: {error}{where}"


def user_traceback(error: BaseException) -> str:
    "The traceback of an exception from user code, without evt's own frames above the user's."
    import traceback

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # evt/
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(here + os.sep):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb or error.__traceback__)).rstrip("\n")
