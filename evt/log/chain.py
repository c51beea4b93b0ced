"""The hash chain: every event's hash covers what is stored of it and the hash before it.

    hash(p) = SHA-256(hash(p - 1) || body(p))        hash(0) = 32 zero bytes

``body(p)`` is the event's fields, in this order, each as ``field``: position, revision,
timestamp, id, stream, type, version, source, correlation_id, causation_id; then the
SHA-256 of the stored ``data`` text and the SHA-256 of the stored ``metadata`` text (32
raw bytes each; UTF-8 text). ``field`` is ``-,`` for NULL, else the value's text (UTF-8;
an integer in decimal) as ``<its length in bytes>:<the text>,``:

    field(7) = b"1:7,"   field("order-1") = b"7:order-1,"   field(None) = b"-,"

The hash is computed inside the append's transaction (``batch.Placement``) and stored as
32 raw bytes in ``events.hash``; users see it as 64 lowercase hex characters. The data and
metadata are chained by their digests, not their texts, so a redaction can replace a text
and keep its digests (``evt_redacted_events``): the chain stays verifiable.

What does not depend on the event's place in the log (its digests, and the encoded id,
stream, type, version, source and causation ids) is encoded while the event is prepared,
before the write queues for the lock (``fixed``); inside the lock each event costs one
SHA-256 over a short byte string (``link``).
"""

from __future__ import annotations

from hashlib import sha256
from typing import Iterable, Iterator

GENESIS = bytes(32)  # the hash "before" position 1
_EMPTY = sha256(b"{}").digest()  # most metadata is {}


def field(value: object) -> bytes:
    "One field of the body: ``-,`` for NULL, else ``<byte length>:<UTF-8 text>,``."
    if value is None:
        return b"-,"
    text = value.encode() if isinstance(value, str) else b"%d" % value
    return b"%d:%s," % (len(text), text)


def digest(text: str) -> bytes:
    "SHA-256 of a stored JSON text (its UTF-8 bytes)."
    if text == "{}":
        return _EMPTY
    return sha256(text.encode()).digest()


def fixed(
    id: str, stream: str, type: str, version: int, source: str | None, correlation_id: str | None,
    causation_id: str | None, data: str, metadata: str,
) -> bytes:
    """The part of the body that does not depend on where the event goes: every field after
    the timestamp, and the digests. Raises UnicodeEncodeError for a lone surrogate."""
    text = f"{id}{stream}{type}{source or ''}{correlation_id or ''}{causation_id or ''}"
    if text.isascii():  # lengths in characters are lengths in bytes: one encode for all
        v = str(version)
        head = (
            f"{len(id)}:{id},{len(stream)}:{stream},{len(type)}:{type},{len(v)}:{v},"
            f"{'-' if source is None else f'{len(source)}:{source}'},"
            f"{'-' if correlation_id is None else f'{len(correlation_id)}:{correlation_id}'},"
            f"{'-' if causation_id is None else f'{len(causation_id)}:{causation_id}'},"
        )
        return b"".join((head.encode(), digest(data), digest(metadata)))
    return b"".join(
        (
            field(id), field(stream), field(type), field(version), field(source), field(correlation_id),
            field(causation_id), digest(data), digest(metadata),
        )
    )


def link(previous: bytes, position: int, revision: int, timestamp: bytes, fixed: bytes) -> bytes:
    "The hash of an event: ``timestamp`` is its encoded ``field``, ``fixed`` the rest of its body."
    p = b"%d" % position
    r = b"%d" % revision
    return sha256(b"%s%d:%s,%d:%s,%s%s" % (previous, len(p), p, len(r), r, timestamp, fixed)).digest()


def body(
    position: int, revision: int, timestamp: str, id: str, stream: str, type: str, version: int,
    source: str | None, correlation_id: str | None, causation_id: str | None, data_sha256: bytes, metadata_sha256: bytes,
) -> bytes:
    "The body of an event, field by field (the reference the fast paths must agree with)."
    fields = (position, revision, timestamp, id, stream, type, version, source, correlation_id, causation_id)
    return b"".join(field(v) for v in fields) + data_sha256 + metadata_sha256


def hex_hash(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


# -- the chain as SQL reads it ---------------------------------------------------------------


def _text_field(column: str, nullable: bool) -> str:
    encoded = f"length(CAST({column} AS BLOB))||':'||{column}||','"
    return f"CASE WHEN {column} IS NULL THEN '-,' ELSE {encoded} END" if nullable else encoded


# The body without its digests, built by SQLite as bytes (no Python per field). Every
# column a NOT NULL constraint guards may still be NULL in a tampered store: then the
# whole expression is NULL, and ``KINDS`` says which row.
BODY_SQL = "CAST(" + "||".join(
    [
        "length(position)||':'||position||','",
        "length(revision)||':'||revision||','",
        _text_field("timestamp", False),
        _text_field("id", False),
        _text_field("stream", False),
        _text_field("type", False),
        "length(version)||':'||version||','",
        _text_field("source", True),
        _text_field("correlation_id", True),
        _text_field("causation_id", True),
    ]
) + " AS BLOB)"

# 1 when every column holds what evt stores there (a text, an integer, NULL where allowed).
KINDS = " AND ".join(
    [
        "typeof(revision) = 'integer'",
        "typeof(version) = 'integer'",
        *(f"typeof({c}) = 'text'" for c in ("timestamp", "id", "stream", "type", "data", "metadata")),
        *(f"typeof({c}) IN ('text', 'null')" for c in ("source", "correlation_id", "causation_id")),
    ]
)


def redacted(conn, schema: str = "main") -> dict[int, tuple[bytes, bytes]]:
    "The redacted events: position -> (SHA-256 of the data, of the metadata) before the redaction."
    return {
        row[0]: (row[1], row[2])
        for row in conn.execute(f"SELECT position, data_sha256, metadata_sha256 FROM {schema}.evt_redacted_events")
    }


def stored_hash(conn, position: int, schema: str = "main") -> bytes | None:
    "The stored hash at a position (GENESIS before position 1; None when there is none)."
    if position < 1:
        return GENESIS
    row = conn.execute(f"SELECT hash FROM {schema}.events WHERE position = ?", (position,)).fetchone()
    return None if row is None else row[0]


REHASH_BATCH = 5000


def rehash(conn, start: int = 1, schema: str = "main") -> int:
    """Compute and store the hashes of the events from position ``start`` on, in order,
    chained to the stored hash before ``start``; return how many. Streams in batches (the
    caller's transaction; its append-only triggers dropped: this updates events)."""
    previous = GENESIS
    row = conn.execute(
        f"SELECT hash FROM {schema}.events WHERE position < ? ORDER BY position DESC LIMIT 1", (start,)
    ).fetchone()
    if row is not None:
        previous = row[0] if row[0] is not None else GENESIS
    marks = redacted(conn, schema)
    select = (
        f"SELECT position, {BODY_SQL}, CAST(data AS BLOB), CAST(metadata AS BLOB) FROM {schema}.events "
        f"WHERE position >= ? ORDER BY position LIMIT {REHASH_BATCH}"
    )
    update = f"UPDATE {schema}.events SET hash = ? WHERE position = ?"
    count = 0
    while True:
        rows = conn.execute(select, (start,)).fetchall()
        if not rows:
            return count
        hashes = []
        for position, fixed_part, data, metadata in rows:
            if position in marks:
                data_sha, metadata_sha = marks[position]
            else:
                data_sha, metadata_sha = sha256(data).digest(), sha256(metadata).digest()
            previous = sha256(b"".join((previous, fixed_part, data_sha, metadata_sha))).digest()
            hashes.append((previous, position))
        conn.executemany(update, hashes)
        count += len(rows)
        start = rows[-1][0] + 1


def chained(rows: Iterable[tuple], previous: bytes) -> Iterator[bytes]:
    "The hashes of rows (position, revision, timestamp, id, stream, type, version, source, correlation_id, causation_id, data, metadata), chained from ``previous``."
    for row in rows:
        previous = sha256(previous + body(*row[:10], digest(row[10]), digest(row[11]))).digest()
        yield previous
