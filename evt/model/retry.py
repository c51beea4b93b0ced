"""What a projection or consumer does when its handler fails: retries, then a policy.

A failing handler is tried ``max_attempts`` times in all, waiting ``backoff`` seconds
before the second attempt and doubling the wait before each next one. After the last
attempt the policy decides:

- ``dlq`` (default): the event goes to the dead-letter table and processing goes on;
- ``stop``: processing stops before the event (exit 7), its position not passed;
- ``park-stream``: like ``dlq``, and every later event of the same stream is parked
  behind it in the dead-letter table (unprocessed, in order) until it is resolved, so a
  read model never sees a stream's events out of order.
"""

from __future__ import annotations

from ..config import MAX_SECONDS
from ..errors import ConfigError, UsageError

ON_ERROR = ("dlq", "stop", "park-stream")
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF = 0.1


class RetryPolicy:
    "How often to try a failing handler, how long to wait, and what to do after."

    __slots__ = ("max_attempts", "backoff", "on_error")

    def __init__(self, max_attempts: int = DEFAULT_MAX_ATTEMPTS, backoff: float = DEFAULT_BACKOFF, on_error: str = "dlq"):
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise UsageError(f"max attempts must be a whole number of at least 1, not {max_attempts!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff <= MAX_SECONDS:  # nan too
            raise UsageError(f"backoff must be a number of seconds from 0 to {MAX_SECONDS:g}, not {backoff!r}")
        if on_error not in ON_ERROR:
            raise UsageError(f"on error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
        self.max_attempts = max_attempts
        self.backoff = float(backoff)
        self.on_error = on_error

    @classmethod
    def from_table(cls, table: dict, where: str) -> "RetryPolicy":
        "The policy in a projection's evt.toml table (``max_attempts``, ``backoff``, ``on_error``)."
        try:
            return cls(
                table.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
                table.get("backoff", DEFAULT_BACKOFF),
                table.get("on_error", "dlq"),
            )
        except UsageError as e:
            raise ConfigError(f"{where}: {e}") from None

    def delay(self, attempt: int) -> float:
        "The wait before attempt number ``attempt`` (2, 3, …): backoff, doubling, at most MAX_SECONDS."
        return min(self.backoff * 2.0 ** min(attempt - 2, 64), MAX_SECONDS)

    @property
    def parks_streams(self) -> bool:
        return self.on_error == "park-stream"

    def __repr__(self) -> str:
        return f"RetryPolicy({self.max_attempts}, {self.backoff}, {self.on_error!r})"
