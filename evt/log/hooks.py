"""What the log asks of a user's model, as a protocol the model implements.

A ``Store`` may be given hooks (``Store(path, model=model)``; ``evt.Model`` is the
implementation evt ships). The store calls them at three moments and knows nothing
else about schemas or upcasters:

- on append, ``validate(event)`` for each new event (raise ``InvalidInput`` to refuse it);
- on read, ``upcast(event)`` for each stored event whose ``(type, version)`` is in
  ``upcastable`` (the event as readers see it);
- on a ``--type`` filter, ``renamed_types()``: the stored ``(type, version)`` pairs that
  read under another type, so the filter matches the type readers see without a scan.

One more hook is optional (``personal``, see ``evt.log.keys``): on append — validated or
not — and when an upcast is stored, ``personal(type, version, data)`` names the subject
and the personal fields to encrypt with the subject's key, or None.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .envelope import Event, NewEvent


@runtime_checkable
class ModelHooks(Protocol):
    "Validation on append and upcasting on read: what a Store needs from a model."

    def validate(self, event: NewEvent) -> None:
        "Raise ``evt.errors.InvalidInput`` if ``event`` may not be appended."
        ...

    @property
    def upcastable(self) -> frozenset[tuple[str, int]]:
        "The stored ``(type, version)`` pairs that read differently (an empty set: none)."
        ...

    def upcast(self, event: Event) -> Event:
        "The stored event as readers see it (raise ``evt.errors.InvalidInput`` if it cannot be)."
        ...

    def renamed_types(self) -> dict[tuple[str, int], str]:
        "Stored ``(type, version)`` pairs whose events read under another type: that type."
        ...


def personal_fields(hooks: Any, type: str, version: int, data: dict) -> tuple[str, tuple[str, ...]] | None:
    """(subject, personal fields) of an event's data, per the hooks' optional ``personal``;
    None when the hooks have none or the event holds no personal fields."""
    personal = getattr(hooks, "personal", None)
    return personal(type, version, data) if personal is not None else None
