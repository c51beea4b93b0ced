"""The hash chain: every event's hash covers what is stored of it and the hash before it.

    hash(p) = SHA-256(hash(p - 1) || body(p))        hash(0) = 32 zero bytes

``body(p)`` is the JSON array of the event's fields, compact and UTF-8 (what SQLite's
``json_array`` and Python's ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``
both make), followed by the SHA-256 of the stored ``data`` text and the SHA-256 of the
stored ``metadata`` text (32 raw bytes each, of their UTF-8 bytes):

    [position,revision,timestamp,id,stream,type,version,source,correlation_id,causation_id]

A NULL is ``null``; texts are JSON strings, integers JSON numbers, so a value stored as
another kind (a revision as the text "3") no longer matches. The hash is computed inside
the append's transaction (``batch.Placement``) and stored as 32 raw bytes in
``events.hash``; users see it as 64 lowercase hex characters. Data and metadata are
chained by their digests, not their texts, so a redaction can replace a text and keep its
digests (``evt_redacted_events``): the chain stays verifiable.

What does not depend on the event's place in the log (the digests, and the encoded id,
stream, type, version, source and causation ids) is encoded while the event is prepared,
before the write queues for the lock (``fixed``); inside the lock each event costs one
SHA-256 over a short byte string (``link``).
"""

from __future__ import annotations

from hashlib import sha256
from json.encoder import encode_basestring as _quote  # type: ignore[attr-defined]  # json.dumps's own, in C

GENESIS = bytes(32)  # the hash "before" position 1
EMPTY_DIGEST = sha256(b"{}").digest()  # most metadata is {}


def digest(text: str) -> bytes:
    "SHA-256 of a stored JSON text (its UTF-8 bytes)."
    if text == "{}":
        return EMPTY_DIGEST
    return sha256(text.encode()).digest()


class Digests(dict):
    """SHA-256 of texts that repeat (metadata: the same few users, sources, tenants), kept
    for the next event that has the same one — at most ``limit`` of them."""

    def __init__(self, limit: int = 4096):
        super().__init__()
        self.limit = limit

    def __missing__(self, text: bytes) -> bytes:
        value = sha256(text).digest()
        if len(self) < self.limit:
            self[text] = value
        return value


METADATA_DIGESTS = Digests()  # by the metadata's UTF-8 bytes


def stamp(timestamp: str) -> bytes:
    """A timestamp as the body holds it (a JSON string). An event's hash is then
    SHA-256(previous || b"[%d,%d," % (position, revision) || stamp || fixed)."""
    return _quote(timestamp).encode()


def fixed(
    id: str, stream: str, type: str, version: int, source: str | None, correlation_id: str | None,
    causation_id: str | None, data: str, metadata: str,
) -> bytes:
    """The part of the body that does not depend on where the event goes: every field after
    the timestamp, and the digests. Raises UnicodeEncodeError for a lone surrogate."""
    return fixed_from(quoted_id(id), tail(stream, type, version, source, correlation_id, causation_id), data, metadata)


def quoted_id(id: str) -> bytes:
    "An event id as the body holds it (a JSON string)."
    return _quote(id).encode()


def tail(stream: str, type: str, version: int, source: str | None, correlation_id: str | None, causation_id: str | None) -> bytes:
    """The fields of the body after the id, as it holds them (the array closed). The same
    for every event of a write to one stream with one type: made once for them all."""
    if source is None and correlation_id is None and causation_id is None:  # most events
        rest = ",null,null,null]"
    else:
        rest = (
            f",{'null' if source is None else _quote(source)},"
            f"{'null' if correlation_id is None else _quote(correlation_id)},"
            f"{'null' if causation_id is None else _quote(causation_id)}]"
        )
    return f",{_quote(stream)},{_quote(type)},{int(version)}{rest}".encode()


def fixed_from(quoted_id: bytes, tail: bytes, data: str, metadata: str) -> bytes:
    "``fixed`` of an event whose id and tail are encoded already (``quoted_id``, ``tail``)."
    return b"".join((
        b",",
        quoted_id,
        tail,
        EMPTY_DIGEST if data == "{}" else sha256(data.encode()).digest(),
        EMPTY_DIGEST if metadata == "{}" else METADATA_DIGESTS[metadata.encode()],
    ))


def link(previous: bytes, position: int, revision: int, timestamp: bytes, fixed: bytes) -> bytes:
    "The hash of an event: ``timestamp`` as ``stamp`` made it, ``fixed`` the rest of its body."
    return sha256(b"%s[%d,%d,%s%s" % (previous, position, revision, timestamp, fixed)).digest()


def body(
    position: int, revision: int, timestamp: str, id: str, stream: str, type: str, version: int,
    source: str | None, correlation_id: str | None, causation_id: str | None, data_sha256: bytes, metadata_sha256: bytes,
) -> bytes:
    "The body of an event, as documented (the reference the fast paths agree with)."
    import json

    fields = [position, revision, timestamp, id, stream, type, version, source, correlation_id, causation_id]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode() + data_sha256 + metadata_sha256


# -- the chain as SQL reads it ---------------------------------------------------------------

# The body without its digests, built by SQLite (as bytes: no Python per field).
BODY_SQL = (
    "CAST(json_array(position, revision, timestamp, id, stream, type, version, source, correlation_id, causation_id) AS BLOB)"
)


def redacted(conn, schema: str = "main") -> dict[int, tuple[bytes, bytes]]:
    "The redacted events: position -> (SHA-256 of the data, of the metadata) before the redaction."
    return {
        row[0]: (row[1], row[2])
        for row in conn.execute(f"SELECT position, data_sha256, metadata_sha256 FROM {schema}.evt_redacted_events")
    }


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
    metadata_digests = Digests()
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
                data_sha, metadata_sha = sha256(data).digest(), metadata_digests[metadata]
            previous = sha256(b"".join((previous, fixed_part, data_sha, metadata_sha))).digest()
            hashes.append((previous, position))
        conn.executemany(update, hashes)
        count += len(rows)
        start = rows[-1][0] + 1
