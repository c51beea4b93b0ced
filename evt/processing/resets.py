"""Moving a checkpoint by hand: previewed first, done only when asked.

``evt projections reset NAME --to POSITION|TIME|start|end`` works for everything that
keeps a position: projections (in their target file), reactors, shell consumers and
relays (in the events store). ``plan`` says where the checkpoint is, where it would go,
and how many events would be handled again (backwards) or skipped (forwards); ``execute``
moves it — the one sanctioned way a checkpoint moves back (``evt.log.checkpoints``) —
and, going back, clears the dead letters of the events it will handle again, since they
are then handled (or dead-lettered) anew.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from ..config import Config
from ..errors import UsageError
from ..log import checkpoints
from ..log.sqlite import translate_errors
from ..log.timestamps import parse_time_bound
from .projections import ProjectionNotFound, open_target
from .runner import same_file

PROJECTION_KINDS = ("sql", "python")
STORE_KINDS = ("exec", "relay", "reactor")


@dataclass
class Reset:
    "A checkpoint reset, previewed or done."

    name: str
    kind: str
    checkpoint: int  # where it is
    to: int  # where it goes
    head: int
    handled: int | None = None  # of the events handled again or skipped, those its handlers take (when known)
    dead_letters: int = 0  # dead letters of events it will handle again: cleared
    executed: bool = False

    @property
    def again(self) -> int:
        "Events that will be handled again (a reset backwards)."
        return max(self.checkpoint - self.to, 0)

    @property
    def skipped(self) -> int:
        "Events that will never be handled (a reset forwards)."
        return max(self.to - self.checkpoint, 0)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "to": self.to,
            "head": self.head,
            "again": self.again,
            "skipped": self.skipped,
            "handled": self.handled,
            "deadLetters": self.dead_letters,
            "executed": self.executed,
        }

    def warning(self) -> str | None:
        "What a user should know before (or after) this reset, if anything."
        if self.skipped:
            return f"{self.name} will skip events {self.checkpoint + 1}..{self.to}: they will never be handled by it"
        if not self.again:
            return None
        span = f"events {self.to + 1}..{self.checkpoint}"
        if self.kind in PROJECTION_KINDS:
            return (
                f"{self.name}'s tables already hold what {span} did: replaying them without a rebuild may apply them twice "
                f"(evt replay {self.name} --rebuild starts over; with --shadow, without downtime)"
            )
        if self.kind == "reactor":
            return (
                f"reactor {self.name} will react to {span} again: what it appended then keeps its id and is not appended twice "
                "(a handler that now returns something else for an event fails, as a conflict)"
            )
        if self.kind == "exec":
            return f"consumer {self.name} will run its command again for {span} (at-least-once: the command should use the event id)"
        if self.kind == "relay":
            return (
                f"relay {self.name} will publish {span} again: Redis refuses what it already has (counted as alreadyPublished); "
                "RabbitMQ gets them again, with the same message_id"
            )
        return f"{self.name} will handle {span} again"


class Resetter:
    "Finds what keeps a checkpoint under a name, and moves it."

    def __init__(self, store, projections: dict, config: Config | None = None):
        self.store = store
        self.projections = projections
        self.config = config or Config()

    def plan(self, name: str, to: str) -> Reset:
        "Where the checkpoint of ``name`` is and where ``to`` would move it (nothing changes)."
        kind, path = self._locate(name)
        head = self.store.head()
        position = self.position_of(to, head)
        current = self._current(name, path)
        reset = Reset(name, kind, current, position, head)
        self._count(reset, path)
        return reset

    def execute(self, name: str, to: str) -> Reset:
        "Move the checkpoint of ``name``; its dead letters of events to be handled again are cleared, in one transaction."
        kind, path = self._locate(name)
        target = open_target(self.store, self.projections[name], self.config) if path is not None else None
        try:
            conn = target.conn if target is not None else self.store.conn
            transaction = target.transaction() if target is not None else self.store.transaction()
            with translate_errors(path or self.store.path), transaction:
                head = self.store.head()
                reset = Reset(name, kind, checkpoints.load(conn, name) or 0, self.position_of(to, head), head)
                self._count(reset, path, conn)
                checkpoints.reset(conn, name, kind, reset.to)
                if reset.again:
                    conn.execute("DELETE FROM evt_dead_letters WHERE consumer = ? AND position > ?", (name, reset.to))
        finally:
            if target is not None:
                target.close()
        reset.executed = True
        return reset

    # -- where and how far ---------------------------------------------------------

    def _locate(self, name: str) -> tuple[str, str | None]:
        """(kind, the file its checkpoint is in: None for the events store).

        A configured projection or reactor, else a consumer, relay or process manager
        that saved a checkpoint in the store; ProjectionNotFound otherwise, UsageError
        for a projection that never ran (it has no tables to go with a checkpoint)."""
        projection = self.projections.get(name)
        if projection is not None:
            if projection.kind not in PROJECTION_KINDS:
                return projection.kind, None
            path = projection.target
            if path is not None and same_file(path, self.store.path):
                path = None
            if self._current(name, path, missing=None) is None:
                raise UsageError(f"projection {name} has never run, so there is nothing to reset (evt replay {name} sets it up)")
            return projection.kind, path
        with translate_errors(self.store.path):
            row = self.store.conn.execute("SELECT kind FROM evt_checkpoints WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] in STORE_KINDS:
            return row[0], None
        known = sorted({*self.projections, *(n for (n,) in self.store.conn.execute(
            "SELECT name FROM evt_checkpoints WHERE kind IN ('exec', 'relay', 'reactor')"))})
        raise ProjectionNotFound(
            f"no projection, reactor, consumer or relay named {name!r} ({'known: ' + ', '.join(known) if known else 'none has run yet'})"
        )

    def _current(self, name: str, path: str | None, missing: int | None = 0) -> int | None:
        "The checkpoint as stored (``missing`` when there is none), read without creating anything."
        if path is None:
            with translate_errors(self.store.path):
                found = checkpoints.load(self.store.conn, name)
            return missing if found is None else found
        if not os.path.exists(path):
            return missing
        with translate_errors(path):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                has = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'evt_checkpoints'").fetchone()
                found = checkpoints.load(conn, name) if has else None
            finally:
                conn.close()
        return missing if found is None else found

    def position_of(self, to: str, head: int) -> int:
        """``--to`` as a checkpoint: a position (0..head), ``start`` (0), ``end`` (the head), or a
        time: just before the first event stamped at or after it (the head if none is)."""
        text = to.strip()
        if text == "start":
            return 0
        if text == "end":
            return head
        if text.isascii() and text.isdigit():
            position = int(text)
            if position > head:
                raise UsageError(f"--to {position} is past the end of the log (its last position is {head}); --to end goes there")
            return position
        moment = parse_time_bound(text, "--to")
        with translate_errors(self.store.path):
            first = self.store.conn.execute(
                "SELECT min(position) FROM events INDEXED BY events_timestamp WHERE timestamp >= ?", (moment,)
            ).fetchone()[0]
        return head if first is None else first - 1

    def _count(self, reset: Reset, path: str | None, conn: sqlite3.Connection | None = None) -> None:
        "How many of the events in between the handlers take, and the dead letters a reset backwards clears."
        low, high = sorted((reset.checkpoint, reset.to))
        projection = self.projections.get(reset.name)
        if projection is not None and high > low:
            reset.handled = self._handled(projection, low, high)
        if reset.again:
            reset.dead_letters = self._dead_letters(reset.name, reset.to, path, conn)

    def _handled(self, projection, low: int, high: int) -> int:
        "Events in (low, high] of a type the projection or reactor handles (as readers see the type)."
        model = self.store.model
        renamed = model.renamed_types() if model is not None and model.upcastable else {}
        with translate_errors(self.store.path):
            rows = self.store.conn.execute(
                "SELECT type, version, count(*) FROM events WHERE position > ? AND position <= ? GROUP BY type, version",
                (low, high),
            ).fetchall()
        return sum(n for type_, version, n in rows if projection.plan(renamed.get((type_, version), type_)))

    def _dead_letters(self, name: str, after: int, path: str | None, conn: sqlite3.Connection | None) -> int:
        sql = "SELECT count(*) FROM evt_dead_letters WHERE consumer = ? AND position > ?"
        if conn is not None:
            return conn.execute(sql, (name, after)).fetchone()[0]
        if path is None:
            with translate_errors(self.store.path):
                return self.store.conn.execute(sql, (name, after)).fetchone()[0]
        with translate_errors(path):
            opened = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return opened.execute(sql, (name, after)).fetchone()[0]
            finally:
                opened.close()
