"""Projections declared in the user's model: plain declarations, run by processing.

::

    revenue = model.projection("revenue", tables=["customer_revenue"], target="read.db")

    @revenue.setup
    def tables(db):                  # db: a sqlite_utils.Database
        db["customer_revenue"].create({"customer_id": str, "total": float}, pk="customer_id")

    @revenue.on("order.placed")
    def placed(db, event):           # event: an evt.Event
        db["customer_revenue"].upsert({...}, pk="customer_id")

A declaration holds what the user wrote: its name, handlers by event type (or glob),
setup function, tables, target file and failure policy. ``evt.processing.projections``
turns it into something a runner can feed the log.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Iterable

from ..errors import ConfigError
from .retry import RetryPolicy


class DeclaredProjection:
    """A projection written in Python: ``model.projection(name, tables=[...], target=None,
    max_attempts=3, backoff=0.1, on_error="dlq")``.

    ``@projection.on("order.placed", "order.*")`` registers a handler ``fn(db, event)``;
    ``@projection.setup`` registers ``fn(db)``, run once before the first event;
    ``@projection`` alone handles every event. ``tables`` are what ``evt replay
    --rebuild`` drops. Handlers must not commit: evt commits each batch with the
    projection's checkpoint.
    """

    def __init__(
        self,
        name: str,
        *,
        tables: Iterable[str] = (),
        target: str | None = None,
        max_attempts: int = 3,
        backoff: float = 0.1,
        on_error: str = "dlq",
    ):
        self.name = name
        self.tables = list(tables)
        self.target = target
        self.policy = RetryPolicy(max_attempts, backoff, on_error)
        self.handlers: list[tuple[str, Callable]] = []
        self.setup_fn: Callable | None = None

    def on(self, *types: str) -> Callable:
        "Register a handler ``fn(db, event)`` for event types or globs."
        if not types:
            raise ConfigError(f"projection {self.name}: on() needs at least one event type or glob")

        def register(fn: Callable) -> Callable:
            for glob in types:
                self.handlers.append((glob, fn))
            return fn

        return register

    def __call__(self, fn: Callable) -> Callable:
        """As a decorator: ``fn(db, event)`` handles every event (``@model.projection("audit")``)."""
        return self.on("*")(fn)

    def setup(self, fn: Callable) -> Callable:
        "Register ``fn(db)``, run once before the first event (and after a rebuild) to create tables."
        self.setup_fn = fn
        return fn

    def plan(self, type: str) -> list[Callable]:
        "The handlers of an event type, in declaration order."
        return [fn for glob, fn in self.handlers if fnmatchcase(type, glob)]
