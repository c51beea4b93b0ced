"""Timestamps: the store's canonical RFC 3339 form, parsing, relative times."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

from ..errors import InvalidInput, UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def format_timestamp(epoch_us: int) -> str:
    "Microseconds since the epoch as ``2026-11-28T02:14:59.123456Z`` (the year always four digits)."
    global _second
    seconds, micros = divmod(epoch_us, 1_000_000)
    cached = _second
    if cached[0] == seconds:  # every append stamps its events: the second's text is made once
        return f"{cached[1]}.{micros:06d}Z"
    t = time.gmtime(seconds)
    text = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    _second = (seconds, text)  # one tuple, replaced whole: threads read either the old or the new
    return f"{text}.{micros:06d}Z"


_second: tuple[int | None, str] = (None, "")


def now_us() -> int:
    return time.time_ns() // 1000


def now() -> str:
    "The current time in the store's canonical form."
    return format_timestamp(now_us())


# The canonical form itself ('2026-11-28T02:14:59.123456Z', as evt read prints it).
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

# RFC 3339's date-time, and nothing else ISO 8601 allows (week or ordinal dates, the
# basic format without separators, a comma before the fraction, hours alone): a space may
# stand for the T, as RFC 3339 permits. Groups: date, time to the minute, seconds,
# fraction, offset.
_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)"
)
# What --since, --until and --at take: a date alone, or a date-time whose seconds and
# offset may be left out (UTC then).
_BOUND = re.compile(
    r"(\d{4}-\d\d-\d\d)(?:[Tt ](\d\d:\d\d)(?::(\d\d)(?:\.(\d+))?)?([Zz]|[+-]\d\d:\d\d)?)?"
)


def normalize_timestamp(text: object) -> str:
    """An RFC 3339 date-time with an offset, as canonical UTC; InvalidInput otherwise.

    The rules: RFC 3339's syntax only (no week or ordinal dates, no basic format); more
    than six fraction digits are cut to microseconds (never rounded up: a time never moves
    into the next second); a leap second (``23:59:60``) is stored as the last microsecond
    of its minute (``23:59:59.999999``), since UTC as stored has no leap seconds.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"timestamp must be an RFC 3339 string, not {text!r}")
    if _CANONICAL.fullmatch(text):  # already canonical (an imported log): 7x faster
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"timestamp {text!r} is not RFC 3339") from None
        return text
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InvalidInput(f"timestamp {text!r} is not RFC 3339")
    try:
        return canonical(_moment(*match.groups()))
    except ValueError:
        raise InvalidInput(f"timestamp {text!r} is not RFC 3339") from None
    except OverflowError:
        raise InvalidInput(f"timestamp {text!r} is out of range in UTC") from None


def _moment(date: str, minutes: str | None, seconds: str | None, fraction: str | None, offset: str | None) -> datetime:
    "The parts of an RFC 3339 timestamp as an aware datetime (UTC when there is no offset)."
    if seconds == "60":  # a leap second: the last microsecond before the next minute
        seconds, fraction = "59", "999999"
    text = f"{date}T{minutes or '00:00'}:{seconds or '00'}.{(fraction or '')[:6].ljust(6, '0')}"
    moment = datetime.fromisoformat(text)
    if offset is None or offset in ("Z", "z"):
        return moment.replace(tzinfo=timezone.utc)
    hours, mins = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or mins > 59:
        raise ValueError("offset out of range")
    delta = timedelta(hours=hours, minutes=mins)
    return moment.replace(tzinfo=timezone(-delta if offset[0] == "-" else delta))


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
    match = _BOUND.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        moment = _moment(*match.groups())
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected RFC 3339 (2026-11-28T02:00:00Z) "
            "or an age like 30s, 15m, 2h, 7d, 1w"
        ) from None
    try:
        return canonical(moment)
    except OverflowError:
        raise UsageError(f"{option} {text!r} is out of range in UTC") from None
