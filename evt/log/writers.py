"""The writers' queue: who writes next to a SQLite file, across threads and processes.

SQLite lets one writer at a time hold a file's write lock; the others wait in its busy
handler, which sleeps and tries again, so whoever tries at the right moment wins — not
the writer that has waited longest — and a writer can be refused after the busy timeout
while others got through many times. evt writers queue before they ask SQLite: each
takes an exclusive ``flock`` on a lock file beside the store (``events.db-lock``) and
only then begins its transaction, so SQLite's own lock is free when they get there.

- Waiting costs nothing: a blocked ``flock`` sleeps in the kernel until the holder lets
  go, and the kernel wakes waiters in the order they came (roughly: a writer arriving
  just as the lock is released may get it first).
- Each thread has its own descriptor of the lock file, so threads of one process queue
  exactly like processes do.
- A writer killed with ``kill -9`` while holding or waiting gives its place up at once:
  the kernel drops the lock with the process. The lock file itself holds no state and
  may stay (it is not the store; deleting it while writers run costs fairness, never
  correctness, since SQLite's lock still serialises the transactions).
- The busy timeout bounds the whole wait: a writer that has not got its turn by then is
  refused (``StoreLocked``, exit 6) and leaves the queue.

Writers that do not queue (another program with the ``sqlite3`` shell, an older evt)
are still serialised by SQLite's lock; evt then waits for them in SQLite's busy handler,
for what is left of the busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from typing import Callable

from ..errors import StoreLocked
from .sqlite import SQLITE_BUSY, primary_code, translate_errors

LOCK_SUFFIX = "-lock"


def locked_message(path: str) -> str:
    return f"{path} is locked by another process (waited past the busy timeout); try again, or raise EVT_BUSY_TIMEOUT"


class WriterQueue:
    """Writers of one SQLite file take turns: ``with queue.turn(timeout): …``.

    Two levels: the threads of this process line up in a first-come, first-served lock
    (handed from one to the next, so none barges in), and the one at the front takes the
    file lock, where processes line up. ``path`` is the store's file; None for a store
    in memory (its writers are this process's threads). A thread that holds the turn may
    take it again (nested); it is given back when the outermost turn ends.
    """

    def __init__(self, path: str | None, *, create: bool = True, mode: int | None = None):
        self.path = path
        self.lock_path = None if path is None else path + LOCK_SUFFIX
        self.create = create  # False: a reader's occasional write (a snapshot) never makes the lock file
        self.mode = mode
        self._threads = FifoLock()
        self._local = threading.local()  # each thread's nesting depth
        self._descriptor: Descriptor | None = None  # this process's descriptor of the lock file
        self._flock = path is not None  # False once flock proved unavailable here

    def held(self) -> bool:
        "Whether the calling thread holds the turn."
        return getattr(self._local, "depth", 0) > 0

    def turn(self, timeout: float) -> "_Turn":
        "A context manager holding this thread's turn; its ``waited`` is the seconds spent queueing."
        return _Turn(self, timeout)

    def acquire(self, timeout: float) -> float:
        "Wait for this thread's turn (at most ``timeout`` seconds); return the seconds waited."
        waited = self.join(timeout, None)
        assert waited is not None
        return waited

    def join(self, timeout: float, request: object) -> float | None:
        """Wait for this thread's turn and return the seconds waited — or, for a ``request``,
        return None once the thread holding the turn has carried it out (see ``take``)."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            return 0.0
        began = time.monotonic()
        queued = not self._threads.try_acquire()  # the fast path: nobody in line
        if queued:
            held = self._threads.join(timeout, request)
            if held is None:
                raise StoreLocked(locked_message(self.path or ":memory:"))
            if not held:
                return None
        try:
            if self._flock and self._acquire_file(timeout - (time.monotonic() - began)):
                queued = True
        except BaseException:
            self._threads.release()
            raise
        self._local.depth = 1
        return time.monotonic() - began if queued else 0.0

    def take(self, limit: int, size) -> list:
        "Requests waiting behind this thread's turn, for it to carry out (``FifoLock.take``)."
        return self._threads.take(limit, size)

    @staticmethod
    def finish(taken: list) -> None:
        FifoLock.finish(taken)

    def release(self) -> None:
        depth = self._local.depth - 1
        self._local.depth = depth
        if depth:
            return
        if self._descriptor is not None:
            self._descriptor.unlock()
        self._threads.release()

    def after_fork(self) -> None:
        "In a child process: a line of its own, and a descriptor of its own (the parent's lock is the parent's)."
        self._threads = FifoLock()
        self._local = threading.local()
        if self._descriptor is not None:
            self._descriptor.close()  # this copy only: the parent's descriptor keeps its lock
            self._descriptor = None

    def close(self) -> None:
        "Close the descriptor of the lock file (the Store is closing)."
        if self._descriptor is not None:
            self._descriptor.close()
            self._descriptor = None

    # -- the lock file, held by the thread at the front of this process's line ------

    def _open_descriptor(self) -> "Descriptor | None":
        if self._descriptor is None:
            try:
                flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if self.create else 0)
                fd = os.open(self.lock_path, flags, 0o644 if self.mode is None else self.mode)
            except OSError:  # a read-only folder, say: SQLite's lock alone will serialise
                return None
            self._descriptor = Descriptor(fd)
        return self._descriptor

    def _acquire_file(self, timeout: float) -> bool:
        "Take the file lock; whether that meant waiting for another process."
        import fcntl

        held = self._open_descriptor()
        if held is None:
            return False
        try:
            fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            pass
        except OSError:  # a file system without flock: SQLite's lock alone will serialise
            self._give_up_flock()
            return False
        self._wait(held, timeout)
        return True

    def _wait(self, held: "Descriptor", timeout: float) -> None:
        """Block in the kernel for the lock, on a helper thread so the wait can end at the timeout.

        If the timeout comes first, the helper keeps the descriptor (the next writer opens
        a new one) and closes it, letting the lock go, as soon as it gets it.
        """
        import fcntl

        got = _new_baton()  # released by the helper when the lock is ours
        got.acquire()
        state = {"abandoned": False, "got": False, "error": None}
        guard = threading.Lock()

        def wait_in_kernel() -> None:
            try:
                fcntl.flock(held.fd, fcntl.LOCK_EX)
            except OSError as e:
                state["error"] = e
            with guard:
                if not state["abandoned"]:
                    state["got"] = True
                    got.release()
                    return
            held.close()  # nobody wants the turn any more

        run_on_helper(wait_in_kernel)
        try:
            arrived = got.acquire(timeout=max(timeout, 0))
        except BaseException:  # Ctrl-C while queueing
            if not self._abandon(guard, state):
                held.unlock()  # the turn came meanwhile: give it back, or other processes would wait for this one
            raise
        if not arrived and self._abandon(guard, state):
            raise StoreLocked(locked_message(self.path))
        if state["error"] is not None:  # flock failed outright: let SQLite serialise
            self._give_up_flock()

    def _abandon(self, guard: threading.Lock, state: dict) -> bool:
        "Leave the queue; False if the turn came meanwhile (then it is held)."
        with guard:
            if state["got"]:
                return False
            state["abandoned"] = True
        self._descriptor = None  # the helper thread owns it now
        return True

    def _give_up_flock(self) -> None:
        self._flock = False
        if self._descriptor is not None:
            self._descriptor.close()
            self._descriptor = None


_new_baton = threading.Lock  # what a queued writer waits on (a name tests can replace)


class _Helper:
    """A daemon thread that runs one job at a time, kept idle between jobs: a writer that
    queues behind another process blocks in ``flock`` on a helper (so that its own wait
    can end at the timeout), and starting a thread for every wait would cost more than
    a short transaction."""

    __slots__ = ("job", "ready")

    def __init__(self) -> None:
        self.job: Callable[[], None] | None = None
        self.ready = threading.Lock()  # released when a job is set
        self.ready.acquire()
        threading.Thread(target=self._run, name="evt-writer-queue", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.ready.acquire()
            job, self.job = self.job, None
            try:
                job()
            except Exception:  # noqa: BLE001 - a job reports through its own state; the helper goes on
                pass
            job = None  # holds nothing of the last job while idle
            with _HELPERS_LOCK:
                if len(_IDLE_HELPERS) >= MAX_IDLE_HELPERS:
                    return
                _IDLE_HELPERS.append(self)

    def start(self, job: Callable[[], None]) -> None:
        self.job = job
        self.ready.release()


MAX_IDLE_HELPERS = 4
_IDLE_HELPERS: list[_Helper] = []
_HELPERS_LOCK = threading.Lock()


def run_on_helper(job: Callable[[], None]) -> None:
    "Run ``job`` on an idle helper thread (a new one if none is idle); return at once."
    with _HELPERS_LOCK:
        helper = _IDLE_HELPERS.pop() if _IDLE_HELPERS else None
    if helper is None:
        helper = _Helper()
    helper.start(job)


def _helpers_after_fork() -> None:
    "A child has none of its parent's threads: no idle helpers, and a lock nobody holds."
    global _HELPERS_LOCK
    _IDLE_HELPERS.clear()
    _HELPERS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_helpers_after_fork)


class FifoLock:
    """A lock handed to its waiters in the order they came (``threading.Lock`` makes no such promise).

    A waiter may bring a request that whoever holds the lock can carry out for it
    (``join``): the holder takes the requests at the front of the line (``take``), does
    them with its own, then ``finish``-es them, which wakes their waiters with the work
    done, without their ever holding the lock.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[_Waiter] = deque()

    def acquire(self, timeout: float) -> bool:
        "Hold the lock (True), or give up after ``timeout`` seconds (False)."
        return self.join(timeout, None) is not None

    def try_acquire(self) -> bool:
        "Hold the lock if nobody holds it (True), without waiting."
        with self._mutex:
            if self._held:
                return False
            self._held = True
            return True

    def join(self, timeout: float, request: object) -> bool | None:
        """Hold the lock (True), have ``request`` carried out by the holder (False), or give up (None)."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            waiter = _Waiter(request)
            self._waiters.append(waiter)
        try:
            arrived = waiter.baton.acquire(timeout=max(timeout, 0))
        except BaseException:  # Ctrl-C while waiting
            if not self._leave(waiter):
                waiter.baton.acquire()
                if not waiter.taken:
                    self.release()  # it was handed over meanwhile: pass it on
            raise
        if not arrived:
            if self._leave(waiter):
                return None
            waiter.baton.acquire()  # handed over, or taken and being carried out: not for long
        return not waiter.taken

    def _leave(self, waiter: "_Waiter") -> bool:
        "Leave the line; False if it is too late (the lock was handed over, or the request taken)."
        with self._mutex:
            try:
                self._waiters.remove(waiter)
                return True
            except ValueError:
                return False

    def take(self, limit: int, size) -> list:
        "The requests at the front of the line (up to ``limit`` by ``size(request)``), for the holder to carry out."
        taken, total = [], 0
        with self._mutex:
            while self._waiters and self._waiters[0].request is not None:
                request = self._waiters[0].request
                total += size(request)
                if taken and total > limit:
                    break
                waiter = self._waiters.popleft()
                waiter.taken = True
                taken.append(waiter)
        return taken

    @staticmethod
    def finish(taken: list) -> None:
        "Wake the waiters whose requests were carried out (their results set)."
        for waiter in taken:
            waiter.baton.release()

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().baton.release()  # the next in line holds it now
            else:
                self._held = False


class _Waiter:
    __slots__ = ("baton", "request", "taken")

    def __init__(self, request: object):
        self.baton = threading.Lock()
        self.baton.acquire()
        self.request = request
        self.taken = False


class Descriptor:
    "An open descriptor of the lock file (closing it lets the lock go)."

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def unlock(self) -> None:
        import fcntl

        if self.fd < 0:  # closed with the store: nothing is held
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    __del__ = close


# -- write transactions that queue ----------------------------------------------------------


# A Store's writer connection waits for nothing in SQLite's busy handler: its writers
# have queued for the turn already, and ``begin_immediate`` sets the wait when it must.
WRITER_BUSY_TIMEOUT = 0.0


def begin(conn, queue: WriterQueue, path: str, timeout: float, busy_timeout: float) -> None:
    """Queue for the turn, then ``BEGIN IMMEDIATE`` on ``conn``; the whole wait is bounded by ``timeout``.

    On failure the turn is given back. Pair with ``commit`` or ``rollback``.
    """
    waited = queue.acquire(timeout)
    try:
        begin_immediate(conn, path, timeout, busy_timeout, waited)
    except BaseException:
        queue.release()
        raise


def begin_immediate(conn, path: str, timeout: float, busy_timeout: float, waited: float) -> None:
    """``BEGIN IMMEDIATE``, waiting for SQLite's lock no longer than what is left of ``timeout``.

    ``busy_timeout`` is the connection's own wait for SQLite's lock, restored after; 0
    for a Store's writer connection (``WRITER_BUSY_TIMEOUT``), which begins at once
    however long its turn took to come: a writer that holds the turn finds SQLite's lock
    free unless a writer that does not queue holds it, and only then is the wait set
    (``PRAGMA busy_timeout``, two statements more) to what is left.
    """
    with translate_errors(path):
        if busy_timeout == WRITER_BUSY_TIMEOUT or (waited == 0 and timeout == busy_timeout):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if busy_timeout != WRITER_BUSY_TIMEOUT or primary_code(e) != SQLITE_BUSY or timeout - waited <= 0:
                    raise
        conn.execute(f"PRAGMA busy_timeout = {max(0, int((timeout - waited) * 1000))}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")


def commit(conn, queue: WriterQueue, path: str) -> None:
    "COMMIT and give the turn back (after a failed COMMIT, roll back: nothing is written)."
    try:
        with translate_errors(path):
            conn.execute("COMMIT")
    except BaseException:
        rollback(conn, queue)
        raise
    queue.release()


def rollback(conn, queue: WriterQueue) -> None:
    "Undo the open transaction, if any, and give the turn back."
    try:
        rollback_only(conn)
    finally:
        queue.release()


def rollback_only(conn) -> None:
    "Undo the open transaction, if any."
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:  # closed already (Ctrl-C came between two steps), or the file went away
        pass


class _Turn:
    __slots__ = ("queue", "timeout", "waited")

    def __init__(self, queue: WriterQueue, timeout: float):
        self.queue = queue
        self.timeout = timeout
        self.waited = 0.0

    def __enter__(self) -> "_Turn":
        self.waited = self.queue.acquire(self.timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.release()

