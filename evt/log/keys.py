"""Personal fields encrypted per subject, and the keys that forgetting destroys (crypto-shredding).

The user's model names, per event type and version, the personal fields of its data and
the field holding the subject they belong to (``ModelHooks.personal``). On append each
personal field's value is encrypted with the subject's key (AES-256-GCM); the stored
``data`` holds, in that field's place, one self-describing string::

    "evt:enc:1:<key id>:<nonce and ciphertext>"

``1`` is the format, the key id names the key (16 random bytes), the rest is the 12-byte
random nonce followed by the ciphertext and its 16-byte tag — both base64url without
padding. The plaintext is the value's compact JSON text; the associated data
(``evt:enc:1``, the event id and the field name, NUL-separated) binds it to its event and
field, so a value copied into another event or field does not decrypt. No subject is
stored with a value: only the key id, which the key table maps to the key and to the
SHA-256 of the subject.

The key table (``evt_subject_keys``: key id, subject SHA-256, key, creation time) lives
in the store, or — better — in a separate key file, so a copy of the log holds no keys.
A key is created on a subject's first personal value, before the event's transaction
commits (a key file is another SQLite file: its key is committed first, and a writer
killed in between leaves at most a key nothing uses, never an event without its key).

Readers decrypt transparently. A value whose key was destroyed by ``evt forget`` (its key
id is in the store's ``evt_forgotten``) reads as ``FORGOTTEN``; one whose key is not at
hand (the store read without its key file) reads as ``NO_KEY``, and ``notice`` is told
once per process. The ``cryptography`` package is imported only when a value is
encrypted or decrypted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import threading
from typing import Any, Callable

from ..errors import InvalidInput, NotAStore, StoreCorrupted, StoreUnavailable
from .sqlite import connect, translate_errors
from .timestamps import now

PREFIX = "evt:enc:1:"
# What a stored data text holds when a value in it may be encrypted: a JSON string opening
# with evt's prefix. SQL looks for this (instr) to send only those rows through Python.
MARK = '"evt:enc:'
SQL_FLAG = "instr(data, '\"evt:enc:')"

FORGOTTEN = "[forgotten]"  # the subject was forgotten (evt forget): the key is gone for good
NO_KEY = "[encrypted: no key]"  # the key is not at hand: the store read without its key file
PLACEHOLDERS = frozenset({FORGOTTEN, NO_KEY})

KEY_FILE_ID = 0x6576746B  # "evtk": marks a SQLite file as an evt key file (PRAGMA application_id)
KEY_TABLE = """
    CREATE TABLE IF NOT EXISTS {schema}evt_subject_keys (
        key_id BLOB PRIMARY KEY,
        subject_sha256 BLOB NOT NULL UNIQUE,
        key BLOB NOT NULL,
        created_at TEXT NOT NULL
    )"""

_notice: Callable[[str], None] | None = None
_noticed = False


def set_notice(fn: Callable[[str], None] | None) -> None:
    "Who is told (once per process) that values were read without their key: the CLI's stderr."
    global _notice, _noticed
    _notice, _noticed = fn, False


def subject_sha256(subject: str) -> bytes:
    "How a subject is named in the key table and the audit: SHA-256 of its UTF-8 text."
    return hashlib.sha256(subject.encode("utf-8", "surrogatepass")).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(event_id: str, field: str) -> bytes:
    return b"evt:enc:1\0" + event_id.encode("utf-8", "surrogatepass") + b"\0" + field.encode("utf-8", "surrogatepass")


def _plaintext(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8", "surrogatepass")


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def value_prefix(key_id: bytes) -> str:
    "How every value encrypted with this key begins (``evt forget`` finds its events by it)."
    return PREFIX + _b64(key_id) + ":"


def key_id_of(value: str) -> bytes | None:
    "The key id an encrypted value names (None if it is not one evt wrote)."
    parts = value[len(PREFIX):].split(":")
    if len(parts) != 2:
        return None
    try:
        key_id = _unb64(parts[0])
    except ValueError:
        return None
    return key_id if len(key_id) == 16 else None


def refuse_marks(data: dict) -> None:
    "InvalidInput if given data holds a top-level string that reads as an encrypted value."
    for field, value in data.items():
        if is_encrypted(value):
            raise InvalidInput(
                f"data.{field} starts with {PREFIX!r}, which evt reserves for encrypted personal fields"
            )


def holds_placeholder(data: dict) -> bool:
    "Whether decrypted data has a personal field that could not be decrypted (forgotten, or no key)."
    return any(isinstance(v, str) and v in PLACEHOLDERS for v in data.values())


class Keys:
    """Where one store's subject keys live: its own ``evt_subject_keys``, or a key file.

    ``store_conn`` gives the calling thread's connection to the store. With a key file,
    keys are created and destroyed there (each thread has its own connection to it) and
    looked up there first, then in the store's own table (keys kept there before).
    """

    def __init__(self, store_path: str, store_conn: Callable[[], sqlite3.Connection], key_file: str | None, busy_timeout: float):
        self.store_path = store_path
        self.store_conn = store_conn
        self.key_file = key_file
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's connection to the key file, to close

    # -- the key file -------------------------------------------------------------

    def file_conn(self, create: bool = False) -> sqlite3.Connection | None:
        "This thread's connection to the key file (None when there is none, or it does not exist and ``create`` is false)."
        if self.key_file is None:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        path = self.key_file
        if not os.path.exists(path):
            if not create:
                return None
            _create_key_file(path)
        with translate_errors(path):
            conn = connect(path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != KEY_FILE_ID:
                empty = app_id == 0 and not conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
                if not empty:
                    conn.close()
                    raise NotAStore(f"{path} is not an evt key file")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(KEY_TABLE.format(schema=""))
                conn.execute(f"PRAGMA application_id = {KEY_FILE_ID}")
                conn.execute("PRAGMA user_version = 1")
                conn.execute("COMMIT")
            conn.execute("PRAGMA secure_delete = ON")
        self._local.conn = conn
        self._opened.append(conn)
        return conn

    # -- looking up ----------------------------------------------------------------

    def key(self, key_id: bytes) -> bytes | None:
        "The key of this id, wherever it is kept (None: not at hand)."
        conn = self.file_conn()
        if conn is not None:
            with translate_errors(self.key_file):
                row = conn.execute("SELECT key FROM evt_subject_keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is not None:
                return row[0]
        with translate_errors(self.store_path):
            row = self.store_conn().execute("SELECT key FROM evt_subject_keys WHERE key_id = ?", (key_id,)).fetchone()
        return row[0] if row is not None else None

    def forgotten(self, key_id: bytes) -> bool:
        "Whether evt forget destroyed this key (the store's audit says so)."
        with translate_errors(self.store_path):
            return self.store_conn().execute("SELECT 1 FROM evt_forgotten WHERE key_id = ?", (key_id,)).fetchone() is not None

    def live_keys(self, digest: bytes) -> list[tuple[bytes, str]]:
        "(key id, where) of the subject's keys: in the key file and/or in the store."
        found = []
        conn = self.file_conn()
        if conn is not None:
            with translate_errors(self.key_file):
                found += [(r[0], "file") for r in conn.execute("SELECT key_id FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,))]
        with translate_errors(self.store_path):
            found += [(r[0], "store") for r in self.store_conn().execute("SELECT key_id FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,))]
        return found

    # -- creating (inside the store's write transaction) -------------------------------

    def key_for(self, conn: sqlite3.Connection, digest: bytes) -> tuple[bytes, bytes]:
        """(key id, key) of a subject, created if it has none. ``conn`` is the store's, in its
        write transaction: a key kept in the store is created in it (atomic with the events);
        one kept in a key file is committed there first, so no event ever lacks its key."""
        if self.key_file is None:
            row = conn.execute("SELECT key_id, key FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,)).fetchone()
            if row is None:
                row = (os.urandom(16), os.urandom(32))
                conn.execute("INSERT INTO evt_subject_keys (key_id, subject_sha256, key, created_at) VALUES (?, ?, ?, ?)", (row[0], digest, row[1], now()))
            return row[0], row[1]
        found = self._file_key(digest)
        if found is not None:
            return found
        old = conn.execute("SELECT key_id, key FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,)).fetchone()
        if old is not None:  # kept in the store before the key file was configured
            return old[0], old[1]
        key_conn = self.file_conn(create=True)
        with translate_errors(self.key_file):
            key_conn.execute("BEGIN IMMEDIATE")  # two writers of one new subject: one key
            try:
                key_conn.execute(
                    "INSERT OR IGNORE INTO evt_subject_keys (key_id, subject_sha256, key, created_at) VALUES (?, ?, ?, ?)",
                    (os.urandom(16), digest, os.urandom(32), now()),
                )
                row = key_conn.execute("SELECT key_id, key FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,)).fetchone()
                key_conn.execute("COMMIT")
            except BaseException:
                if key_conn.in_transaction:
                    key_conn.execute("ROLLBACK")
                raise
        return row[0], row[1]

    def _file_key(self, digest: bytes) -> tuple[bytes, bytes] | None:
        conn = self.file_conn()
        if conn is None:
            return None
        with translate_errors(self.key_file):
            row = conn.execute("SELECT key_id, key FROM evt_subject_keys WHERE subject_sha256 = ?", (digest,)).fetchone()
        return (row[0], row[1]) if row is not None else None

    def close(self) -> None:
        "Close every thread's connection to the key file."
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        self._local = threading.local()

    def after_fork(self) -> None:
        "In a child process: new connections (the parent's are left alone, as the store's are)."
        self._opened = []
        self._local = threading.local()


def _create_key_file(path: str) -> None:
    "An empty key file only its owner may read (0600); another writer may create it at the same moment."
    folder = os.path.dirname(path) or os.curdir
    if not os.path.isdir(folder):
        raise StoreUnavailable(f"cannot create the key file {path}: folder {os.path.dirname(os.path.abspath(path))} does not exist")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreUnavailable(f"cannot create the key file {path}: {e.strerror}") from None


class Encryptor:
    "Encrypts the personal fields of one write transaction's events (keys looked up once per subject)."

    def __init__(self, keys: Keys, conn: sqlite3.Connection):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.keys = keys
        self.conn = conn
        self.aead = AESGCM
        self.subjects: dict[str, tuple[bytes, Any]] = {}

    def data(self, event_id: str, data: dict, subject: str, fields: tuple[str, ...]) -> dict:
        "The data with each personal field present replaced by its encrypted value."
        key_id, cipher = self._cipher(subject)
        out = dict(data)
        for field in fields:
            if field in out and not is_encrypted(out[field]):
                nonce = os.urandom(12)
                sealed = cipher.encrypt(nonce, _plaintext(out[field]), _aad(event_id, field))
                out[field] = PREFIX + _b64(key_id) + ":" + _b64(nonce + sealed)
        return out

    def _cipher(self, subject: str):
        found = self.subjects.get(subject)
        if found is None:
            key_id, key = self.keys.key_for(self.conn, subject_sha256(subject))
            found = self.subjects[subject] = (key_id, self.aead(key))
        return found


class Decryptor:
    """Decrypts the personal fields of stored events for one read (keys cached for its length:
    a key forgotten meanwhile is not used past the read that found it)."""

    def __init__(self, keys: Keys | None):
        self.keys = keys
        self.ciphers: dict[bytes, Any] = {}  # key id -> AESGCM, or a placeholder
        self._aead = None

    def data(self, event_id: str, data: dict, position: int | None = None) -> dict:
        "The data with every encrypted value decrypted (or its placeholder)."
        out = None
        for field, value in data.items():
            if isinstance(value, str) and value.startswith(PREFIX):
                if out is None:
                    out = dict(data)
                out[field] = self.value(event_id, field, value, position)
        return data if out is None else out

    def value(self, event_id: str, field: str, value: str, position: int | None) -> Any:
        where = f" of the event at position {position}" if position is not None else ""
        parts = value[len(PREFIX):].split(":")
        key_id = key_id_of(value)
        if key_id is None:
            raise StoreCorrupted(f"{self.keys.store_path if self.keys else 'the store'}: data.{field}{where} is not an encrypted value evt wrote")
        cipher = self.ciphers.get(key_id)
        if cipher is None:
            cipher = self.ciphers[key_id] = self._cipher(key_id)
        if isinstance(cipher, str):
            return cipher
        from cryptography.exceptions import InvalidTag

        try:
            raw = _unb64(parts[1])
            return json.loads(cipher.decrypt(raw[:12], raw[12:], _aad(event_id, field)).decode("utf-8", "surrogatepass"))
        except (InvalidTag, ValueError):
            path = self.keys.store_path if self.keys else "the store"
            raise StoreCorrupted(
                f"{path}: data.{field}{where} does not decrypt with its key: it was changed, or moved from another event or field (evt verify finds where)"
            ) from None

    def _cipher(self, key_id: bytes):
        key = self.keys.key(key_id) if self.keys is not None else None
        if key is None:
            if self.keys is not None and self.keys.forgotten(key_id):
                return FORGOTTEN
            _tell_missing(self.keys)
            return NO_KEY
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM
        return self._aead(key)

    def text(self, event_id: str, text: str, position: int | None = None) -> str:
        "Stored data text, decrypted, as evt stores JSON (compact)."
        from .batch import encode
        from .envelope import loads

        return encode(self.data(event_id, loads(text), position))

    def line(self, line: str, event_id: str, data_text: str, position: int | None = None) -> str:
        """A JSON line built by SQLite (an envelope or a CloudEvent) with its data decrypted.

        The data is the first ``,"data":`` followed by the stored text: every field before
        it is a number or a JSON string, in which a quote is always escaped."""
        spliced = ',"data":' + data_text
        at = line.find(spliced)
        if at < 0:  # never: both lines splice the stored text in as it is
            raise AssertionError("the stored data is not in the line")
        return line[:at] + ',"data":' + self.text(event_id, data_text, position) + line[at + len(spliced):]

    def row(self, row: tuple) -> tuple:
        "A row of the store's COLUMNS with its data text decrypted (as it was if nothing is encrypted)."
        if MARK not in row[10]:
            return row
        return row[:10] + (self.text(row[3], row[10], row[0]),) + row[11:]


def _tell_missing(keys: Keys | None) -> None:
    global _noticed
    if _notice is None or _noticed:
        return
    _noticed = True
    if keys is not None and keys.key_file is not None:
        where = f"the key file {keys.key_file}" if os.path.exists(keys.key_file) else f"the key file {keys.key_file} (it does not exist)"
        _notice(f"some personal fields are encrypted with keys not in {where}; they read as {NO_KEY!r}")
    else:
        _notice(
            f"some personal fields are encrypted with keys this store does not hold; they read as {NO_KEY!r} "
            "(give the key file: --keys FILE, EVT_KEYS or keys = \"…\" in evt.toml)"
        )
