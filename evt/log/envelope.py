"""The event envelope: stored events, events to append, ids, and JSON encoding.

Every event evt prints is one JSON object with the fields of ``FIELDS``, in that order.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from ..errors import InvalidInput
from .filters import MAX_INTEGER
from .timestamps import normalize_timestamp

FIELDS = (
    "position",
    "stream",
    "revision",
    "id",
    "type",
    "version",
    "timestamp",
    "source",
    "correlationId",
    "causationId",
    "data",
    "metadata",
)

# What an appended envelope may carry; position and revision are assigned by the store.
WRITABLE = frozenset(FIELDS) | {"expectedRevision"}

ANY = "any"
EXISTS = "exists"

# How deep data and metadata may nest objects and arrays (the object itself is level 1).
# Far below what any reader of a stored event meets first (Python's recursion limit when
# an envelope is encoded, SQLite's JSON functions in a projection), so whatever is
# accepted can be read, printed, projected and relayed.
MAX_DEPTH = 100


def dumps(value: Any) -> str:
    "Compact JSON text, UTF-8 kept as is: the form evt stores and prints."
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    "Strict JSON (no NaN or Infinity); ValueError on anything else."
    if text.__class__ is str:
        return _decode(text)  # json.loads with options would build a new decoder on every call
    return json.loads(text, parse_constant=_reject_constant)


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def load_stored(text: str) -> Any:
    """A JSON text as evt stores it (data, metadata): with orjson where that is exact.

    orjson reads integers beyond 64 bits as floats (silently), so a text with a run of 19
    or more digits goes to the standard library, as does anything orjson refuses (a lone
    surrogate escaped in a string)."""
    if text == "{}":
        return {}
    if not has_long_number(text.encode()):
        orjson_loads = _ORJSON_LOADS or _orjson_loads()
        try:
            return orjson_loads(text)
        except ValueError:  # orjson.JSONDecodeError
            pass
    return loads(text)


def has_long_number(text: bytes) -> bool:
    """Whether JSON text holds a run of 19 or more digits (a number orjson might read as a
    float: it reads integers beyond 64 bits so). Every byte mapped, in C, to "0" for a digit
    and " " for anything else, then one substring search: about ten times faster than the
    regular expression ``\\d{19}``, which tries a match at every digit."""
    return _NINETEEN in text.translate(_DIGIT_RUNS)


_DIGIT_RUNS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_NINETEEN = b"0" * 19
_ORJSON_LOADS = None


def _orjson_loads():
    global _ORJSON_LOADS
    import orjson

    _ORJSON_LOADS = orjson.loads
    return _ORJSON_LOADS


def _finite(text: str) -> float:
    value = float(text)
    if value in (_INFINITY, -_INFINITY):
        raise ValueError(f"number {text} is out of range")
    return value


_INFINITY = float("inf")


def parse_json(text: str | bytes) -> Any:
    """JSON given by a user: strict, and every number must fit (no silent infinity).

    ValueError (or RecursionError, for absurd nesting) on anything else.
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)


def category_of(stream: str) -> str:
    "The category of a stream: the part before the first ``-``."
    return stream.split("-", 1)[0]


class Event:
    "A stored event, as readers see it."

    __slots__ = (
        "position",
        "stream",
        "revision",
        "id",
        "type",
        "version",
        "timestamp",
        "source",
        "correlation_id",
        "causation_id",
        "data",
        "metadata",
    )

    def __init__(
        self,
        position: int,
        stream: str,
        revision: int,
        id: str,
        type: str,
        version: int,
        timestamp: str,
        source: str | None,
        correlation_id: str | None,
        causation_id: str | None,
        data: dict,
        metadata: dict,
    ):
        self.position = position
        self.stream = stream
        self.revision = revision
        self.id = id
        self.type = type
        self.version = version
        self.timestamp = timestamp
        self.source = source
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.data = data
        self.metadata = metadata

    @property
    def category(self) -> str:
        return category_of(self.stream)

    def to_dict(self) -> dict:
        "The envelope, with its fields in the documented order."
        return {
            "position": self.position,
            "stream": self.stream,
            "revision": self.revision,
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "timestamp": self.timestamp,
            "source": self.source,
            "correlationId": self.correlation_id,
            "causationId": self.causation_id,
            "data": self.data,
            "metadata": self.metadata,
        }

    def to_json(self) -> str:
        return dumps(self.to_dict())

    def replace(self, **changes: Any) -> "Event":
        "A copy with some fields changed (used by upcasting)."
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Event(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Event(position={self.position}, stream={self.stream!r}, revision={self.revision}, type={self.type!r})"


class NewEvent:
    """An event to append: its fields checked, not yet stored. What needs the event's JSON
    text — that data and metadata are JSON, and nest at most MAX_DEPTH levels — is checked
    when it is written (``Store.write`` raises InvalidInput, and writes nothing)."""

    __slots__ = (
        "stream",
        "type",
        "data",
        "id",
        "version",
        "source",
        "correlation_id",
        "causation_id",
        "metadata",
        "timestamp",
        "expected",
        "line",
    )

    def __init__(
        self,
        stream: str,
        type: str,
        data: dict | None = None,
        *,
        id: str | None = None,
        version: int = 1,
        source: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        metadata: dict | None = None,
        timestamp: str | None = None,
        expected: int | str = ANY,
    ):
        # Each check's common case inline (an append in a loop builds many of these); the
        # check functions have the rules and the messages.
        str_ = str
        if stream.__class__ is not str_ or not stream.isprintable() or " " in stream or not stream:
            stream = check_name("stream", stream)
        if type.__class__ is not str_ or not type.isprintable() or " " in type or not type:
            type = check_name("type", type)
        self.stream = stream
        self.type = type
        if data is None:
            data = {}
        elif data.__class__ is not dict:
            data = check_object("data", data)
        self.data = data
        self.id = None if id is None else check_id(id)
        self.version = version if version.__class__ is int and 1 <= version <= MAX_INTEGER else check_version(version)
        self.source = source if source is None or source.__class__ is str_ else check_optional("source", source)
        self.correlation_id = (
            correlation_id if correlation_id is None or correlation_id.__class__ is str_ else check_optional("correlationId", correlation_id)
        )
        self.causation_id = (
            causation_id if causation_id is None or causation_id.__class__ is str_ else check_optional("causationId", causation_id)
        )
        if metadata is None:
            metadata = {}
        elif metadata.__class__ is not dict:
            metadata = check_object("metadata", metadata)
        self.metadata = metadata
        self.timestamp = None if timestamp is None else normalize_timestamp(timestamp)
        self.expected = expected if expected is ANY or (expected.__class__ is int and expected >= 0) else parse_expected(expected)
        self.line: int | None = None  # the NDJSON line it came from, named in errors

    @classmethod
    def from_envelope(cls, envelope: Any) -> "NewEvent":
        """An event from one envelope object (a line of NDJSON, or ``evt read`` output).

        ``position`` and ``revision`` are ignored: the store assigns them. ``data``
        may be left out (or null): it is then ``{}``, as for ``evt append STREAM TYPE``.
        """
        if not isinstance(envelope, dict):
            raise InvalidInput("expected a JSON object")
        unknown = envelope.keys() - WRITABLE
        if unknown:
            raise InvalidInput(f"unknown field {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(WRITABLE))})")
        for required in ("stream", "type"):
            if required not in envelope:
                raise InvalidInput(f"missing field {required!r}")
        return cls(
            envelope["stream"],
            envelope["type"],
            envelope.get("data"),
            id=envelope.get("id"),
            version=_or(envelope.get("version"), 1),
            source=envelope.get("source"),
            correlation_id=envelope.get("correlationId"),
            causation_id=envelope.get("causationId"),
            metadata=envelope.get("metadata"),
            timestamp=envelope.get("timestamp"),
            expected=_or(envelope.get("expectedRevision"), ANY),
        )


def _or(value: Any, default: Any) -> Any:
    "An optional envelope field: null is the same as leaving it out."
    return default if value is None else value


def check_name(field: str, value: Any) -> str:
    """A stream or type name: the one place their rule is enforced.

    A name is non-empty text with no whitespace (no spaces, tabs or line breaks,
    anywhere) and no control or other unprintable characters, so it can be passed
    unquoted in a shell, used as a broker key or subject, and read back as typed.
    Anything else printable is allowed (``order-ord_1``, ``Bestellung.aufgegeben``,
    ``tenant/42``).
    """
    # Python's isprintable() is False for every whitespace character but " ".
    if type(value) is str and value and value.isprintable() and " " not in value:
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, not {json_kind(value)}")
    if not value:
        raise InvalidInput(f"{field} must not be empty")
    for char in value:
        if char.isspace():
            what = "a space" if char == " " else f"whitespace ({char!r})"
            raise InvalidInput(f"{field} {value!r} contains {what}: {field} names may not contain whitespace")
        if not char.isprintable():
            raise InvalidInput(f"{field} {value!r} contains the unprintable character {char!r}: {field} names must be printable")
    return value


def check_id(value: Any) -> str:
    "An event id: printable text, with no whitespace around it (inside is allowed: ids come from other systems)."
    if not isinstance(value, str) or not value or not value.isprintable() or value.strip() != value:
        raise InvalidInput(f"id must be a non-empty string without control characters or surrounding spaces, not {value!r}")
    return value


def check_optional(field: str, value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string or null, not {value!r}")
    return value


def check_object(field: str, value: Any) -> dict:
    """Data or metadata: a JSON object. How deep it nests is checked when it is encoded, on
    its text (``check_depth``): far cheaper there than walking every object."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object, not {json_kind(value)}")
    return value


def check_depth(field: str, value: dict, text: str) -> None:
    """InvalidInput if ``value`` (encoded as ``text``) nests objects and arrays more than
    MAX_DEPTH levels. A text with no more brackets than that cannot (brackets in strings
    only add to the count): the walk runs only for texts with more."""
    if text.count("{") + text.count("[") > MAX_DEPTH and too_deep(value):
        raise InvalidInput(f"{field} nests objects and arrays more than {MAX_DEPTH} levels deep")


def too_deep(value: dict | list, limit: int = MAX_DEPTH) -> bool:
    "Whether objects and arrays nest more than ``limit`` levels (level by level: no recursion)."
    level: list = [value]
    for _ in range(limit):
        deeper: list = []
        for container in level:
            values = container.values() if isinstance(container, dict) else container
            if _SCALARS.issuperset(map(type, values)):  # the common case, checked in C: nothing nests here
                continue
            deeper += [child for child in values if isinstance(child, _CONTAINERS)]
        if not deeper:
            return False
        level = deeper
    return True


def json_kind(value: Any) -> str:
    "What a value is, in JSON's words: 'null', 'an array', 'a string', 'a number', 'a boolean', 'an object'."
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    kinds = {str: "a string", list: "an array", tuple: "an array", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


_CONTAINERS = (dict, list)
_SCALARS = frozenset((str, int, float, bool, type(None)))  # values of a flat object (exact types: no subclass)


def check_version(value: Any) -> int:
    if type(value) is int and 1 <= value <= MAX_INTEGER:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"version must be an integer >= 1, not {value!r}")
    if value > MAX_INTEGER:
        raise InvalidInput(f"version {value} is too large (at most {MAX_INTEGER})")
    return value


def parse_expected(value: Any) -> int | str:
    "An expected revision: an int >= 0, ``any`` or ``exists`` (strings of digits too)."
    if value is ANY or (type(value) is int and value >= 0):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if value in (ANY, EXISTS) or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise InvalidInput(f"expected revision must be a number >= 0, 'any' or 'exists', not {value!r}")


class IdFactory:
    """Time-ordered event ids in the UUIDv7 layout (RFC 9562).

    Ids from one factory increase strictly: the first id of a millisecond has 74 random
    bits, the next ones in the same millisecond count up from it (RFC 9562's monotonic
    counter), so bulk inserts append to the end of the id index instead of splitting
    random pages, and a batch asks the OS for randomness once per millisecond.
    """

    def __init__(self) -> None:
        self._last = 0
        self._ms = -1
        self._high = -1  # the upper 64 bits of the last id (the time, mostly) ...
        self._prefix = ""  # ... as the id's first three groups: formatted once for many ids

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        if ms == self._ms:
            value = self._last + 1
        else:
            value = (ms << 80) | (0x7 << 76) | (int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1))
            value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
            if value <= self._last:  # the clock went back
                value = self._last + 1
            self._ms = ms
        self._last = value
        high = value >> 64
        if high != self._high:
            h = f"{high:016x}"
            self._prefix = f"{h[:8]}-{h[8:12]}-{h[12:]}-"
            self._high = high
        low = f"{value & 0xFFFFFFFFFFFFFFFF:016x}"
        return f"{self._prefix}{low[:4]}-{low[4:]}"


def thread_ids() -> IdFactory:
    """This thread's id factory, kept for its next write: a write of one event in the same
    millisecond as the last then costs no randomness from the OS and no formatting of the
    time. One per thread (a factory is not shared: two threads counting from one last id
    would make the same id); a forked child gets new ones (the parent's would count on
    from the same id, in both processes)."""
    try:
        return _IDS.factory
    except AttributeError:
        factory = _IDS.factory = IdFactory()
        return factory


def _new_thread_ids() -> None:
    global _IDS
    _IDS = threading.local()


_IDS = threading.local()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_thread_ids)
