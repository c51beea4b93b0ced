"""Personal fields encrypted per subject, read decrypted everywhere, and erased by evt forget.

The store's bytes are checked as an attacker would read them: the .db, its -wal, and the
key file, grepped raw.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import evt_command

MODEL = '''
from pydantic import BaseModel

from evt import Model, on

model = Model()


@model.schema("customer.registered", personal=["email", "address"], subject="customer_id")
class Registered(BaseModel):
    customer_id: str
    email: str
    address: dict | None = None
    plan: str = "free"


@model.schema("customer.renamed", personal=["name"], subject="customer_id")
class Renamed(BaseModel):
    customer_id: str
    name: str


@model.schema("customer.renamed", version=2, personal=["name"], subject="customer_id")
class RenamedV2(BaseModel):
    customer_id: str
    name: str
    source: str


@model.upcaster("customer.renamed", 1)
def with_source(data):
    return {**data, "source": "v1"}


@model.schema("order.placed")
class Placed(BaseModel):
    total: int


@model.aggregate("customer", snapshot_every=1)
class Customer(BaseModel):
    email: str | None = None
    name: str | None = None

    @on("customer.registered")
    def registered(self, event):
        self.email = event.data["email"]

    @on("customer.renamed")
    def renamed(self, event):
        self.name = event.data["name"]


emails = model.projection("emails", tables=["emails"])


@emails.setup
def create(db):
    db.execute("CREATE TABLE IF NOT EXISTS emails (customer TEXT PRIMARY KEY, email TEXT)")


@emails.on("customer.registered")
def registered(db, event):
    db.execute("INSERT OR REPLACE INTO emails VALUES (?, ?)", [event.data["customer_id"], event.data["email"]])
'''

ALICE = {"customer_id": "c-1", "email": "alice@example.com", "address": {"street": "12 Rue Oberkampf"}}
BOB = {"customer_id": "c-2", "email": "bob@example.com"}
SECRETS = [b"alice@example.com", b"Oberkampf", b"Alice Liddell"]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "evt.toml").write_text('model = "model.py"\nkeys = "keys.db"\n')
    return tmp_path


def raw_bytes(*paths: str) -> bytes:
    return b"".join(Path(p).read_bytes() for p in paths if os.path.exists(p))


def store_files(name: str = "events.db") -> list[str]:
    return [name, name + "-wal"]


def append_people(evt) -> None:
    assert evt("append", "customer-1", "customer.registered", json.dumps(ALICE), "-q").exit_code == 0
    assert evt("append", "customer-2", "customer.registered", json.dumps(BOB), "-q").exit_code == 0
    assert evt("append", "customer-1", "customer.renamed", json.dumps({"customer_id": "c-1", "name": "Alice Liddell"}), "-q").exit_code == 0
    assert evt("append", "order-1", "order.placed", '{"total": 5}', "-q").exit_code == 0


def key_rows(path: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT key_id, subject_sha256, key FROM evt_subject_keys ORDER BY created_at").fetchall()
    finally:
        conn.close()


def test_personal_values_are_encrypted_in_the_files_and_read_decrypted_in_every_format(evt, project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert evt("append", "order-0", "order.placed", '{"total": 1}', "-q").exit_code == 0
    keeper = sqlite3.connect("events.db")  # an open reader keeps the -wal file, as a busy store has one
    keeper.execute("SELECT count(*) FROM events").fetchone()
    append_people(evt)
    assert os.path.getsize("events.db-wal") > 0
    stored = raw_bytes(*store_files())
    for secret in SECRETS:
        assert secret not in stored
    assert key_rows("events.db") == []  # the keys are in the key file, not in the store
    assert [hashlib.sha256(s.encode()).digest() for s in ("c-1", "c-2")] == [row[1] for row in key_rows("keys.db")]
    assert oct(os.stat("keys.db").st_mode & 0o777) == "0o600"
    (data,) = keeper.execute("SELECT data FROM events WHERE position = 2").fetchone()
    stored_data = json.loads(data)
    assert stored_data["customer_id"] == "c-1"
    assert stored_data["email"].startswith("evt:enc:1:") and stored_data["address"].startswith("evt:enc:1:")
    keeper.close()

    ndjson = evt("read", "--format", "ndjson").json()
    assert [e["data"] for e in ndjson[1:4]] == [ALICE, BOB, {"customer_id": "c-1", "name": "Alice Liddell", "source": "v1"}]
    assert evt("read", "--format", "json").stdout.count("alice@example.com") == 1
    assert evt("read", "--raw").json()[3]["data"] == {"customer_id": "c-1", "name": "Alice Liddell"}
    cloudevents = evt("read", "--format", "cloudevents").json()
    assert cloudevents[1]["data"] == ALICE and cloudevents[2]["data"] == BOB
    assert "alice@example.com" in evt("read", "--format", "cloudevents-json").stdout
    assert "alice@example.com" in evt("read", "--format", "table").stdout
    assert evt("read", "customer-1", "--format", "ndjson").json()[0]["data"] == ALICE
    assert evt("tail", "-n", "3", "--format", "ndjson").json()[0]["data"] == BOB
    assert json.loads(evt("aggregate", "customer", "customer-1").stdout) == {"email": "alice@example.com", "name": "Alice Liddell"}


def test_the_sql_built_lines_equal_the_python_built_ones(evt, project):
    append_people(evt)
    from evt.log.store import Store

    with Store("events.db", keys="keys.db") as store:
        assert list(store.read_json()) == [e.to_json() for e in store.read()]
        from evt.log import cloudevents

        assert list(store.read_json(cloudevents=True)) == [cloudevents.to_json(e) for e in store.read()]


def test_forget_erases_the_subject_everywhere_and_leaves_the_others(evt, project):
    append_people(evt)
    assert evt("replay").exit_code == 0
    alice_key = key_rows("keys.db")[0][2]
    assert len(alice_key) == 32 and alice_key in raw_bytes("keys.db", "keys.db-wal")

    result = evt("forget", "c-1", "--format", "json")
    assert result.exit_code == 0, result.stderr
    (summary,) = json.loads(result.stdout)
    assert summary["subject"] == "c-1" and summary["keysDestroyed"] == 1 and summary["events"] == 2
    assert summary["streams"] == ["customer-1"] and summary["firstPosition"] == 1
    assert summary["affected"] == ["emails"] and summary["walCheckpointed"] is True
    assert result.stderr == "projection emails has read the erased events (checkpoint 4): rebuild it with evt replay emails --rebuild\n"

    assert alice_key not in raw_bytes(*store_files(), "keys.db", "keys.db-wal")
    # The projection not rebuilt still holds what it made of the events (as stderr said);
    # nothing else does.
    conn = sqlite3.connect("events.db")
    conn.execute("DROP TABLE emails")
    conn.commit()
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for secret in SECRETS:
        assert secret not in raw_bytes(*store_files(), "keys.db", "keys.db-wal")
    assert [row[1] for row in key_rows("keys.db")] == [hashlib.sha256(b"c-2").digest()]

    events = evt("read", "--format", "ndjson").json()
    assert events[0]["data"] == {"customer_id": "c-1", "email": "[forgotten]", "address": "[forgotten]"}
    assert events[1]["data"] == BOB
    assert events[2]["data"] == {"customer_id": "c-1", "name": "[forgotten]", "source": "v1"}
    assert events[3]["data"] == {"total": 5}
    assert evt("read", "--format", "cloudevents").json()[0]["data"]["email"] == "[forgotten]"
    assert json.loads(evt("aggregate", "customer", "customer-1").stdout) == {"email": "[forgotten]", "name": "[forgotten]"}
    assert json.loads(evt("aggregate", "customer", "customer-2").stdout)["email"] == "bob@example.com"

    conn = sqlite3.connect("events.db")
    audit = conn.execute("SELECT subject_sha256, events, first_position FROM evt_forgotten").fetchall()
    assert audit == [(hashlib.sha256(b"c-1").digest(), 2, 1)]
    conn.close()


def test_forget_with_rebuild_projections_rebuilds_them_from_what_is_readable(evt, project):
    append_people(evt)
    assert evt("replay").exit_code == 0
    result = evt("forget", "c-1", "--rebuild-projections", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["rebuilt"] == ["emails"]
    conn = sqlite3.connect("events.db")
    assert conn.execute("SELECT customer, email FROM emails ORDER BY customer").fetchall() == [
        ("c-1", "[forgotten]"), ("c-2", "bob@example.com")
    ]
    conn.close()
    assert b"alice@example.com" not in raw_bytes(*store_files())


def test_keys_kept_in_the_store_are_overwritten_when_forgotten(evt, tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    append_people(lambda *a: evt(*a, "--model", "model.py"))
    assert not os.path.exists("keys.db")
    alice_key = key_rows("events.db")[0][2]
    assert alice_key in raw_bytes(*store_files())
    assert evt("forget", "c-1", "--format", "json").exit_code == 0
    stored = raw_bytes(*store_files())
    assert alice_key not in stored
    for secret in SECRETS:
        assert secret not in stored
    assert evt("read").json()[0]["data"]["email"] == "[forgotten]"


def test_a_copy_of_the_store_alone_holds_no_keys_and_says_so(evt, project, tmp_path, tmp_path_factory):
    append_people(evt)
    copy = tmp_path_factory.mktemp("copy")  # no evt.toml above it
    shutil.copy("events.db", copy / "events.db")
    assert key_rows(str(copy / "events.db")) == []
    os.chdir(copy)
    result = evt("read", "--format", "ndjson")
    assert result.exit_code == 0
    assert result.stderr == (
        "evt: some personal fields are encrypted with keys this store does not hold; they read as "
        "'[encrypted: no key]' (give the key file: --keys FILE, EVT_KEYS or keys = \"…\" in evt.toml)\n"
    )
    assert result.json()[0]["data"] == {"customer_id": "c-1", "email": "[encrypted: no key]", "address": "[encrypted: no key]"}
    assert result.json()[1]["data"]["email"] == "[encrypted: no key]"
    assert not os.path.exists("keys.db")  # reading never creates a key file
    given = evt("read", "--keys", str(tmp_path / "keys.db"), "--format", "ndjson")
    assert given.stderr == "" and given.json()[0]["data"] == ALICE


def test_reading_with_a_missing_key_file_says_which(evt, project):
    append_people(evt)
    os.rename("keys.db", "elsewhere.db")
    result = evt("read", "--format", "ndjson")
    assert result.stderr == f"evt: some personal fields are encrypted with keys not in the key file {project / 'keys.db'} (it does not exist); they read as '[encrypted: no key]'\n"
    assert not os.path.exists("keys.db")


def test_forgetting_an_unknown_subject_is_exit_4_and_again_is_a_no_op(evt, project):
    append_people(evt)
    result = evt("forget", "nobody")
    assert (result.exit_code, result.stdout, result.stderr) == (4, "", "evt: no personal data of subject 'nobody' is kept here: no key was ever made for it\n")
    assert evt("forget", "c-2", "--format", "json").exit_code == 0
    again = evt("forget", "c-2", "--format", "json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)[0]["alreadyForgotten"] is True and json.loads(again.stdout)[0]["keysDestroyed"] == 0


def test_a_subject_appended_after_forget_gets_a_new_key(evt, project):
    append_people(evt)
    assert evt("forget", "c-2").exit_code == 0
    assert evt("append", "customer-2", "customer.registered", json.dumps({**BOB, "email": "bob@new.example"}), "-q").exit_code == 0
    emails = [e["data"]["email"] for e in evt("read", "customer-2").json()]
    assert emails == ["[forgotten]", "bob@new.example"]


def test_a_value_moved_to_another_event_does_not_decrypt(evt, project):
    append_people(evt)
    conn = sqlite3.connect("events.db")
    (alice,) = conn.execute("SELECT data FROM events WHERE position = 1").fetchone()
    (bob,) = conn.execute("SELECT data FROM events WHERE position = 2").fetchone()
    conn.executescript("DROP TRIGGER events_append_only_update")
    moved = {**json.loads(bob), "email": json.loads(alice)["email"]}
    conn.execute("UPDATE events SET data = ? WHERE position = 2", (json.dumps(moved, separators=(",", ":")),))
    conn.commit()
    conn.close()
    result = evt("read", "customer-2")
    assert result.exit_code == 6
    assert result.stderr == (
        "evt: events.db: data.email of the event at position 2 does not decrypt with its key: "
        "it was changed, or moved from another event or field (evt verify finds where)\n"
    )


def test_data_that_looks_encrypted_is_refused(evt, project):
    result = evt("append", "order-1", "order.placed", '{"total": 1, "note": "evt:enc:1:x:y"}')
    assert (result.exit_code, result.stderr) == (5, "evt: data.note starts with 'evt:enc:1:', which evt reserves for encrypted personal fields\n")
    assert not os.path.exists("events.db")


def test_an_event_without_its_subject_is_refused(evt, project):
    result = evt("append", "customer-9", "customer.registered", '{"email": "x@example.com", "customer_id": ""}', "--no-validate")
    assert result.exit_code == 5
    assert result.stderr == "evt: customer.registered v1 has personal fields of the subject named by data.customer_id, which is '' (a non-empty string or a whole number)\n"


def test_no_validate_still_encrypts(evt, project):
    assert evt("append", "customer-1", "customer.registered", json.dumps(ALICE), "--no-validate", "-q").exit_code == 0
    for secret in SECRETS[:2]:
        assert secret not in raw_bytes("events.db")
    assert evt("read").json()[0]["data"] == ALICE


@pytest.mark.parametrize("declaration, message", [
    ('personal=["email"]', "personal fields need subject=, the data field naming whose they are (e.g. subject='customer_id')"),
    ('personal=["email"], subject="email"', "the subject field 'email' cannot be personal: it stays readable, naming whose the personal fields are"),
    ('personal=["mail"], subject="customer_id"', None),
])
def test_personal_declarations_are_checked(evt, tmp_path, declaration, message):
    (tmp_path / "m.py").write_text(f'''
from pydantic import BaseModel
from evt import Model
model = Model()

@model.schema("customer.registered", {declaration})
class Registered(BaseModel):
    customer_id: str
    email: str
''')
    result = evt("append", "c", "customer.registered", "{}", "--model", "m.py")
    assert result.exit_code == 2
    if message is None:
        assert "personal or subject field 'mail' is not a field of Registered" in result.stderr
    else:
        assert message in result.stderr


def test_upcast_in_place_keeps_personal_fields_encrypted(evt, project):
    append_people(evt)
    assert evt("append", "customer-2", "customer.renamed", '{"customer_id": "c-2", "name": "Bob Builder"}', "-q").exit_code == 0
    assert evt("forget", "c-2").exit_code == 0
    result = evt("upcast", "run", "--in-place", "--format", "json")
    assert result.exit_code == 0, result.stderr
    stored = raw_bytes(*store_files())
    assert b"Alice Liddell" not in stored and b"Bob Builder" not in stored
    renamed = [e for e in evt("read", "--raw").json() if e["type"] == "customer.renamed"]
    assert [(e["version"], e["data"]) for e in renamed] == [
        (2, {"customer_id": "c-1", "name": "Alice Liddell", "source": "v1"}),
        (2, {"customer_id": "c-2", "name": "[forgotten]", "source": "v1"}),
    ]


def test_a_consumer_and_a_trace_see_the_decrypted_values(evt, project):
    append_people(evt)
    result = evt("consume", "copier", "--type", "customer.registered", "--exec", "cat >> got.ndjson")
    assert result.exit_code == 0, result.stderr
    got = [json.loads(line) for line in Path("got.ndjson").read_text().splitlines()]
    assert [e["data"] for e in got] == [ALICE, BOB]
    first_id = evt("read", "--limit", "1").json()[0]["id"]
    assert "alice@example.com" in evt("trace", first_id, "--format", "json").stdout


def test_streams_with_personal_fields_are_never_snapshotted(evt, project):
    append_people(evt)
    assert evt("aggregate", "customer", "customer-1").exit_code == 0
    conn = sqlite3.connect("events.db")
    assert conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 0
    conn.close()
    result = evt("aggregate", "customer", "customer-1", "--snapshot")
    assert result.exit_code == 2
    assert result.stderr == "evt: customer-1 has events with personal fields: a snapshot would keep them decrypted, in clear, so evt does not snapshot it (evt forget could not reach it)\n"


def test_append_without_personal_fields_does_not_import_cryptography(project):
    code = (
        "import sys\n"
        "from evt.__main__ import main\n"
        "assert main(['append', 'order-1', 'order.placed', '{\"total\": 5}', '-q']) == 0\n"
        "assert main(['read']) == 0\n"
        "print('cryptography' in ' '.join(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


WRITER = """
import sys
from evt.log.envelope import NewEvent
from evt.log.store import Store
from evt.model.loader import load_model

model = load_model("model.py", search_path=["."])
start, subject = int(sys.argv[1]), sys.argv[2]
with Store("events.db", model=model, keys="keys.db") as store:
    n = start
    while True:
        who = subject or f"c-{n}"
        store.append(NewEvent(f"customer-{n}", "customer.registered", {"customer_id": who, "email": f"{who}@example.com"}))
        n += 1
        if subject:
            break
"""


def test_a_writer_killed_at_any_moment_never_leaves_an_event_without_its_key(project):
    (project / "writer.py").write_text(WRITER)
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, "writer.py", str(round_ * 100000), ""], cwd=project)
        deadline = time.monotonic() + 30
        target = (round_ + 1) * 20
        while _count(project) < target:
            assert time.monotonic() < deadline and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    from evt.log.store import Store

    with Store(project / "events.db", keys=project / "keys.db") as store:
        events = list(store.read())
    assert len(events) >= 80
    assert all(e.data["email"] == f"{e.data['customer_id']}@example.com" for e in events)


def _count(project) -> int:
    if not os.path.exists(project / "events.db"):
        return 0
    conn = sqlite3.connect(project / "events.db", timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_writers_of_one_new_subject_at_once_make_one_key(project):
    (project / "writer.py").write_text(WRITER)
    assert subprocess.run([sys.executable, "writer.py", "0", "c-0"], cwd=project).returncode == 0  # the store and key file exist
    procs = [subprocess.Popen([sys.executable, "writer.py", str(n), "c-new"], cwd=project) for n in range(1, 9)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8
    subjects = [row[1] for row in key_rows(str(project / "keys.db"))]
    assert sorted(subjects) == sorted([hashlib.sha256(b"c-0").digest(), hashlib.sha256(b"c-new").digest()])
    result = subprocess.run(evt_command() + ["read", "--format", "ndjson"], cwd=project, capture_output=True, text=True)
    emails = [json.loads(line)["data"]["email"] for line in result.stdout.splitlines()]
    assert emails == ["c-0@example.com"] + ["c-new@example.com"] * 8
