"""Reactors (process managers): handlers that append new events, exactly once.

A reactor declared in the model (``evt.model.reactors.DeclaredReactor``) is run by a
``Runner`` like a projection, on the events store itself: each batch's transaction
holds the events its handlers return, its checkpoint and its dead letters, so killed at
any moment and run again it appends each reaction once — never none, never twice.

Each event a handler returns is appended with ``causationId`` the handled event's id and
its ``correlationId`` carried over (unless the handler set them), and an id of its own
derived from the reactor, the handled event and its place among the returned events
(unless the handler gave one). So appending a reaction again — after ``evt projections
reset`` moved the reactor back — stores nothing new: the store's idempotent append
returns the event already there (and a handler that now returns something else for the
same event is a conflict, a handler failure). Events that fail the model's schema or
their expected revision are a handler failure too: retried, then dead-lettered or
stopped on, per the reactor's ``on_error``.
"""

from __future__ import annotations

import uuid
from fnmatch import fnmatchcase
from typing import Any, Iterable

from ..errors import EvtError, InvalidInput
from ..log.envelope import NewEvent
from ..log.store import row_to_event
from ..model.reactors import DeclaredReactor
from .runner import describe_exception, user_location, user_traceback

# Reaction ids: uuid5 in this namespace of "<reactor>\0<handled event id>\0<index>".
NAMESPACE = uuid.UUID("6f1d2c1e-5b0a-4a57-9f43-2d3c8e7a9b10")


class ReactionInvalid(InvalidInput):
    "A reactor's handler returned something that is not events"


class Reactor:
    "A declared reactor, run: its handlers' events appended with its checkpoint, on the events store."

    kind = "reactor"
    target = None  # always the events store: its appends and its checkpoint commit together there
    guarded = False  # handlers get an event, not the database: evt itself does the appending

    def __init__(self, declared: DeclaredReactor, store=None):
        self.declared = declared
        self.name = declared.name
        self.policy = declared.policy
        self.handlers = declared.handlers
        self.store = store
        self._plans: dict[str, list] = {}

    def bound(self, store) -> "Reactor":
        "The same reactor, appending to ``store``."
        return Reactor(self.declared, store)

    def plan(self, type: str) -> list:
        plan = self._plans.get(type)
        if plan is None:
            plan = self._plans[type] = [fn for glob, fn in self.handlers if fnmatchcase(type, glob)]
        return plan

    def atomic(self, plan: list) -> bool:
        return False  # the appends of one event are undone together, in a savepoint

    def setup(self, conn) -> None:
        pass

    def drop(self, conn) -> None:
        pass

    def owned_tables(self) -> list[str]:
        return []

    def apply_row(self, conn, plan: list, row: tuple) -> None:
        self.apply_event(conn, plan, row_to_event(row))

    def apply_event(self, conn, plan: list, event) -> None:
        "Run the handlers on the event; append what they return, in the batch's transaction."
        reactions = [new for fn in plan for new in self._returned(fn, fn(event))]
        if reactions:
            self.store.write_in_transaction([self._caused(new, event, index) for index, new in enumerate(reactions)])

    def _returned(self, fn, value: Any) -> Iterable[NewEvent]:
        "What a handler returned, as new events; ReactionInvalid for anything else."
        if value is None:
            return []
        if isinstance(value, (NewEvent, dict)):
            value = [value]
        elif isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise self._invalid(fn, value)
        events = []
        for item in value:
            if isinstance(item, dict):
                item = NewEvent.from_envelope(item)
            elif not isinstance(item, NewEvent):
                raise self._invalid(fn, item)
            events.append(item)
        return events

    def _invalid(self, fn, value: Any) -> ReactionInvalid:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        return ReactionInvalid(
            f"reactor {self.name}: {getattr(fn, '__name__', 'a handler')} returned {shown}: "
            "return NewEvent objects (or envelope dicts), a list of them, or None"
        )

    def _caused(self, new: NewEvent, cause, index: int) -> NewEvent:
        "A copy of a returned event, caused by the handled one (what the handler left unset, evt sets)."
        caused = NewEvent(
            new.stream,
            new.type,
            new.data,
            id=new.id if new.id is not None else reaction_id(self.name, cause.id, index),
            version=new.version,
            source=new.source,
            correlation_id=new.correlation_id if new.correlation_id is not None else cause.correlation_id,
            causation_id=new.causation_id if new.causation_id is not None else cause.id,
            metadata=new.metadata,
            timestamp=new.timestamp,
            expected=new.expected,
        )
        return caused

    def describe(self, error: BaseException) -> str:
        return describe_exception(error, user_location(error))

    def detail(self, error: BaseException) -> str | None:
        "The handler's traceback; None for what evt refused of its events (the message says it all)."
        return None if isinstance(error, EvtError) else user_traceback(error)


def reaction_id(reactor: str, cause: str, index: int) -> str:
    "The id of the ``index``-th event a reactor returned for the event ``cause``: the same every time."
    return str(uuid.uuid5(NAMESPACE, f"{reactor}\0{cause}\0{index}"))


def declared(model) -> dict[str, Reactor]:
    "The model's reactors, ready to run (bind each to a store with ``bound``)."
    return {name: Reactor(reactor) for name, reactor in (getattr(model, "reactors", None) or {}).items()}
