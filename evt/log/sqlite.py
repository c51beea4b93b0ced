"""sqlite3 in one place: connections to paths that stay paths, and errors translated into evt's."""

from __future__ import annotations

import os
import sqlite3
from typing import Any


def uri(path: str | os.PathLike, **params: str) -> str:
    """A ``file:`` URI that names exactly ``path``, with query ``params`` (``mode="ro"``).

    SQLite reads a name that starts with ``file:`` as a URI even when the caller does not
    ask for one (builds with SQLITE_USE_URI, Debian's among them), so a file called
    ``file:events.db`` or ``x.db?mode=memory`` is only ever reached through a quoted URI.
    A relative path stays relative (no current folder is needed).
    """
    from urllib.parse import quote, urlencode

    raw = os.fsencode(path)  # a name that is not UTF-8 keeps its bytes
    if raw.startswith(b"/"):
        text = "file://" + quote(raw, safe="/")  # an empty authority, then the path
    else:
        text = "file:" + quote(b"./" + raw, safe="/")
    return text + ("?" + urlencode(params) if params else "")


def connect(path: str | os.PathLike, *, mode: str | None = None, immutable: bool = False, **options: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` to a path, never read as a URI; ``mode="ro"`` and ``immutable`` as SQLite has them."""
    params = {}
    if mode is not None:
        params["mode"] = mode
    if immutable:
        params["immutable"] = "1"
    return sqlite3.connect(uri(path, **params), uri=True, **options)

from ..errors import (
    NotAStore,
    StoreCorrupted,
    StoreLocked,
    StoreReadOnly,
    StoreUnavailable,
)

SQLITE_BUSY = 5  # "database is locked": another connection holds the lock
SQLITE_CORRUPT = 11  # "database disk image is malformed"
SQLITE_NOTADB = 26  # "file is not a database"
# What the file or its surroundings did, never the SQL run: no permission, busy, locked,
# read-only, an I/O error, damaged, full, cannot be opened, not a database.
ENVIRONMENT = frozenset({3, SQLITE_BUSY, 6, 8, 10, SQLITE_CORRUPT, 13, 14, SQLITE_NOTADB})


def primary_code(e: sqlite3.Error) -> int:
    "A sqlite3 error's primary result code (SQLITE_BUSY for SQLITE_BUSY_RECOVERY too; 0 if it has none)."
    return (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF


def corrupted(path: str, detail: str) -> StoreCorrupted:
    "The error for a damaged store: what SQLite found, and what to do (never write more into it)."
    import shlex

    return StoreCorrupted(
        f"{path} is corrupted ({detail}): check it with "
        f"sqlite3 {shlex.quote(path)} 'PRAGMA integrity_check' and restore a backup"
    )


class translate_errors:
    """``with translate_errors(path):`` turns sqlite3's errors into evt's (integrity errors
    and the append-only trigger pass through). A class, not a generator: every append
    passes through several of these."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if kind is not None and issubclass(kind, sqlite3.DatabaseError):
            translated = _translated(self.path, error)
            if translated is not error:
                raise translated from error
        return False  # anything else (and what passes through) goes on as it was


class translate_environment(translate_errors):
    """``translate_errors`` for what the file or its surroundings did (read-only, full,
    locked, damaged), around SQL evt does not write itself (a caller's transaction):
    errors in the SQL pass through as sqlite3 raised them."""

    __slots__ = ()

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if kind is not None and issubclass(kind, sqlite3.DatabaseError) and primary_code(error) in ENVIRONMENT:
            return super().__exit__(kind, error, traceback)
        return False


def _translated(path: str, e: sqlite3.DatabaseError) -> BaseException:
    "evt's error for a sqlite3 error (the error itself for those that pass through)."
    message = str(e)
    code = primary_code(e)
    if isinstance(e, sqlite3.IntegrityError) or "append-only" in message:
        return e
    if code == SQLITE_CORRUPT or "malformed" in message:
        return corrupted(path, message)
    if message.startswith("Could not decode to UTF-8"):  # Python's message quotes the row's SQL: not useful
        return corrupted(path, "a stored text is not valid UTF-8")
    if code == SQLITE_NOTADB or "not a database" in message:
        return NotAStore(
            f"{path} is not an evt store: not a SQLite database, or one whose header is corrupted "
            "(if it was an evt store, restore a backup)"
        )
    if "locked" in message or "busy" in message:
        return StoreLocked(f"{path} is locked by another process (waited past the busy timeout); try again, or raise EVT_BUSY_TIMEOUT")
    if "readonly" in message or "read-only" in message:
        return StoreReadOnly(f"{path} is read-only: {message}")
    if "unable to open" in message:
        if os.path.isdir(path):
            return StoreUnavailable(f"{path} is a folder, not a store file (name the file in it, e.g. {os.path.join(path, 'events.db')})")
        return StoreUnavailable(f"cannot open {path}: {message}")
    return StoreUnavailable(f"{path}: {message}")
