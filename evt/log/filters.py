"""Reading filters: which events a read selects, as one SQL query.

Each filter is served by an index: a stream by (stream, revision), a category by
(category, position), a correlation id and a time range by their own indexes.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, Sequence

from ..errors import InvalidInput

# How ``--type`` globs and exact types become SQL when upcasting renames types: it gets
# the globs and the exact types and returns (condition, params).
TypeCondition = Callable[[Sequence[str], Sequence[str]], tuple[str, list]]

# SQLite's largest integer: a bound or limit beyond it means "no bound" (and would not bind).
MAX_INTEGER = 2**63 - 1


class Filter:
    """What to read. Bounds are inclusive.

    ``types`` are glob patterns (``order.*``; SQLite's GLOB: ``*``, ``?``, ``[...]``);
    ``exact_types`` are type names matched as they are, whatever characters they hold.
    An event matches if its type matches any of either.
    ``start``/``end`` are revisions when ``stream`` is set, positions otherwise.
    ``after`` is an exclusive position bound (used by followers and consumers).
    """

    __slots__ = (
        "stream",
        "category",
        "types",
        "exact_types",
        "correlation_id",
        "since",
        "until",
        "start",
        "end",
        "after",
        "limit",
        "backwards",
    )

    def __init__(
        self,
        stream: str | None = None,
        category: str | None = None,
        types: Sequence[str] = (),
        correlation_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        start: int | None = None,
        end: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
        exact_types: Sequence[str] = (),
    ):
        self.stream = text_argument("stream", stream)
        self.category = text_argument("category", category)
        self.types = tuple(text_argument("type", t) for t in types)
        self.exact_types = tuple(text_argument("type", t) for t in exact_types)
        self.correlation_id = text_argument("correlation id", correlation_id)
        self.since = since
        self.until = until
        self.start = start
        self.end = end
        self.after = after
        self.limit = limit
        self.backwards = backwards

    def replace(self, **changes: object) -> "Filter":
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Filter(**values)

    def following(self, position: int) -> "Filter":
        "The same filter, for events after ``position`` (no limit, forwards)."
        return self.replace(after=position, limit=None, backwards=False)

    def to_sql(self, columns: str, type_condition: TypeCondition | None = None) -> tuple[str, list]:
        conditions: list[str] = []
        params: list = []

        def add(condition: str, *values: object) -> None:
            conditions.append(condition)
            params.extend(values)

        if self.stream is not None:
            add("stream = ?", self.stream)
            bound = "revision"
        else:
            bound = "position"
        if self.category is not None:
            add("category = ?", self.category)
        if self.types or self.exact_types:
            if type_condition is not None:
                condition, values = type_condition(self.types, self.exact_types)
            else:
                condition, values = stored_type_condition(self.types, self.exact_types)
            add(condition, *values)
        if self.correlation_id is not None:
            add("correlation_id = ?", self.correlation_id)
        # A time range is turned into a position range found through the timestamp
        # index, so the rows are read in position order with no sort and no full scan.
        if self.since is not None:
            add("timestamp >= ? AND position >= (SELECT min(position) FROM events INDEXED BY events_timestamp WHERE timestamp >= ?)", self.since, self.since)
        if self.until is not None:
            add("timestamp <= ? AND position <= (SELECT max(position) FROM events INDEXED BY events_timestamp WHERE timestamp <= ?)", self.until, self.until)
        if self.start is not None:
            add(f"{bound} >= ?", min(self.start, MAX_INTEGER))
        if self.end is not None:
            add(f"{bound} <= ?", min(self.end, MAX_INTEGER))
        if self.after is not None:
            add("position > ?", min(self.after, MAX_INTEGER))
        sql = f"SELECT {columns} FROM events"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        order = "revision" if self.stream is not None else "position"  # the same order; this one uses the index
        sql += f" ORDER BY {order} DESC" if self.backwards else f" ORDER BY {order}"
        if self.limit is not None:
            sql += " LIMIT ?"
            params.append(min(self.limit, MAX_INTEGER))
        return sql, params


def text_argument(what: str, value: str | None) -> str | None:
    """A name to match, which must be text: an argument that is not UTF-8 (Python keeps its
    bytes as lone surrogates) is InvalidInput, naming the bytes as given."""
    if value is not None and isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise InvalidInput(f"{what} '{shown}' is not valid UTF-8 text") from None
    return value


def renamed_type_condition(conn: sqlite3.Connection, renamed: dict[tuple[str, int], str]) -> TypeCondition:
    """``--type`` globs as SQL over stored (type, version), matching the type readers see.

    ``renamed`` maps the stored (type, version) pairs that read under another type to
    that type: those match by it, every other event by its stored type. Glob matching is
    SQLite's own (``GLOB``), so both sides agree exactly.
    """

    def matches(type_: str, globs: Sequence[str], exact: Sequence[str]) -> bool:
        return type_ in exact or any(conn.execute("SELECT ? GLOB ?", (type_, g)).fetchone()[0] for g in globs)

    def condition(globs: Sequence[str], exact: Sequence[str]) -> tuple[str, list]:
        hit = [key for key, final in renamed.items() if matches(final, globs, exact)]
        miss = [key for key in renamed if key not in hit]
        sql, params = stored_type_condition(globs, exact)
        if miss:
            sql = f"({sql} AND (type, version) NOT IN ({pairs_values(miss)}))"
            params += flat(miss)
        if hit:
            sql = f"({sql} OR (type, version) IN ({pairs_values(hit)}))"
            params += flat(hit)
        return sql, params

    return condition


def stored_type_condition(globs: Sequence[str], exact: Sequence[str]) -> tuple[str, list]:
    "SQL: the stored type matches one of the globs or is one of the exact types."
    terms = ["type GLOB ?"] * len(globs)
    if exact:
        terms.append(f"type IN ({', '.join('?' * len(exact))})")
    return "(" + " OR ".join(terms) + ")", [*globs, *exact]


def pairs_values(pairs: Sequence[tuple]) -> str:
    "SQL ``VALUES (?, ?), …`` for (type, version) pairs."
    return "VALUES " + ", ".join("(?, ?)" for _ in pairs)


def flat(pairs: Sequence[tuple]) -> list:
    return [value for pair in pairs for value in pair]
