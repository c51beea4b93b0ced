"""Helpers for testing your own model with pytest: no files, no CLI.

::

    from evt.testing import given
    from model import model

    def test_a_debit_lowers_the_balance():
        account = given(
            ("account.credited", {"amount": 100}),
            ("account.debited", {"amount": 30}),
            model=model,
        )
        assert account.fold("account")["balance"] == 70

``given`` appends the events to an in-memory store through your model, so schemas
validate them (an invalid event raises ``evt.InvalidInput``) and upcasters apply
when they are read back, exactly as ``evt append`` and ``evt aggregate`` would.
"""

from __future__ import annotations

from typing import Any

from .log.envelope import Event, NewEvent
from .log.store import Store
from .model import Model, load_model

DEFAULT_STREAM = "test-1"


def memory_store(model: Model | str | None = None) -> Store:
    "An empty evt store in memory (gone when closed), using ``model`` (a Model or a path)."
    return Store(":memory:", model=_model(model))


def given(*events: Any, model: Model | str | None = None, stream: str = DEFAULT_STREAM, validate: bool = True) -> "Given":
    """A history of events, appended in order to a fresh in-memory store.

    Each event is ``(type, data)``, ``(type, data, version)``, an envelope dict as
    ``evt read`` prints it (at least ``type`` and ``data``; ``stream`` defaults to
    ``stream``), or an ``evt.NewEvent``.
    """
    return Given(events, _model(model), stream, validate)


class Given:
    "Events in an in-memory store, and what the model makes of them."

    def __init__(self, events: tuple, model: Model | None, stream: str, validate: bool):
        self.model = model
        self.stream = stream
        self.store = Store(":memory:", model=model)
        self.store.write([to_new_event(e, stream) for e in events], validate=validate)

    @property
    def events(self) -> list[Event]:
        "The events as stored and read back (upcast to their latest versions)."
        return list(self.store.read())

    def fold(self, aggregate: str, stream: str | None = None, *, at_revision: int | None = None) -> Any:
        "The state (JSON data) that ``aggregate`` folds out of the stream."
        from .model.aggregates import get_aggregate, load

        agg = get_aggregate(self._require_model(), aggregate)
        return load(self.store, agg, stream or self._stream(), at_revision=at_revision, use_snapshots=False).state

    def history(self, aggregate: str, stream: str | None = None) -> list[dict]:
        "Every event with the state after it and the changes: dicts as ``evt aggregate --history`` prints."
        from .model.aggregates import get_aggregate, history

        agg = get_aggregate(self._require_model(), aggregate)
        return [step.to_dict() for step in history(self.store, agg, stream or self._stream())]

    def _stream(self) -> str:
        streams = [s["stream"] for s in self.store.streams()]
        if self.stream in streams or len(streams) != 1:
            return self.stream
        return streams[0]

    def _require_model(self) -> Model:
        if self.model is None:
            raise TypeError("given(..., model=model) needs your model to fold aggregates")
        return self.model


def to_new_event(event: Any, stream: str) -> NewEvent:
    if isinstance(event, NewEvent):
        return event
    if isinstance(event, tuple) and len(event) in (2, 3):
        type_, data, *version = event
        return NewEvent(stream, type_, data, version=version[0] if version else 1)
    if isinstance(event, dict):
        return NewEvent.from_envelope({"stream": stream, **{k: v for k, v in event.items() if k not in ("position", "revision")}})
    raise TypeError(f"an event is (type, data), (type, data, version), an envelope dict or a NewEvent, not {event!r}")


def _model(model: Model | str | None) -> Model | None:
    return load_model(model) if isinstance(model, str) else model
