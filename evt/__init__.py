"""evt: an event store in one SQLite file.

The public Python API; the ``evt`` command is a thin layer over it::

    from evt import Store, NewEvent, Filter

    with Store("events.db") as store:
        store.append(NewEvent("order-1", "order.placed", {"total": 5}))
        for event in store.read(Filter(stream="order-1")):
            print(event.revision, event.type, event.data)
"""

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
from .log.envelope import Event, NewEvent
from .log.filters import Filter
from .log.store import Store
from .model import Model, load_model, on
from .moved import install as _install_moved_modules

_install_moved_modules()

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

