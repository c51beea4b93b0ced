"""``evt verify``: is the log what evt appended? Read-only, whole-store.

The walk reads every event of the range in one ``SELECT`` (SQLite builds each body's
encoded fields, ``chain.BODY_SQL``; Python hashes) and stops at the first position where
something breaks:

- a position is missing (a row was deleted): positions are gapless from 1;
- the event has no hash, or not 32 bytes of one;
- its hash does not chain: SHA-256(the hash before it, its body) is not the stored hash —
  a changed field or data byte, swapped rows, a hash recomputed by hand for one event
  (the next one's link breaks);
- a stream's revisions skip, repeat or go back.

Besides the walk: ``PRAGMA integrity_check`` (on another connection, in parallel: SQLite
runs it without Python's lock) and the append-only triggers, which must be there exactly
as evt creates them. A redacted event (``evt_redacted_events``) is chained with the
digests it had before the redaction, and counted.

With ``expect_head`` (a hash printed by an earlier verify), the log must also hold an
event with exactly that hash among the positions verified: as every hash chains all
before it, nothing before that head was rewritten, recomputed chain or not.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from ..errors import StoreCorrupted, StoreTooOld, UsageError, VerificationFailed
from ..log import chain, migrations
from ..log.sqlite import translate_errors

if TYPE_CHECKING:
    from ..log.store import Store

CHAIN_MIGRATION = "_event_hashes"  # the migration that added the chain (by name: numbers may move)
_HEX = re.compile(r"[0-9a-fA-F]{64}")


class VerifyReport:
    """What ``verify`` found. ``problem`` is (position, what broke) — position 0 for what
    belongs to no event (the file, the triggers, an expected head not found) — or None."""

    __slots__ = ("path", "start", "head", "head_hash", "events", "redacted", "problem", "expected_at")

    def __init__(self, path: str, start: int):
        self.path = path
        self.start = start
        self.head = start - 1
        self.head_hash: str | None = None
        self.events = 0
        self.redacted = 0
        self.problem: tuple[int, str] | None = None
        self.expected_at: int | None = None  # where the expected head hash was found

    @property
    def ok(self) -> bool:
        return self.problem is None

    def message(self) -> str:
        "The problem as one line (for the CLI and VerificationFailed)."
        if self.problem is None:
            return "verified"
        position, what = self.problem
        return f"verification failed at position {position}: {what}" if position else f"verification failed: {what}"

    def to_dict(self) -> dict[str, Any]:
        result = {
            "path": self.path,
            "verified": self.ok,
            "head": self.head,
            "headHash": self.head_hash,
            "from": self.start,
            "events": self.events,
            "redacted": self.redacted,
        }
        if self.expected_at is not None:
            result["expectedHead"] = self.expected_at
        if self.problem is not None:
            result["problem"] = {"position": self.problem[0], "what": self.problem[1]}
        return result

    def check(self) -> "VerifyReport":
        "Self, or VerificationFailed (exit 8) with the problem as its message."
        if self.problem is not None:
            raise VerificationFailed(self.message())
        return self


def parse_hash(text: str | bytes, option: str = "--expect-head") -> bytes:
    "A head hash as given (64 hex characters, or 32 bytes); UsageError otherwise."
    if isinstance(text, bytes) and len(text) == 32:
        return text
    if isinstance(text, str) and _HEX.fullmatch(text.strip()):
        return bytes.fromhex(text.strip())
    raise UsageError(f"{option} takes the 64 hex characters evt verify printed as headHash, not {str(text)[:80]!r}")


def verify(target: "Store | str | os.PathLike", *, from_position: int = 1, expect_head: str | bytes | None = None) -> VerifyReport:
    """Verify the store (a ``Store``, or the path of one, opened read-only and never
    migrated) from ``from_position`` to its head; see the module's description.

    Never writes. Raises StoreTooOld for a store from before the hash chain, UsageError for
    a bad ``expect_head`` or a ``from_position`` below 1.
    """
    from ..log.store import Store

    expected = None if expect_head is None else parse_hash(expect_head)
    if from_position < 1:
        raise UsageError(f"--from must be 1 or more, not {from_position}")
    if isinstance(target, Store):
        return _verify(target, from_position, expected)
    with Store(target, create=False, migrate=False, check=False) as store:
        return _verify(store, from_position, expected)


def _verify(store: "Store", start: int, expected: bytes | None) -> VerifyReport:
    needed = migrations.format_of(CHAIN_MIGRATION)
    version = store.format()
    if version < needed:
        raise StoreTooOld(
            f"{store.path} has store format {version}, from before the hash chain (format {needed}); evt verify never "
            "writes: any other evt command (evt stats, say) upgrades it and computes its hashes, then verify it"
        )
    report = VerifyReport(store.path, start)
    integrity = _Integrity(store)
    conn = store.conn
    own = not conn.in_transaction
    try:
        with translate_errors(store.path):
            if own:
                conn.execute("BEGIN")  # one snapshot of the log for the whole walk
            try:
                _walk(conn, report)
                if report.ok:
                    _check_triggers(conn, report)
                if report.ok and expected is not None:
                    _check_expected(conn, report, expected)
            finally:
                if own:
                    conn.execute("ROLLBACK")
    except StoreCorrupted as e:  # a page the walk read is damaged: integrity_check names it
        integrity.wait()
        if integrity.problem is None:
            integrity.problem = str(e)
    integrity.wait()
    if integrity.problem is not None:  # a damaged file comes first: nothing read from it can be trusted
        report.problem = (0, f"the file is damaged ({integrity.problem})")
    return report


class _Integrity:
    "``PRAGMA integrity_check`` on a thread of its own (its own connection to the file)."

    def __init__(self, store: "Store"):
        self.store = store
        self.problem: str | None = None
        self._thread: threading.Thread | None = None
        if store.path == ":memory:":
            self._run(store.conn)
        else:
            self._thread = threading.Thread(target=self._in_thread, name="evt-verify-integrity", daemon=True)
            self._thread.start()

    def _in_thread(self) -> None:
        try:
            conn = self.store.conn  # this thread's own connection
        except Exception as e:
            self.problem = str(e)
            return
        try:
            self._run(conn)
        finally:
            # Closed here: once the thread is gone, Store.close no longer reaches it, and a
            # connection left to the garbage collector keeps the file open meanwhile (its
            # WAL then outlives every other connection to the file).
            conn.close()

    def _run(self, conn) -> None:
        try:
            rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        except Exception as e:  # the file is too damaged to check
            self.problem = f"PRAGMA integrity_check: {' '.join(str(e).split())}"
            return
        if rows != ["ok"]:
            self.problem = f"PRAGMA integrity_check: {'; '.join(' '.join(r.split()) for r in rows[:3])}"

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()


WALK = (
    f"SELECT position, revision, CAST(stream AS BLOB), {chain.BODY_SQL}, CAST(data AS BLOB), CAST(metadata AS BLOB), hash "
    "FROM events WHERE position >= ? ORDER BY position"
)


def _walk(conn, report: VerifyReport) -> None:
    "The hash chain, positions and revisions from ``report.start`` on: the first problem goes in ``report``."
    start = report.start
    previous = chain.GENESIS
    if start > 1:
        row = conn.execute("SELECT hash FROM events WHERE position = ?", (start - 1,)).fetchone()
        if row is None:
            report.problem = (start - 1, _missing(conn, start - 1))
            return
        previous = row[0]
        if not _is_hash(previous):
            report.problem = (start - 1, _bad_hash(previous))
            return
    marks = chain.redacted(conn)
    revisions: dict[str, int] = {}  # stream -> the revision its next event must have
    next_revision = revisions.get
    hash_of, join, metadata_digests = sha256, b"".join, chain.Digests()
    expected = start
    redacted = 0
    rows = conn.execute(WALK, (start,))
    while True:
        try:
            row = next(rows, None)
        except sqlite3.OperationalError as e:  # json_array refuses a BLOB: not what evt stores
            if "BLOB" not in str(e):
                raise
            report.problem = _blob(conn, expected)
            break
        if row is None:
            break
        position, revision, stream, fixed, data, metadata, stored = row
        if position != expected:
            report.problem = (expected, _missing(conn, expected))
            break
        if marks and position in marks:
            data_sha, metadata_sha = marks[position]
            redacted += 1
        else:
            data_sha = hash_of(data).digest()
            metadata_sha = metadata_digests[metadata]
        computed = hash_of(join((previous, fixed, data_sha, metadata_sha))).digest()
        if computed != stored:
            report.problem = (position, _bad_hash(stored) if not _is_hash(stored) else _broken_link(position))
            break
        if next_revision(stream, 1) != revision:
            last = revisions[stream] - 1 if stream in revisions else 0 if start == 1 else _revision_before(conn, stream, start)
            if revision != last + 1:
                name = stream.decode(errors="replace") if isinstance(stream, bytes) else stream
                report.problem = (position, f"stream {name!r} goes from revision {last} to {revision}")
                break
        revisions[stream] = revision + 1
        previous = computed
        expected += 1
    report.events = expected - start
    report.head = expected - 1
    report.redacted = redacted
    if report.ok:
        report.head_hash = previous.hex() if report.head >= 1 else None


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def _bad_hash(value: object) -> str:
    if value is None:
        return "the event has no hash"
    return f"its hash is not 32 bytes of SHA-256 ({type(value).__name__} of length {len(value) if isinstance(value, (bytes, str)) else '-'})"


def _broken_link(position: int) -> str:
    if position == 1:
        return "its hash does not match the event (the event was changed)"
    return f"its hash does not match the event and the hash of position {position - 1} (the event was changed, or an earlier hash recomputed)"


def _missing(conn, position: int) -> str:
    after = conn.execute("SELECT min(position) FROM events WHERE position > ?", (position,)).fetchone()[0]
    if after is None:
        return "the event is missing"
    return f"the event is missing (the log goes on at position {after}): it was deleted"


def _revision_before(conn, stream: bytes, start: int) -> int:
    "The stream's revision before position ``start`` (where a ranged walk begins), as stored."
    row = conn.execute(
        "SELECT max(revision) FROM events WHERE stream = CAST(? AS TEXT) AND position < ?", (stream, start)
    ).fetchone()
    return row[0] or 0


_TEXTS = ("timestamp", "id", "stream", "type", "source", "correlation_id", "causation_id")


def _blob(conn, start: int) -> tuple[int, str]:
    "The first event from ``start`` holding a BLOB where evt stores text."
    condition = " OR ".join(f"typeof({c}) = 'blob'" for c in _TEXTS)
    position = conn.execute(f"SELECT min(position) FROM events WHERE position >= ? AND ({condition})", (start,)).fetchone()[0]
    kinds = conn.execute(f"SELECT {', '.join(f'typeof({c})' for c in _TEXTS)} FROM events WHERE position = ?", (position,)).fetchone()
    column = next(c for c, kind in zip(_TEXTS, kinds) if kind == "blob")
    return position, f"{column} holds a BLOB, where evt stores text"


def _check_triggers(conn, report: VerifyReport) -> None:
    "The append-only triggers, exactly as evt creates them."
    stored = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'events'"))
    for name, sql in migrations.APPEND_ONLY_TRIGGERS.items():
        if name not in stored:
            report.problem = (0, f"the append-only trigger {name} is missing (events can be changed)")
            return
        if stored[name] != sql:
            report.problem = (0, f"the append-only trigger {name} is not the one evt creates (it was altered)")
            return


def _check_expected(conn, report: VerifyReport, expected: bytes) -> None:
    "The expected head is the hash of a verified event (every stored hash in the range is, now)."
    row = conn.execute(
        "SELECT position FROM events WHERE hash = ? AND position >= ? AND position <= ? ORDER BY position LIMIT 1",
        (expected, report.start, report.head),
    ).fetchone()
    if row is None:
        report.problem = (
            0,
            f"no event from position {report.start} to {report.head} has the expected head hash {expected.hex()}: "
            "the log up to that head was rewritten or cut short (or it is another log)",
        )
        return
    report.expected_at = row[0]
