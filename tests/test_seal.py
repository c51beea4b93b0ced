"""evt seal: Ed25519 signatures of the chain's head, and their verification, as an attacker tries them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess

import pytest

from evt import NewEvent, Store
from evt.log import chain

KEY_FIELDS = ["private", "public", "keyId"]
SEAL_FIELDS = ["id", "position", "hash", "signedAt", "keyId", "signature"]


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "events.db") as s:
        s.write([NewEvent(f"order-{i % 3}", "order.placed", {"n": i, "secret-ish": "é"}) for i in range(20)])
    return tmp_path / "events.db"


@pytest.fixture
def key(evt, tmp_path):
    r = evt("seal", "keygen", "seal.pem", "--format", "ndjson")
    assert r.exit_code == 0, r
    return r.json()[0]


def raw_public(path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    public = serialization.load_pem_public_key(open(path, "rb").read())
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_body(path) -> str:
    "The base64 of a PEM file (what must never be printed)."
    return "".join(line for line in open(path).read().splitlines() if not line.startswith("-----"))


def sql(path, *statements: str, params=()):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        result = None
        for statement in statements:
            result = conn.execute(statement, params if "?" in statement else ()).fetchall()
        return result
    finally:
        conn.close()


# -- keys ----------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_for_its_owner_alone_and_never_prints_it(evt, tmp_path):
    old = os.umask(0)
    try:
        r = evt("seal", "keygen", "seal.pem", "--format", "ndjson")
    finally:
        os.umask(old)
    assert (r.exit_code, r.stderr) == (0, "")
    [made] = r.json()
    assert list(made) == KEY_FIELDS
    assert made["private"] == "seal.pem" and made["public"] == "seal.pem.pub"
    assert os.stat("seal.pem").st_mode & 0o777 == 0o600
    assert open("seal.pem").read().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert open("seal.pem.pub").read().startswith("-----BEGIN PUBLIC KEY-----\n")
    assert made["keyId"] == hashlib.sha256(raw_public("seal.pem.pub")).hexdigest()
    assert key_body("seal.pem") not in r.stdout and "PRIVATE KEY" not in r.stdout


def test_keygen_never_overwrites_a_key(evt, key):
    before = open("seal.pem").read(), open("seal.pem.pub").read()
    r = evt("seal", "keygen", "seal.pem")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "", "evt: seal.pem already exists; evt seal keygen never overwrites (choose a new file)\n")
    r = evt("seal", "keygen", "other.pem", "--public", "seal.pem.pub")
    assert (r.exit_code, r.stderr) == (3, "evt: seal.pem.pub already exists; evt seal keygen never overwrites (choose a new file)\n")
    assert not os.path.exists("other.pem")
    assert (open("seal.pem").read(), open("seal.pem.pub").read()) == before


def test_keygen_into_a_missing_folder_is_exit_2(evt, tmp_path):
    r = evt("seal", "keygen", "keys/seal.pem")
    assert (r.exit_code, r.stderr) == (2, f"evt: cannot create keys/seal.pem: folder {tmp_path}/keys does not exist\n")
    assert os.listdir(".") == []


def test_a_missing_or_wrong_key_file_is_one_line_and_exit_2(evt, store, key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with open("garbage.pem", "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nTOPSECRETbutnotakey\n-----END PRIVATE KEY-----\n")
    with open("ec.pem", "wb") as f:
        f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open("locked.pem", "wb") as f:
        f.write(Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    cases = {
        "absent.pem": "evt: cannot read the key file absent.pem: No such file or directory\n",
        "garbage.pem": "evt: garbage.pem is not an Ed25519 private key in PEM (evt seal keygen writes one)\n",
        "ec.pem": "evt: ec.pem is not an Ed25519 private key in PEM (evt seal keygen writes one)\n",
        "seal.pem.pub": "evt: seal.pem.pub is not an Ed25519 private key in PEM (evt seal keygen writes one)\n",
        "locked.pem": "evt: locked.pem is encrypted: evt seal takes an unencrypted Ed25519 key (evt seal keygen writes one, private to you)\n",
        ".": "evt: cannot read the key file .: Is a directory\n",
    }
    for path, message in cases.items():
        r = evt("seal", "sign", "--key", path)
        assert (r.exit_code, r.stdout, r.stderr) == (2, "", message), path
    for path, message in {
        "absent.pem": "evt: cannot read the key file absent.pem: No such file or directory\n",
        "seal.pem": "evt: seal.pem is not an Ed25519 public key in PEM (evt seal keygen writes one beside the private key)\n",
        "garbage.pem": "evt: garbage.pem is not an Ed25519 public key in PEM (evt seal keygen writes one beside the private key)\n",
    }.items():
        r = evt("seal", "verify", "--public-key", path)
        assert (r.exit_code, r.stdout, r.stderr) == (2, "", message), path
    assert sql(store, "SELECT count(*) FROM evt_seals") == [(0,)]


def test_seal_verify_needs_a_public_key(evt, store):
    r = evt("seal", "verify")
    assert (r.exit_code, r.stderr) == (2, "evt: evt seal verify needs --public-key PUBLIC.pem (repeatable)\n")


# -- sealing and verifying -----------------------------------------------------------------



def test_a_seal_signs_the_head_and_any_ed25519_tool_can_check_it(evt, store, key):
    from cryptography.hazmat.primitives import serialization

    r = evt("seal", "sign", "--key", "seal.pem", "--format", "ndjson")
    assert (r.exit_code, r.stderr) == (0, "")
    [seal] = r.json()
    assert list(seal) == SEAL_FIELDS
    [(head_hash,)] = sql(store, "SELECT hash FROM events WHERE position = 20")
    assert (seal["id"], seal["position"], seal["hash"], seal["keyId"]) == (1, 20, head_hash.hex(), key["keyId"])
    assert key_body("seal.pem") not in r.stdout
    assert sql(store, "SELECT position, hash, signed_at, key_id, signature FROM evt_seals") == [
        (20, head_hash, seal["signedAt"], key["keyId"], bytes.fromhex(seal["signature"]))
    ]
    # An auditor's check, from the README's description of the signed text alone:
    text = f"evt-seal-v1\nposition 20\nhash {head_hash.hex()}\nsigned-at {seal['signedAt']}\nkey {key['keyId']}\n"
    public = serialization.load_pem_public_key(open("seal.pem.pub", "rb").read())
    public.verify(bytes.fromhex(seal["signature"]), text.encode())  # raises if it does not hold
    if shutil.which("openssl"):  # and the README's openssl command
        with open("seal.txt", "w") as f:
            f.write(text)
        with open("seal.sig", "wb") as f:
            f.write(bytes.fromhex(seal["signature"]))
        checked = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "seal.pem.pub", "-rawin", "-in", "seal.txt", "-sigfile", "seal.sig"],
            capture_output=True, text=True,
        )
        assert (checked.returncode, checked.stdout) == (0, "Signature Verified Successfully\n"), checked.stderr
    assert evt("seal", "list", "--format", "ndjson").json() == [seal]


def test_seal_verify_passes_on_an_untouched_log_with_later_appends(evt, store, key):
    assert evt("seal", "sign", "--key", "seal.pem").exit_code == 0
    with Store(store) as s:
        s.append(NewEvent("order-9", "order.placed", {"n": 99}))
    second = evt("seal", "sign", "--key", "seal.pem", "--format", "ndjson").json()[0]
    assert (second["id"], second["position"]) == (2, 21)
    r = evt("seal", "verify", "--public-key", "seal.pem.pub", "--format", "ndjson")
    assert (r.exit_code, r.stderr) == (0, "")
    [result] = r.json()
    [(head_hash,)] = sql(store, "SELECT hash FROM events WHERE position = 21")
    assert result == {
        "path": "events.db",
        "verified": True,
        "head": 21,
        "headHash": head_hash.hex(),
        "seals": 2,
        "sealedPosition": 21,
        "sealedHash": head_hash.hex(),
        "sealedAt": second["signedAt"],
        "keyId": key["keyId"],
    }


def tamper(path, *statements: str, rehash_from: int | None = None) -> None:
    """What an attacker does with the plain sqlite3 shell: drop the triggers, change rows,
    recompute the chain from ``rehash_from`` on (the README documents how), put the triggers back."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        triggers = conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'").fetchall()
        conn.execute("BEGIN")
        for name, _ in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.execute(statement)
        if rehash_from is not None:
            chain.rehash(conn, rehash_from)
        for _, statement in triggers:
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE evt_seals SET signature = substr(signature, 1, 10) || X'00' || substr(signature, 12)",
        "UPDATE evt_seals SET hash = X'00' || substr(hash, 2)",
        "UPDATE evt_seals SET position = 19",
        "UPDATE evt_seals SET signed_at = '2030-01-01T00:00:00.000000Z'",
    ],
)
def test_a_changed_seal_is_caught(evt, store, key, change):
    assert evt("seal", "sign", "--key", "seal.pem").exit_code == 0
    tamper(store, change)
    r = evt("seal", "verify", "--public-key", "seal.pem.pub")
    assert (r.exit_code, r.stdout) == (8, "")
    assert r.stderr == (
        "evt: verification failed: seal 1 (position %d): the signature does not match the seal "
        "(its position, hash or time was changed, or its signature)\n" % (19 if "position" in change else 20)
    )


def test_a_seal_by_another_key_is_caught(evt, store, key):
    evt("seal", "keygen", "mallory.pem")
    assert evt("seal", "sign", "--key", "seal.pem").exit_code == 0
    mallory = evt("seal", "sign", "--key", "mallory.pem", "--format", "ndjson").json()[0]
    r = evt("seal", "verify", "--public-key", "seal.pem.pub")
    assert (r.exit_code, r.stderr) == (8, f"evt: verification failed: seal 2 (position 20): signed by key {mallory['keyId']}, not by a key given\n")
    assert evt("seal", "verify", "--public-key", "seal.pem.pub", "--public-key", "mallory.pem.pub").exit_code == 0


def test_a_rewritten_log_with_its_chain_recomputed_passes_evt_verify_but_not_the_seal(evt, store, key):
    sealed = evt("seal", "sign", "--key", "seal.pem", "--format", "ndjson").json()[0]
    tamper(store, """UPDATE events SET data = '{"n":3,"secret-ish":"forged"}' WHERE position = 4""", rehash_from=4)
    assert evt("verify").exit_code == 0  # the chain alone cannot tell
    r = evt("seal", "verify", "--public-key", "seal.pem.pub")
    [(now,)] = sql(store, "SELECT hash FROM events WHERE position = 20")
    assert (r.exit_code, r.stderr) == (
        8,
        f"evt: verification failed: seal 1 (position 20): the log's hash there is {now.hex()}, the seal's "
        f"{sealed['hash']}: the log up to the seal was changed\n",
    )


def test_a_log_that_does_not_verify_is_never_sealed(evt, store, key):
    tamper(store, """UPDATE events SET data = '{"n":3}' WHERE position = 4""")
    r = evt("seal", "sign", "--key", "seal.pem")
    assert (r.exit_code, r.stdout) == (8, "")
    assert r.stderr.startswith("evt: verification failed at position 4: ")
    assert sql(store, "SELECT count(*) FROM evt_seals") == [(0,)]


def test_a_store_without_seals_does_not_verify(evt, store, key):
    r = evt("seal", "verify", "--public-key", "seal.pem.pub")
    assert (r.exit_code, r.stderr) == (8, "evt: verification failed: events.db holds no seals (evt seal sign --key PRIVATE.pem makes one)\n")


def test_seals_are_append_only(evt, store, key):
    evt("seal", "sign", "--key", "seal.pem")
    for statement in ("UPDATE evt_seals SET position = 1", "DELETE FROM evt_seals"):
        with pytest.raises(sqlite3.IntegrityError, match="seals are append-only"):
            sql(store, statement)


def test_a_backup_holds_the_seals_and_they_verify_there(evt, store, key):
    evt("seal", "sign", "--key", "seal.pem")
    assert evt("backup", "b.db").exit_code == 0
    r = evt("seal", "verify", "--public-key", "seal.pem.pub", "--db", "b.db", "--format", "ndjson")
    assert r.exit_code == 0 and r.json()[0]["seals"] == 1


def test_an_empty_log_has_nothing_to_seal(evt, tmp_path, key):
    with Store(tmp_path / "empty.db") as s:
        s.conn.execute("SELECT 1")  # a store with no events (evt append never makes one; Python may)
    r = evt("seal", "sign", "--key", "seal.pem", "--db", "empty.db")
    assert (r.exit_code, r.stderr) == (4, "evt: empty.db holds no events: nothing to seal\n")


def test_json_output_is_one_array(evt, store, key):
    r = evt("seal", "sign", "--key", "seal.pem", "--format", "json")
    assert len(json.loads(r.stdout)) == 1
