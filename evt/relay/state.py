"""What relays and ingests keep in the store: positions and bad messages.

A relay's position is a checkpoint like any consumer's (``evt_checkpoints``, kind
``relay``), so ``evt projections`` lists it; a message ingest could not store is a dead
letter (``evt_dead_letters``, with no position and the message as its payload), so
``evt dlq`` lists, shows, retries and discards it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

from ..log import checkpoints
from ..log.sqlite import translate_errors
from ..log.store import Store
from ..log.timestamps import now
from ..processing import deadletters

KIND = "relay"


def load_position(store: Store, name: str) -> int:
    "The last position this relay has delivered (0 when it has never run)."
    with translate_errors(store.path):
        return checkpoints.load(store.conn, name) or 0


def save_position(store: Store, name: str, position: int) -> None:
    """Record the relay's position; call it inside ``store.transaction()``.

    It only moves forward: a relay running under the same name as another that got
    further is a Conflict (exit 3), never a position moved back."""
    checkpoints.save(store.conn, name, KIND, position)


class RelayLock:
    """One relay under a name at a time: an exclusive ``flock`` held for the whole run.

    The lock is a file beside the store (``events.db-relay-<hash of the name>.lock``),
    there only while a relay runs (or after one was killed; the next one removes it). A
    second relay under the same name waits for the first to end — or to be killed: the
    kernel lets the lock go with its process — and then goes on from the position the
    first saved, so two relays never publish the same events at once (run two with
    ``--follow``: the second is a standby). Where no lock file can be made (a read-only
    folder), relays run unguarded; the store still refuses a position saved below the
    stored one (exit 3).
    """

    def __init__(self, store_path: str, name: str, on_wait: Callable[[str], None] | None = None):
        self.name = name
        self.on_wait = on_wait
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.path = None if store_path == ":memory:" else f"{store_path}-relay-{digest}.lock"
        self.fd: int | None = None

    def __enter__(self) -> "RelayLock":
        if self.path is None:
            return self
        told = False
        while True:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                return self
            try:
                if not self._lock(told):
                    return self  # no flock here: unguarded
                told = True
                if self._still_there():
                    return self
            except BaseException:
                self._close()
                raise
            self._close()  # the holder removed the file as it let go: queue on the one there now

    def _lock(self, told: bool) -> bool:
        import fcntl

        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.on_wait is not None and not told:
                    self.on_wait(f"relay {self.name!r} is running in another process; waiting for it to end (Ctrl-C to give up)")
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            self._close()
            return False
        return True

    def _still_there(self) -> bool:
        "Whether the file locked is the one at the path (not one removed by the holder before it let go)."
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # before letting go, so whoever waits on it queues again on a new one
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def record_bad_message(store: Store, consumer: str, payload: str, error: str) -> None:
    "Park a message that could not be stored; the same message again counts one more attempt."
    with translate_errors(store.path), store.transaction():
        deadletters.record_message(store, consumer, payload, error, now())
