"""SQLite files evt writes under a temporary name and publishes once they are complete.

A file being built is named ``<final name><marker><pid>`` (``events.db.creating-123``,
``new.db.tmp-123``); whoever builds one next removes those whose process is gone, so a
run killed mid-way (``kill -9``, a power cut) leaves nothing that needs cleaning by hand.
"""

from __future__ import annotations

import glob
import os
import stat

from ..errors import Conflict, StoreReadOnly, UsageError

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-lock")  # -lock: the writers' queue (evt.log.writers)


def remove_sqlite_files(path: str) -> None:
    """Remove a SQLite file with its journals (what is missing already is fine).

    On a read-only file system removing a file that is not there fails (EROFS) rather than
    finding nothing; only a file that is there and stays is an error.
    """
    for suffix in SQLITE_SUFFIXES:
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
        except OSError:
            if os.path.lexists(path + suffix):
                raise


def temporary_name(final: str, marker: str = ".tmp-") -> str:
    "Where this process builds ``final`` until it is complete."
    return f"{final}{marker}{os.getpid()}"


def remove_abandoned(final_pattern: str, marker: str = ".tmp-") -> None:
    """Remove the files of builders that were killed (their process is gone), and this process's own.

    ``final_pattern`` is a glob of final names (``glob.escape`` a plain name).
    """
    for path in glob.glob(final_pattern + glob.escape(marker) + "*"):
        pid = path.rsplit(marker, 1)[1]
        for suffix in SQLITE_SUFFIXES[1:]:  # a journal left without its file (killed while removing them)
            if suffix and pid.endswith(suffix):
                pid, path = pid[: -len(suffix)], path[: -len(suffix)]
                break
        if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
            remove_sqlite_files(path)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process (PermissionError): alive
        return True
    return True


def publish(built: str, final: str) -> None:
    """Give a complete file its final name, durably, never over a file that is there (FileExistsError).

    The file's content is synced before it gets the name and the folder after, so a power
    cut leaves either no file under ``final`` or the whole of it.
    """
    sync_file(built)
    try:
        os.link(built, final)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.lexists(final):
            raise FileExistsError(final) from None
        os.replace(built, final)
    sync_folder(os.path.dirname(final) or os.curdir)


def already_exists(path: str, command: str) -> Conflict:
    "The error for a new file ``command`` would write where one exists: evt never overwrites one."
    return Conflict(f"{path} already exists; {command} never overwrites (choose a new file)")


def check_new(path: str, command: str) -> None:
    "Before ``command`` writes the new file ``path``: Conflict if it exists, UsageError if its folder does not."
    if os.path.lexists(path):
        raise already_exists(path, command)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot create {path}: folder {folder} does not exist")


def publish_new(built: str, final: str, command: str) -> None:
    "``publish``, with a file that appeared under ``final`` meanwhile reported as ``already_exists``."
    try:
        publish(built, final)
    except FileExistsError:
        raise already_exists(final, command) from None


def sync_file(path: str) -> None:
    "Write a file's content through to the disk (fsync)."
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: str) -> None:
    "Make a new directory entry durable (a file's name must survive a power cut too), where allowed."
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_like(path: str, source: str) -> None:
    """Create ``path`` empty, with the permission bits of ``source`` (a store).

    What evt makes out of a store (a copy, a backup, a projection's file) is then readable
    by whoever may read the store, and by nobody else: a private (0600) store gives
    private files, from the moment they exist. FileExistsError if ``path`` exists.
    """
    mode = stat.S_IMODE(os.stat(source).st_mode)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask took some bits away: the store's bits, exactly
    finally:
        os.close(fd)


def on_read_only_filesystem(path: str) -> bool:
    "Whether the folder of ``path`` is on a file system mounted read-only."
    try:
        return bool(os.statvfs(os.path.dirname(path) or os.curdir).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def ensure_writable(path: str) -> None:
    """``StoreReadOnly`` (exit 6) unless this user can write the SQLite file at ``path``
    (an events store, a projection's target): the file, and its folder where SQLite
    keeps the -wal and -shm files (unless those exist and may be written)."""
    folder = os.path.dirname(path) or os.curdir
    if on_read_only_filesystem(path):
        reason = "the file system is read-only"
    elif not os.access(path, os.W_OK):
        reason = "this user may not write the file"
    elif not os.access(folder, os.W_OK | os.X_OK) and not all(os.access(path + s, os.W_OK) for s in ("-wal", "-shm")):
        reason = f"this user may not write its folder {folder} (where SQLite keeps the -wal and -shm files)"
    else:
        return
    raise StoreReadOnly(f"{path} is read-only: {reason}")
