"""sqlite3's errors, translated into evt's in one place."""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from typing import Iterator

from ..errors import NotAStore, StoreLocked, StoreReadOnly, StoreUnavailable


@contextmanager
def translate_errors(path: str) -> Iterator[None]:
    "Turn sqlite3's errors into evt's (integrity errors and the append-only trigger pass through)."
    try:
        yield
    except sqlite3.DatabaseError as e:
        message = str(e)
        if isinstance(e, sqlite3.IntegrityError) or "append-only" in message:
            raise
        if "locked" in message or "busy" in message:
            raise StoreLocked(f"{path} is locked by another process (waited past the busy timeout); try again, or raise EVT_BUSY_TIMEOUT") from e
        if "readonly" in message or "read-only" in message:
            raise StoreReadOnly(f"{path} is read-only: {message}") from e
        if "not a database" in message or "malformed" in message:
            raise NotAStore(f"{path} is not an evt store ({message})") from e
        if "unable to open" in message:
            if os.path.isdir(path):
                raise StoreUnavailable(f"{path} is a folder, not a store file (name the file in it, e.g. {os.path.join(path, 'events.db')})") from e
            raise StoreUnavailable(f"cannot open {path}: {message}") from e
        raise StoreUnavailable(f"{path}: {message}") from e
