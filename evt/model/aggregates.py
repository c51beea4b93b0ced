"""Aggregates: how a stream folds into state, and reading that state back.

An aggregate is declared in the user's model, in one of two styles::

    @model.aggregate("account")
    class Account(pydantic.BaseModel):      # or a dataclass; every field has a default
        balance: float = 0

        @on("account.credited")
        def credited(self, event):
            self.balance += event.data["amount"]

    @model.aggregate("counter", initial={"events": 0})
    def counter(state, event):              # state is JSON data; return the new state
        return {"events": state["events"] + 1}

``load`` folds a stream (from a valid snapshot when there is one), ``history`` yields
every event with the state after it and what changed, ``find`` the first event after
which an expression over the state holds. States leave this module as JSON data.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from fnmatch import fnmatchcase
from typing import Any, Callable, Iterator

from ..errors import (
    ConfigError,
    HandlerFailed,
    NotFound,
    StreamNotFound,
    UsageError,
    one_line,
)
from ..log.envelope import Event, dumps, loads
from ..log.filters import Filter
from .diff import diff
from .loader import user_frame

GLOB_CHARS = frozenset("*?[")


class AggregateNotFound(NotFound):
    "No aggregate of that name is registered in the model"


class RevisionNotFound(NotFound):
    "A stream has no event at the revision or time asked for"


class NeverHolds(NotFound):
    "An expression held after no event of the stream"


class AggregateFailed(HandlerFailed):
    "An aggregate's code raised while folding an event, or made state that is not JSON"


def define_aggregate(model, name: str, target: Any, *, initial: Any, snapshot_every: int | None, version: Any) -> "Aggregate":
    "The Aggregate for a decorated state class or fold function."
    if snapshot_every is not None and (isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1):
        raise ConfigError(f"aggregate {name!r}: snapshot_every must be a number >= 1 or None, not {snapshot_every!r}")
    if isinstance(target, type):
        if initial is not None:
            raise ConfigError(f"aggregate {name!r}: initial= is for fold functions; a state class starts from its defaults")
        return ClassAggregate(model, name, target, snapshot_every, version)
    if callable(target):
        return FunctionAggregate(model, name, target, initial, snapshot_every, version)
    raise ConfigError(f"aggregate {name!r}: decorate a state class or a function fold(state, event)")


class Aggregate(ABC):
    "How one aggregate starts, folds an event, and turns its state into JSON and back."

    def __init__(self, model, name: str, target: Any, snapshot_every: int | None, version: Any):
        self.model = model
        self.name = name
        self.target = target
        self.snapshot_every = snapshot_every
        self.version = version
        self._fingerprint: str | None | bool = False  # False: not computed yet

    # Each style implements these four.
    @abstractmethod
    def initial(self) -> Any:
        ...

    @abstractmethod
    def apply(self, state: Any, event: Event) -> Any:
        "The state after ``event`` (handlers may change ``state`` in place)."
        ...

    @abstractmethod
    def to_json(self, state: Any) -> Any:
        ...

    @abstractmethod
    def from_json(self, data: Any) -> Any:
        ...

    def fold(self, events: Any, state: Any = None) -> Any:
        "Fold events into a state (the initial state when none is given); returns the state object."
        state = self.initial() if state is None else state
        for event in events:
            state = self.step(state, event)
        return state

    def step(self, state: Any, event: Event) -> Any:
        try:
            return self.apply(state, event)
        except Exception as e:
            frame = user_frame(e)
            where = f" ({os.path.basename(frame[0])}, line {frame[1]})" if frame else ""
            raise AggregateFailed(
                f"aggregate {self.name!r} raised {e.__class__.__name__}: {one_line(e)}{where} "
                f"on {event.stream} revision {event.revision} ({event.type})"
            ) from e

    def handles(self, type_: str) -> bool:
        "Whether an event of this type reaches the aggregate's code (a fold function gets every event)."
        return True

    def canonical(self, state: Any) -> Any:
        """The state as JSON data, as a snapshot would restore it.

        Round-tripping once makes a fold from the first event and a fold from a
        snapshot print the same JSON (e.g. an int assigned to a float field).
        """
        try:
            return self.to_json(self.from_json(self.to_json(state)))
        except Exception as e:
            raise AggregateFailed(f"aggregate {self.name!r}: its state cannot be stored as JSON: {e.__class__.__name__}: {one_line(e)}") from e

    def state_schema(self) -> str:
        "The shape of the state, as text (catches changes to classes the state is built from)."
        return ""

    def code(self) -> list[str]:
        "Source text beyond the target's own that decides the folded state (for the fingerprint)."
        return []

    def restore(self, snapshot_state: str) -> Any:
        "A state from a snapshot's JSON; None if this code cannot read it back."
        try:
            return self.from_json(loads(snapshot_state))
        except Exception:
            return None

    @property
    def fingerprint(self) -> str | None:
        """A hash of the aggregate's source, its ``version`` and the model's upcasters.

        Snapshots carry it; one made by other code is ignored. None when the source
        cannot be read and no ``version`` is given: then snapshots are not used.
        """
        if self._fingerprint is False:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str | None:
        import hashlib

        source = source_of(self.target)
        if source is None and self.version is None:
            return None
        parts = [self.name, repr(self.version), source or "", *self.code(), self.state_schema(), upcasters_source(self.model)]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class ClassAggregate(Aggregate):
    "State is an instance of a pydantic model or dataclass; ``@on`` methods change it."

    def __init__(self, model, name, cls, snapshot_every, version):
        super().__init__(model, name, cls, snapshot_every, version)
        self.cls = cls
        self.exact: dict[str, Callable] = {}
        self.globs: list[tuple[str, Callable]] = []
        for attr in handlers_of(cls):
            for type_ in attr.__evt_on__:
                if GLOB_CHARS & set(type_):
                    self.globs.append((type_, attr))
                elif self.exact.setdefault(type_, attr) is not attr:
                    raise ConfigError(
                        f"aggregate {name!r}: two handlers for {type_}: {self.exact[type_].__qualname__} and {attr.__qualname__}"
                        " (to replace a base class's handler, override its method)"
                    )
        if not self.exact and not self.globs:
            raise ConfigError(f"aggregate {name!r}: {cls.__name__} has no @on(...) handlers")
        self._resolved: dict[str, Callable | None] = {}
        self._adapter = None
        self._is_pydantic = hasattr(cls, "model_validate")
        if not self._is_pydantic and not hasattr(cls, "__dataclass_fields__"):
            raise ConfigError(f"aggregate {name!r}: {cls.__name__} must be a pydantic model or a dataclass")
        try:
            cls()
        except Exception as e:
            raise ConfigError(f"aggregate {name!r}: {cls.__name__}() must work (give every field a default): {e}") from None

    def handler(self, type_: str) -> Callable | None:
        if type_ not in self._resolved:
            found = self.exact.get(type_)
            if found is None:
                found = next((fn for glob, fn in self.globs if fnmatchcase(type_, glob)), None)
            self._resolved[type_] = found
        return self._resolved[type_]

    def initial(self) -> Any:
        return self.cls()

    def handles(self, type_: str) -> bool:
        return self.handler(type_) is not None

    def apply(self, state: Any, event: Event) -> Any:
        handler = self.handler(event.type)
        if handler is None:
            return state
        result = handler(state, event)
        return result if isinstance(result, self.cls) else state

    def adapter(self):
        if self._adapter is None:
            from pydantic import TypeAdapter

            self._adapter = TypeAdapter(self.cls)
        return self._adapter

    def to_json(self, state: Any) -> Any:
        if self._is_pydantic:
            return state.model_dump(mode="json")
        return self.adapter().dump_python(state, mode="json")

    def from_json(self, data: Any) -> Any:
        if self._is_pydantic:
            return self.cls.model_validate(data)
        return self.adapter().validate_python(data)

    def code(self) -> list[str]:
        "The base classes' source: inherited @on handlers (and what they call there) fold too."
        return [source_of(base) or "" for base in self.cls.__mro__[1:] if _is_user_class(base)]

    def state_schema(self) -> str:
        try:
            return dumps(self.adapter().json_schema())
        except Exception:  # a state type pydantic cannot describe: the source alone decides
            return ""


class FunctionAggregate(Aggregate):
    "State is JSON data; one function ``fold(state, event)`` returns the next state."

    def __init__(self, model, name, fn, initial, snapshot_every, version):
        super().__init__(model, name, fn, snapshot_every, version)
        self.fn = fn
        if callable(initial):
            self._initial = initial
        else:
            try:
                text = dumps({} if initial is None else initial)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"aggregate {name!r}: initial must be JSON data: {e}") from None
            self._initial = lambda: loads(text)

    def initial(self) -> Any:
        return self._initial()

    def code(self) -> list[str]:
        "The initial state: it may be given by a name defined elsewhere in the model."
        try:
            return [dumps(self._initial())]
        except Exception:  # an initial() that fails will fail the fold, with a clear message
            return []

    def apply(self, state: Any, event: Event) -> Any:
        result = self.fn(state, event)
        return state if result is None else result

    def to_json(self, state: Any) -> Any:
        return loads(dumps(state))

    def from_json(self, data: Any) -> Any:
        return data


def handlers_of(cls: type) -> list[Callable]:
    "The ``@on`` methods of a class and its bases, base classes first, in declaration order."
    found: dict[str, Callable] = {}
    for klass in reversed(cls.__mro__):
        for attr_name, attr in vars(klass).items():
            fn = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
            if callable(fn) and hasattr(fn, "__evt_on__"):
                found.pop(attr_name, None)
                found[attr_name] = fn
    return list(found.values())


# Base classes from these packages are the libraries' code, not the aggregate's.
LIBRARY_MODULES = frozenset({"builtins", "pydantic", "pydantic_core", "typing", "abc", "collections", "dataclasses", "enum"})


def _is_user_class(cls: type) -> bool:
    return cls is not object and cls.__module__.split(".")[0] not in LIBRARY_MODULES


def source_of(target: Any) -> str | None:
    import inspect

    try:
        return inspect.getsource(target)
    except (OSError, TypeError):
        return None


def upcasters_source(model) -> str:
    "The model's upcasters, as text: a changed upcaster changes what aggregates see."
    parts = []
    for (type_, version), (to_type, fn) in sorted(getattr(model, "upcasters", {}).items()):
        parts.append(f"{type_} v{version} -> {to_type}\n{source_of(fn) or getattr(fn, '__qualname__', '')}")
    return "\n".join(parts)


def get_aggregate(model, name: str) -> Aggregate:
    "The model's aggregate ``name``; AggregateNotFound listing the known ones."
    aggregate = model.aggregates.get(name)
    if aggregate is None:
        known = ", ".join(sorted(model.aggregates)) or "none"
        raise AggregateNotFound(f"no aggregate named {name!r} in the model (registered: {known})")
    return aggregate


# -- reading state back ------------------------------------------------------------


class Folded:
    "A stream's state at a revision, as JSON data, with where it came from."

    def __init__(
        self, aggregate: str, stream: str, revision: int, position: int, timestamp: str, state: Any, snapshot_revision: int | None
    ):
        self.aggregate = aggregate
        self.stream = stream
        self.revision = revision
        self.position = position
        self.timestamp = timestamp
        self.state = state
        self.snapshot_revision = snapshot_revision
        self.personal = False  # whether a folded event had personal fields: then no snapshot keeps the state

    def __repr__(self) -> str:
        return f"Folded({self.aggregate!r}, {self.stream!r}, revision={self.revision}, state={self.state!r})"


class Step:
    "One event of a history: the event, the state after it, and what it changed."

    def __init__(self, event: Event, state: Any, changes: list[dict]):
        self.event = event
        self.state = state
        self.changes = changes

    def to_dict(self) -> dict:
        return {"event": self.event.to_dict(), "state": self.state, "changes": self.changes}


def target_revision(store, stream: str, at_revision: int | None = None, at: str | None = None) -> tuple[int, int]:
    """The stream's head, and the revision a read stops at: the head, ``at_revision``, or the last event at or before ``at``.

    ``at`` is a canonical timestamp; the stream is taken as it grew, so the fold stops
    before the first event stamped later than ``at``.
    """
    head = store.stream_revision(stream)
    if not head:
        raise StreamNotFound(f"stream {stream!r} not found (no events)")
    target = head
    if at_revision is not None:
        if at_revision < 1:  # revision 0 is the state before the stream: there is none to show
            raise RevisionNotFound(f"revision {at_revision} is before stream {stream!r}: its revisions are 1 to {head}")
        if at_revision > head:
            raise RevisionNotFound(f"stream {stream!r} has revisions 1 to {head}; there is no revision {at_revision}")
        target = at_revision
    if at is not None:
        row = store.conn.execute(
            "SELECT min(revision) FROM events WHERE stream = ? AND timestamp > ? AND revision <= ?", (stream, at, target)
        ).fetchone()
        if row[0] is not None:
            target = row[0] - 1
        if target < 1:
            raise RevisionNotFound(f"stream {stream!r} had no events yet at {at}")
    return head, target


def load(
    store,
    aggregate: Aggregate,
    stream: str,
    *,
    at_revision: int | None = None,
    at: str | None = None,
    use_snapshots: bool = True,
) -> Folded:
    """The stream's state folded by ``aggregate``, now or at a past revision or time.

    Starts from the stream's snapshot when it was made by this aggregate code and lies
    at or before the target; saves a new snapshot when ``snapshot_every`` events have
    passed since the last one (a full load only).
    """
    from . import snapshots

    head, target = target_revision(store, stream, at_revision, at)
    snapshot = snapshots.usable(store, aggregate, stream, target) if use_snapshots else None
    state = aggregate.restore(snapshot.state) if snapshot is not None else None
    if state is None:
        snapshot = None
    if snapshot is not None:
        revision, position, timestamp = snapshot.revision, snapshot.position, snapshot.timestamp
    else:
        state, revision, position, timestamp = aggregate.initial(), 0, 0, None
    personal_types = getattr(aggregate.model, "personal_fields", {})
    personal = False
    for event in store.read(Filter(stream=stream, start=revision + 1, end=target)):
        state = aggregate.step(state, event)
        revision, position, timestamp = event.revision, event.position, event.timestamp
        personal = personal or (event.type, event.version) in personal_types
    data = aggregate.canonical(state)
    folded = Folded(aggregate.name, stream, revision, position, timestamp, data, snapshot.revision if snapshot else None)
    folded.personal = personal
    # A state folded from personal fields holds them decrypted: a snapshot would keep them in clear.
    if use_snapshots and not personal and target == head and snapshots.due(aggregate, snapshot, revision):
        snapshots.save(store, aggregate, folded)
    return folded


def unhandled_types(store, aggregate: Aggregate, folded: Folded) -> list[str] | None:
    """The event types of a folded stream when none of its events had a handler — the
    state is then the initial one, which is seldom what was meant (the wrong stream,
    or an ``@on`` type misspelt); None when some event was handled.

    Only a state equal to the initial one is checked, so a normal load reads nothing more.
    """
    if not isinstance(aggregate, ClassAggregate) or folded.state != aggregate.canonical(aggregate.initial()):
        return None
    types: dict[str, None] = {}
    for event in store.read(Filter(stream=folded.stream, end=folded.revision)):
        if aggregate.handles(event.type):
            return None
        types.setdefault(event.type)
    return list(types)


def snapshot(store, aggregate: Aggregate, stream: str) -> Folded:
    "Fold the stream to its head and store a snapshot of it now (whatever snapshot_every says)."
    from . import snapshots

    if aggregate.fingerprint is None:
        raise ConfigError(
            f"aggregate {aggregate.name!r}: its source cannot be read, so a snapshot could not be checked later; "
            "give it a version= to snapshot it"
        )
    folded = load(store, aggregate, stream)
    if folded.personal:
        raise UsageError(
            f"{stream} has events with personal fields: a snapshot would keep them decrypted, in clear, "
            "so evt does not snapshot it (evt forget could not reach it)"
        )
    snapshots.save(store, aggregate, folded, wait=True)
    return folded


def history(store, aggregate: Aggregate, stream: str, *, at_revision: int | None = None, at: str | None = None) -> Iterator[Step]:
    """Every event of the stream (up to a revision or time) with the state after it and what changed.

    A missing stream or revision is reported at once, before the first step.
    """
    _, target = target_revision(store, stream, at_revision, at)
    return _steps(store, aggregate, stream, target)


def _steps(store, aggregate: Aggregate, stream: str, target: int) -> Iterator[Step]:
    state = aggregate.initial()
    before = aggregate.canonical(state)
    for event in store.read(Filter(stream=stream, end=target)):
        state = aggregate.step(state, event)
        after = aggregate.canonical(state)
        yield Step(event, after, diff(before, after))
        before = after


def find(store, aggregate: Aggregate, stream: str, expression, *, at_revision: int | None = None, at: str | None = None) -> Step:
    """The first event after which ``expression`` (an evt.expressions.Expression) holds.

    NeverHolds (exit 4) when it holds after none; the message says why an evaluation
    failed, if one did (a misspelt name, say).
    """
    count = 0
    for step in history(store, aggregate, stream, at_revision=at_revision, at=at):
        count += 1
        if expression.holds(step.state):
            return step
    reason = f"; {expression.problem}" if expression.problem else ""
    raise NeverHolds(f"{expression.text} never holds in {stream} ({count} event{'s' if count != 1 else ''} folded by {aggregate.name}){reason}")
