"""evt: an event store in one SQLite file.

The public Python API; the ``evt`` command is a thin layer over it::

    from evt import Store, NewEvent, Filter

    with Store("events.db") as store:
        store.append(NewEvent("order-1", "order.placed", {"total": 5}))
        for event in store.read(Filter(stream="order-1")):
            print(event.revision, event.type, event.data)
"""

from .envelope import Event, NewEvent
from .errors import (
    Conflict,
    DuplicateEventId,
    EvtError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    StreamNotFound,
    UpcastFailed,
    WrongExpectedRevision,
)
from .model import Model, load_model
from .query import Filter
from .store import Store

__all__ = [
    "Conflict",
    "DuplicateEventId",
    "Event",
    "EvtError",
    "Filter",
    "InvalidInput",
    "Model",
    "NewEvent",
    "NotFound",
    "Store",
    "StoreUnavailable",
    "StreamNotFound",
    "UpcastFailed",
    "WrongExpectedRevision",
    "load_model",
    "on",
]


def __getattr__(name: str):
    # `on` is imported on first use: `evt append`, which imports this package, needs no aggregates.
    if name == "on":
        from .aggregates import on

        return on
    raise AttributeError(f"module 'evt' has no attribute {name!r}")

