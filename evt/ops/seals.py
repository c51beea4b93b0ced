"""``evt seal``: the head of the hash chain, signed with an Ed25519 key, and checked later.

A seal says "at ``signed_at`` the event at ``position`` had the chain hash ``hash``",
signed by a key whose id is the SHA-256 of its raw 32-byte public key. As every chain
hash covers every event before it, a seal that still verifies proves that nothing up to
its position was changed since — even by someone who recomputed the whole chain (they
cannot sign without the private key, which never goes near the store).

What is signed is this UTF-8 text (``message``), so an auditor can check a seal with any
Ed25519 tool (``openssl pkeyutl -verify -rawin``)::

    evt-seal-v1
    position 1234
    hash 3f7a…(64 hex characters)
    signed-at 2026-11-30T21:00:00.000000Z
    key 9c1e…(64 hex characters)

Seals are rows of ``evt_seals`` (append-only, like the events). ``cryptography`` is
imported only here, and only when a key is used.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import NotFound, StoreTooOld, UsageError, VerificationFailed
from ..log import files
from ..log.sqlite import translate_errors
from ..log.timestamps import now

if TYPE_CHECKING:
    from ..log.store import Store

VERSION_LINE = "evt-seal-v1"
# Read as stored bytes whatever their type: a hash or signature changed into text (the
# sqlite3 shell's || makes text) is a changed seal, not an unreadable store.
COLUMNS = "id, position, CAST(hash AS BLOB), signed_at, key_id, CAST(signature AS BLOB)"


# -- keys --------------------------------------------------------------------------------


def key_id(public_raw: bytes) -> str:
    "A key's id: the SHA-256 of its raw 32-byte public key, in hex."
    return hashlib.sha256(public_raw).hexdigest()


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(64 * 1024)
    except OSError as e:
        raise UsageError(f"cannot read the key file {path}: {e.strerror or e}") from None


def load_private_key(path: str):
    "An Ed25519 private key from a PEM file (as ``keygen`` writes); UsageError for anything else."
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # the PEM is encrypted
        raise UsageError(f"{path} is encrypted: evt seal takes an unencrypted Ed25519 key (evt seal keygen writes one, private to you)") from None
    except Exception:  # cryptography's own words may quote the file: never shown
        raise UsageError(f"{path} is not an Ed25519 private key in PEM (evt seal keygen writes one)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 private key in PEM (evt seal keygen writes one)")
    return key


def load_public_key(path: str):
    "An Ed25519 public key from a PEM file (or the private key's file: its public part)."
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except Exception:  # not a public key in PEM: say so without quoting the file
        raise UsageError(f"{path} is not an Ed25519 public key in PEM (evt seal keygen writes one beside the private key)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key in PEM (evt seal keygen writes one beside the private key)")
    return key


def keygen(private_path: str | os.PathLike, public_path: str | os.PathLike | None = None) -> dict:
    """Write a new Ed25519 key pair: the private key (PEM, PKCS#8, mode 0600) and its
    public key (PEM, beside it as ``PRIVATE.pub`` unless named). Neither file may exist
    (Conflict); nothing is written then. Returns the paths and the key id, never the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path = os.fspath(private_path)
    public_path = os.fspath(public_path) if public_path is not None else private_path + ".pub"
    if os.path.abspath(private_path) == os.path.abspath(public_path):
        raise UsageError("the private and the public key need two files")
    for path in (private_path, public_path):
        files.check_new(path, "evt seal keygen")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        os.remove(private_path)
        raise
    return {"private": private_path, "public": public_path, "keyId": key_id(_raw_public(key.public_key()))}


def _write_new(path: str, content: bytes, mode: int) -> None:
    "A new file with ``content`` and exactly ``mode`` (never over one that appeared meanwhile), synced."
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise files.already_exists(path, "evt seal keygen") from None
    except OSError as e:
        raise UsageError(f"cannot create {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, content)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.remove(path)
        raise
    os.close(fd)


# -- seals -------------------------------------------------------------------------------


def message(position: int, hash_: bytes, signed_at: str, key: str) -> bytes:
    "What a seal signs (see the module's description)."
    return f"{VERSION_LINE}\nposition {position}\nhash {hash_.hex()}\nsigned-at {signed_at}\nkey {key}\n".encode()


def _as_dict(row: tuple) -> dict[str, Any]:
    id_, position, hash_, signed_at, key, signature = row
    return {
        "id": id_,
        "position": position,
        "hash": hash_.hex() if isinstance(hash_, bytes) else hash_,
        "signedAt": signed_at,
        "keyId": key,
        "signature": signature.hex() if isinstance(signature, bytes) else signature,
    }


def _require_chain(store: "Store") -> None:
    from .verify import CHAIN_MIGRATION  # the chain's migration, by name

    with translate_errors(store.path):
        names = {row[0] for row in store.conn.execute("SELECT name FROM evt_migrations")}
    if not any(name.endswith(CHAIN_MIGRATION) for name in names):
        raise StoreTooOld(f"{store.path} has no hash chain yet: any evt command that writes (evt append) upgrades it")


def seal(store: "Store", private_key_path: str) -> dict:
    """Sign the head of the chain with the key in ``private_key_path``; record and return the seal.

    The whole chain is verified first, in one read snapshot (writers go on meanwhile), and
    the head of that snapshot is sealed: a log that does not verify is never sealed
    (VerificationFailed). An empty log has nothing to seal (NotFound).
    """
    from .verify import verify

    key = load_private_key(private_key_path)
    key_name = key_id(_raw_public(key.public_key()))
    _require_chain(store)
    conn = store.conn
    with translate_errors(store.path):
        conn.execute("BEGIN")  # one snapshot: the head is sealed as verified, writers go on meanwhile
        try:
            head = conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
            if head is None:
                raise NotFound(f"{store.path} holds no events: nothing to seal")
            verify(store).check()
        finally:
            conn.execute("ROLLBACK")
    position, hash_ = head
    signed_at = now()
    signature = key.sign(message(position, hash_, signed_at, key_name))
    with translate_errors(store.path), store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO evt_seals (position, hash, signed_at, key_id, signature) VALUES (?, ?, ?, ?, ?)",
            (position, hash_, signed_at, key_name, signature),
        )
    return _as_dict((cursor.lastrowid, position, hash_, signed_at, key_name, signature))


def seals(store: "Store") -> list[dict]:
    "Every recorded seal, oldest first."
    with translate_errors(store.path):
        return [_as_dict(row) for row in store.conn.execute(f"SELECT {COLUMNS} FROM evt_seals ORDER BY id")]


def public_keys(paths: Iterable[str]) -> dict:
    "The Ed25519 public keys in these PEM files, by key id; UsageError for none, or a file that is not one."
    keys = {}
    for path in paths:
        public = load_public_key(path)
        keys[key_id(_raw_public(public))] = public
    if not keys:
        raise UsageError("evt seal verify needs --public-key PUBLIC.pem (repeatable)")
    return keys


def verify_seals(store: "Store", keys: dict) -> dict:
    """Check every seal: signed by one of the ``keys`` (``public_keys``), over the chain hash
    the log holds now at the sealed position. Returns a summary; VerificationFailed (exit 8)
    at the first seal that does not hold, and when there is no seal at all.

    This checks the seals only; ``verify`` walks the chain itself (``evt seal verify``
    runs both).
    """
    _require_chain(store)
    conn = store.conn
    with translate_errors(store.path):
        conn.execute("BEGIN")  # one snapshot: the seals and the hashes they name
        try:
            count = 0
            last = None
            for row in _seal_rows(conn):
                problem = _seal_problem(conn, row, keys)
                if problem is not None:
                    raise VerificationFailed(f"verification failed: seal {row[0]} (position {row[1]}): {problem}")
                count += 1
                if last is None or row[1] >= last[1]:
                    last = row
        finally:
            conn.execute("ROLLBACK")
    if last is None:
        raise VerificationFailed(f"verification failed: {store.path} holds no seals (evt seal sign --key PRIVATE.pem makes one)")
    latest = _as_dict(last)
    return {
        "seals": count,
        "sealedPosition": latest["position"],
        "sealedHash": latest["hash"],
        "sealedAt": latest["signedAt"],
        "keyId": latest["keyId"],
    }


def _seal_rows(conn) -> Iterable[tuple]:
    "Every seal, oldest first; none in a store from before seals (opened without upgrading it)."
    if not conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'evt_seals'").fetchone()[0]:
        return []
    return conn.execute(f"SELECT {COLUMNS} FROM evt_seals ORDER BY id")


def _seal_problem(conn, row: tuple, keys: dict) -> str | None:
    "What is wrong with one seal, or None."
    from cryptography.exceptions import InvalidSignature

    _, position, hash_, signed_at, key, signature = row
    if key not in keys:
        return f"signed by key {key}, not by a key given"
    if not isinstance(hash_, bytes) or not isinstance(signature, bytes) or not isinstance(position, int) or not isinstance(signed_at, str):
        return "the seal's row is not what evt stores"
    try:
        keys[key].verify(signature, message(position, hash_, signed_at, key))
    except InvalidSignature:
        return "the signature does not match the seal (its position, hash or time was changed, or its signature)"
    stored = conn.execute("SELECT hash FROM events WHERE position = ?", (position,)).fetchone()
    if stored is None:
        return "the log holds no event at the sealed position"
    if stored[0] != hash_:
        shown = stored[0].hex() if isinstance(stored[0], bytes) else repr(stored[0])
        return f"the log's hash there is {shown}, the seal's {hash_.hex()}: the log up to the seal was changed"
    return None
