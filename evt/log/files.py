"""SQLite files evt writes under a temporary name and publishes once they are complete.

A file being built is named ``<final name><marker><pid>`` (``events.db.creating-123``,
``new.db.tmp-123``); whoever builds one next removes those whose process is gone, so a
run killed mid-way (``kill -9``, a power cut) leaves nothing that needs cleaning by hand.
"""

from __future__ import annotations

import glob
import os

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-lock")  # -lock: the writers' queue (evt.log.writers)


def remove_sqlite_files(path: str) -> None:
    "Remove a SQLite file with its journals (what is missing already is fine)."
    for suffix in SQLITE_SUFFIXES:
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def temporary_name(final: str, marker: str = ".tmp-") -> str:
    "Where this process builds ``final`` until it is complete."
    return f"{final}{marker}{os.getpid()}"


def remove_abandoned(final_pattern: str, marker: str = ".tmp-") -> None:
    """Remove the files of builders that were killed (their process is gone), and this process's own.

    ``final_pattern`` is a glob of final names (``glob.escape`` a plain name).
    """
    for path in glob.glob(final_pattern + glob.escape(marker) + "*"):
        pid = path.rsplit(marker, 1)[1]
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
    """Give a complete file its final name, never over a file that is there (FileExistsError)."""
    try:
        os.link(built, final)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.lexists(final):
            raise FileExistsError(final) from None
        os.replace(built, final)


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
