"""Tracing a request: the causal tree of events linked by causation and correlation ids.

One request fans out through handlers into several streams; each event a handler
appends names the event that caused it (``causationId``) and carries the request's
``correlationId``. ``trace`` rebuilds that tree from any event of it:

- an event's *parent* is the event its ``causationId`` names, when that is stored;
- an event with no stored cause (no ``causationId``, or the id of a command that is not
  an event) hangs under the first event of its correlation (by position), when it has a
  ``correlationId`` and is not that first event itself;
- anything else is a root. From the event asked for, parents are followed up to the root,
  and the tree is walked down from there: children in position order, depth first.

Every step is one indexed lookup — an id (unique), a causation id, a correlation id —
so a trace costs what its tree holds, never a scan of the log. A log with a causation
cycle (ids given by hand) is walked once: an event is never visited twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Iterator

from ..errors import NotFound
from .envelope import Event
from .sqlite import translate_errors

if TYPE_CHECKING:
    from .store import Store

CAUSATION = "causation"
CORRELATION = "correlation"


class EventNotFound(NotFound):
    "No event has that id, or none that correlation id"


class Step:
    "One event of a trace: its depth, its parent (None for the root) and how it is linked to it."

    __slots__ = ("event", "depth", "parent", "link")

    def __init__(self, event: Event, depth: int, parent: Event | None, link: str | None):
        self.event = event
        self.depth = depth
        self.parent = parent
        self.link = link

    @property
    def delay(self) -> float | None:
        "Seconds from the parent's timestamp to this event's (None for the root)."
        if self.parent is None:
            return None
        return round((_moment(self.event.timestamp) - _moment(self.parent.timestamp)).total_seconds(), 6)

    def to_dict(self) -> dict:
        "The envelope, then ``depth``, ``parent`` (its id), ``link`` and ``delaySeconds``."
        shown = self.event.to_dict()
        shown["depth"] = self.depth
        shown["parent"] = self.parent.id if self.parent is not None else None
        shown["link"] = self.link
        shown["delaySeconds"] = self.delay
        return shown


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


class Tracer:
    "Lookups over one store's events, upcast as readers see them unless ``raw``."

    def __init__(self, store: "Store", raw: bool = False):
        from .store import COLUMNS

        self.store = store
        self.columns = COLUMNS
        self.upcaster = store._upcaster(raw)
        self._first: dict[str, Event | None] = {}

    def _events(self, sql: str, params: tuple) -> list[Event]:
        from .store import row_to_event

        with translate_errors(self.store.path):
            rows = self.store.conn.execute(f"SELECT {self.columns} FROM events AS e {sql}", params).fetchall()
        decrypt = self.store.decryptor()
        events = [row_to_event(decrypt.row(row)) for row in rows]
        if self.upcaster is not None:
            events = [self.upcaster.upcast(e) if (e.type, e.version) in self.upcaster.upcastable else e for e in events]
        return events

    def by_id(self, id: str) -> Event | None:
        found = self._events("WHERE id = ?", (id,))
        return found[0] if found else None

    def first_of(self, correlation_id: str) -> Event | None:
        "The first event (by position) of a correlation."
        if correlation_id not in self._first:
            found = self._events("WHERE correlation_id = ? ORDER BY position LIMIT 1", (correlation_id,))
            self._first[correlation_id] = found[0] if found else None
        return self._first[correlation_id]

    def parent(self, event: Event) -> tuple[Event | None, str | None]:
        "The event's parent and the link to it: its stored cause, else the first event of its correlation."
        if event.causation_id is not None:
            cause = self.by_id(event.causation_id)
            if cause is not None:
                return cause, CAUSATION
        if event.correlation_id is not None:
            first = self.first_of(event.correlation_id)
            if first is not None and first.position < event.position:
                return first, CORRELATION
        return None, None

    def children(self, event: Event) -> list[tuple[Event, str]]:
        "What the event caused, and (for the first event of a correlation) the correlation's events with no stored cause; by position."
        found = [(e, CAUSATION) for e in self._events("WHERE causation_id = ? ORDER BY position", (event.id,))]
        first = self.first_of(event.correlation_id) if event.correlation_id is not None else None
        if first is not None and first.id == event.id:
            uncaused = self._events(
                "WHERE correlation_id = ? AND position > ? AND (causation_id IS NULL OR NOT EXISTS "
                "(SELECT 1 FROM events AS c WHERE c.id = e.causation_id)) ORDER BY position",
                (event.correlation_id, event.position),
            )
            found += [(e, CORRELATION) for e in uncaused]
            found.sort(key=lambda pair: pair[0].position)
        return found

    def root(self, event: Event) -> Event:
        "Follow parents up from an event to the root of its tree."
        seen = {event.id}
        while True:
            parent, _ = self.parent(event)
            if parent is None or parent.id in seen:
                return event
            seen.add(parent.id)
            event = parent

    def walk(self, root: Event) -> Iterator[Step]:
        "The tree under a root, depth first, each event's children in position order."
        seen = {root.id}
        yield Step(root, 0, None, None)
        stack = [(root, 1, iter(self.children(root)))]
        while stack:
            parent, depth, pending = stack[-1]
            for child, link in pending:
                if child.id in seen:
                    continue
                seen.add(child.id)
                yield Step(child, depth, parent, link)
                stack.append((child, depth + 1, iter(self.children(child))))
                break
            else:
                stack.pop()


def trace(store: "Store", id: str | None = None, *, correlation_id: str | None = None, raw: bool = False) -> Iterator[Step]:
    """The causal tree around an event (by its ``id``) or a request (by ``correlation_id``),
    from its root, depth first. EventNotFound (exit 4) when nothing has that id."""
    if (id is None) == (correlation_id is None):
        raise ValueError("trace takes an event id or a correlation id")
    tracer = Tracer(store, raw)
    if id is not None:
        start = tracer.by_id(id)
        if start is None:
            raise EventNotFound(f"no event with id {id!r}")
    else:
        start = tracer.first_of(correlation_id)
        if start is None:
            raise EventNotFound(f"no event with correlation id {correlation_id!r}")
    return tracer.walk(tracer.root(start))


def nested(steps: Iterator[Step]) -> dict | None:
    "A trace as one nested object: each step's fields with its ``children`` (the root's; None if empty)."
    root = None
    path: list[dict] = []
    for step in steps:
        node = step.to_dict()
        node["children"] = []
        del path[step.depth:]
        if path:
            path[-1]["children"].append(node)
        else:
            root = node
        path.append(node)
    return root
