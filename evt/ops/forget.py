"""``evt forget SUBJECT``: erasure by destroying the key a subject's personal fields were encrypted with.

The events stay as they are (the log is append-only, and the hash chain covers what is
stored: the ciphertext); without the key their personal fields can never be read again,
and every reader shows them as ``evt.log.keys.FORGOTTEN``. The act is recorded in the
store's ``evt_forgotten`` (when, the subject's SHA-256, the key's id, how many events it
had encrypted and the first of them), never the subject's data.

With the keys kept in the store, the audit row and the deletion of the key are one
transaction. With a key file, the audit commits first, then the key is deleted from the
key file: a crash in between leaves the key in place (readers still decrypt) and running
``evt forget`` again finishes the job; never a destroyed key with no record of it.

Either way the key's bytes are overwritten where they were (``secure_delete``) and the
write-ahead logs are checkpointed and truncated, so the key is in no file any more.
"""

from __future__ import annotations

from typing import Callable

from ..errors import NotFound
from ..log.keys import subject_sha256, value_prefix
from ..log.sqlite import translate_errors
from ..log.timestamps import now


class SubjectUnknown(NotFound):
    "No key was ever made for the subject: the store holds no personal fields of it"


def forget(
    store,
    subject: str,
    *,
    rebuild: bool = False,
    config=None,
    model=None,
    say: Callable[[str], None] = lambda line: None,
) -> dict:
    """Destroy the subject's keys; record the act; deal with what depends on the events.

    Returns the summary ``evt forget`` prints. ``SubjectUnknown`` (exit 4) when the store
    and its key file never held a key for the subject; forgetting a forgotten subject
    again changes nothing and says so (``alreadyForgotten``).
    """
    from .dependents import after_erasure

    digest = subject_sha256(subject)
    keys = store.keys
    stamp = now()
    conn = store.conn
    with translate_errors(store.path):
        conn.execute("PRAGMA secure_delete = ON")  # what is deleted (a key, a snapshot) is overwritten
        with store.transaction():
            live = keys.live_keys(digest)
            earlier = conn.execute("SELECT count(*) FROM evt_forgotten WHERE subject_sha256 = ?", (digest,)).fetchone()[0]
            if not live and not earlier:
                raise SubjectUnknown(f"no personal data of subject {subject!r} is kept here: no key was ever made for it")
            positions: list[int] = []
            streams: set[str] = set()
            for key_id, _ in live:
                found = conn.execute(
                    "SELECT position, stream FROM events WHERE instr(data, ?) ORDER BY position",
                    (value_prefix(key_id),),
                ).fetchall()
                positions += [p for p, _ in found]
                streams.update(s for _, s in found)
                if not conn.execute("SELECT 1 FROM evt_forgotten WHERE key_id = ?", (key_id,)).fetchone():
                    conn.execute(
                        "INSERT INTO evt_forgotten (forgotten_at, subject_sha256, key_id, events, first_position) VALUES (?, ?, ?, ?, ?)",
                        (stamp, digest, key_id, len(found), found[0][0] if found else None),
                    )
            conn.execute("DELETE FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,))
    checkpointed = True
    if any(where == "file" for _, where in live):
        key_conn = keys.file_conn()
        with translate_errors(keys.key_file):
            key_conn.execute("BEGIN IMMEDIATE")
            try:
                key_conn.execute("DELETE FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,))
                key_conn.execute("COMMIT")
            except BaseException:
                key_conn.execute("ROLLBACK")
                raise
            checkpointed = _truncate_wal(key_conn) and checkpointed
    first = min(positions) if positions else None
    dependents = after_erasure(store, streams, first, rebuild=rebuild, config=config, model=model, say=say)
    with translate_errors(store.path):
        checkpointed = _truncate_wal(conn) and checkpointed
    if not checkpointed:
        say("a reader kept the write-ahead log from being emptied: the destroyed key's bytes may linger in a -wal file until it is; run evt forget again when nothing reads")
    return {
        "subject": subject,
        "keysDestroyed": len(live),
        "alreadyForgotten": not live,
        "events": len(positions),
        "streams": sorted(streams),
        "firstPosition": first,
        "forgottenAt": stamp if live else None,
        **dependents.to_dict(),
        "walCheckpointed": checkpointed,
    }


def _truncate_wal(conn) -> bool:
    "Checkpoint the write-ahead log into the file and truncate it; False if a reader held it back."
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy
