"""Reactors (process managers) declared in the user's model: plain declarations, run by processing.

::

    checkout = model.reactor("checkout")

    @checkout.on("order.placed")
    def request_payment(event):          # event: an evt.Event, upcast
        return NewEvent(f"payment-{event.data['orderId']}", "payment.requested",
                        {"amount": event.data["total"]}, expected=0)

A handler takes the event it reacts to and returns the events to append: a ``NewEvent``,
an envelope dict (as ``evt append --ndjson`` takes), a list or generator of them, or
None. ``evt.processing.reactors`` appends them — caused by the handled event, in its
correlation — together with the reactor's checkpoint, in one transaction.
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from .retry import RetryPolicy


class DeclaredReactor:
    """A reactor written in Python: ``model.reactor(name, max_attempts=3, backoff=0.1,
    on_error="dlq")``.

    ``@reactor.on("order.placed", "order.*")`` registers a handler ``fn(event)``;
    ``@reactor`` alone reacts to every event. Handlers must be deterministic in what
    they return for an event (no clocks, no randomness): a reaction evt appends again
    (after ``evt projections reset``) then keeps its id and is not stored twice.
    """

    def __init__(self, name: str, *, max_attempts: int = 3, backoff: float = 0.1, on_error: str = "dlq"):
        if not isinstance(name, str) or not name:
            raise ConfigError('a reactor needs a name: model.reactor("checkout")')
        self.name = name
        self.policy = RetryPolicy(max_attempts, backoff, on_error)
        self.handlers: list[tuple[str, Callable]] = []

    def on(self, *types: str) -> Callable:
        "Register a handler ``fn(event)`` for event types or globs; it returns the events to append."
        if not types or not all(isinstance(t, str) and t for t in types):
            raise ConfigError(f"reactor {self.name}: on() needs one or more event types or globs")

        def register(fn: Callable) -> Callable:
            for glob in types:
                self.handlers.append((glob, fn))
            return fn

        return register

    def __call__(self, fn: Callable) -> Callable:
        "As a decorator: ``fn(event)`` reacts to every event."
        return self.on("*")(fn)
