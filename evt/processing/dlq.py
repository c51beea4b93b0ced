"""The dead letters of every projection and consumer, wherever they are kept.

Shell consumers and projections into the events store keep their dead letters in the
store; a projection with its own ``target`` file keeps them there (committed with its
tables). ``DeadLetterQueue`` looks in all of those files.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from ..config import Config
from ..log import files
from ..log.filters import text_argument
from ..log.sqlite import connect
from ..log.store import Store
from ..log.timestamps import now
from . import deadletters
from .consumers import ExecConsumer, command_of
from .deadletters import DeadLetter
from .runner import Runner, Target, same_file


class DeadLetterQueue:
    "Dead letters across the events store and the configured projections' target files."

    def __init__(self, store: Store, projections: dict, config: Config | None = None):
        self.store = store
        self.projections = projections
        self.config = config or Config()

    def files(self) -> list[tuple[str, sqlite3.Connection]]:
        "The events store and each other existing target file, once each."
        found = [(self.store.path, self.store.conn)]
        for projection in self.projections.values():
            path = projection.target
            if path is None or not os.path.exists(path) or any(same_file(path, p) for p, _ in found):
                continue
            found.append((path, connect(path, timeout=self.config.busy_timeout(), isolation_level=None)))
        return found

    def entries(self, consumer: str | None = None) -> list[DeadLetter]:
        "Every dead letter (of one consumer), oldest event first."
        text_argument("consumer", consumer)
        found = [e for path, conn in self.files() for e in deadletters.entries(conn, path, consumer)]
        return list(deadletters.by_position(found))

    def get(self, ids: list[int]) -> list[DeadLetter]:
        "The dead letters with these ids; DeadLetterNotFound for an unknown one."
        return deadletters.select(self.entries(), ids)

    def show(self, id: int) -> dict:
        """One dead letter in full: the fields ``entries`` lists, then ``errorDetail`` (the whole
        error: a Python handler's traceback, a command's stderr, the failing SQL statement;
        the same as ``error`` when there is no more to it), then the event as ``evt read``
        prints it (upcast like reads are; null if it is no longer in the store) — or, for a
        message ``evt ingest`` could not store, that message as ``payload``."""
        (entry,) = self.get([id])
        shown = entry.to_dict()
        shown["errorDetail"] = entry.detail if entry.detail is not None else entry.error
        if entry.position is None:
            shown["payload"] = entry.payload
        else:
            found = list(self.store.events_at([entry.position]))
            shown["event"] = found[0].to_dict() if found else None
        return shown

    def chosen(self, ids: list[int], all: bool, consumer: str | None) -> list[DeadLetter]:
        "What ``retry``/``discard`` work on: the ids given, or all (of a consumer)."
        if all:
            return self.entries(consumer)
        entries = self.get(ids)
        return [e for e in entries if consumer is None or e.consumer == consumer]

    def retry(self, entries: list[DeadLetter]) -> list[tuple[DeadLetter, str | None]]:
        "Run each entry's handler as it is now, oldest first: (entry, None) on success, else the error."
        results = []
        runners: dict[str, Runner | None] = {}
        try:
            for entry in deadletters.by_position(entries):
                if entry.position is None:
                    results.append((entry, self._retry_message(entry)))
                    continue
                if entry.consumer not in runners:
                    runners[entry.consumer] = self._runner(entry.consumer)
                runner = runners[entry.consumer]
                if runner is None:
                    error = f"{entry.consumer} is neither a configured projection nor a known consumer"
                    self._note_failure(entry, error)
                else:
                    error = runner.retry(entry)
                results.append((entry, error))
        finally:
            for runner in runners.values():
                if runner is not None:
                    runner.target.close()
        return results

    def _retry_message(self, entry: DeadLetter) -> str | None:
        """Store a message ingest could not (fixed by now: a model, a conflicting event).

        Appended idempotently by its event id, and the entry cleared, in one transaction.
        """
        from ..errors import EvtError
        from ..log.cloudevents import new_event
        from ..log.ndjson import parse_line

        store = self.store
        try:
            with store.transaction():
                event = new_event(parse_line(entry.payload.encode()))  # an envelope or a CloudEvent
                store.write_in_transaction([event], validate=False)  # as evt ingest stores them
                deadletters.delete(store.conn, [entry.id])
        except EvtError as e:
            self._note_failure(entry, str(e))
            return str(e)
        return None

    def _runner(self, name: str) -> Runner | None:
        from .projections import runner

        if name in self.projections:
            return runner(self.store, self.projections[name], self.config)
        command = command_of(self.store, name)
        if command is None:
            return None
        return Runner(self.store, Target(self.store), ExecConsumer(name, command))

    def _note_failure(self, entry: DeadLetter, error: str) -> None:
        with self._writing(entry.path) as conn:
            deadletters.failed_again(conn, entry.id, error, now())

    @contextmanager
    def _writing(self, path: str) -> Iterator[sqlite3.Connection]:
        "A write transaction on one of the files dead letters are kept in, queued like any writer's."
        target = Target(self.store, path, busy_timeout=self.config.busy_timeout(), synchronous=self.config.synchronous())
        try:
            with target.transaction() as conn:
                yield conn
        finally:
            target.close()

    def ensure_writable(self, entries: list[DeadLetter]) -> None:
        "``StoreReadOnly`` (exit 6) if a file these dead letters are kept in cannot be written."
        for path in dict.fromkeys(entry.path for entry in entries):
            files.ensure_writable(path)

    def discard(self, entries: list[DeadLetter]) -> int:
        "Delete these dead letters (their events stay unhandled by that consumer)."
        by_file: dict[str, list[int]] = {}
        for entry in entries:
            by_file.setdefault(entry.path, []).append(entry.id)
        for path, _ in self.files():
            ids = by_file.get(path)
            if ids:
                with self._writing(path) as conn:
                    deadletters.delete(conn, ids)
        return len(entries)
