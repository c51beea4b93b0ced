"""evt redact: values taken out of stored events for good, with a backup and an audit record."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evt import NewEvent, Store
from evt.errors import UsageError
from evt.ops import redact as redaction

# Distinctive strings: after a redaction they must be nowhere in the store's bytes.
MARKERS = ("ZEBULON-MARK", "MAIL-MARK", "IP-MARK", "STREET-MARK", "ITEM-MARK-1", "ITEM-MARK-2", "NOTE-MARK")


def envelope(n: int, stream: str, type_: str, data: dict, metadata: dict | None = None) -> dict:
    return {
        "id": f"e{n}",
        "stream": stream,
        "type": type_,
        "timestamp": f"2026-11-01T10:00:0{n}.000000Z",
        "data": data,
        **({"metadata": metadata} if metadata is not None else {}),
    }


EVENTS = [
    envelope(1, "customer-1", "customer.registered", {"name": "Zed ZEBULON-MARK", "email": "zed@MAIL-MARK.example", "tier": "gold"}, {"ip": "IP-MARK", "agent": "cli"}),
    envelope(2, "customer-2", "customer.registered", {"name": "Amy", "email": "amy@example.org"}),
    envelope(3, "customer-1", "customer.moved", {"address": {"street": "1 STREET-MARK", "city": "Oslo"}, "items": [{"email": "ITEM-MARK-1", "n": 1}, {"email": "ITEM-MARK-2", "n": 2}]}),
    envelope(4, "order-9", "order.noted", {"orderId": "9", "note": "NOTE-MARK"}),
]


@pytest.fixture
def store(evt, tmp_path):
    r = evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS))
    assert r.exit_code == 0, r
    return tmp_path / "events.db"


def rows(path="events.db", sql="SELECT * FROM events ORDER BY position") -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def store_bytes(folder=".") -> dict[str, bytes]:
    "The store's own files (not its backups), as bytes."
    names = ("events.db", "events.db-wal", "events.db-shm")
    return {name: open(os.path.join(folder, name), "rb").read() for name in names if os.path.exists(os.path.join(folder, name))}


def unwritten(before: dict[str, bytes]) -> bool:
    "Nothing written since ``before``: the same file, and no frames in the WAL."
    now = store_bytes()
    return now["events.db"] == before["events.db"] and not now.get("events.db-wal")


def markers_in(files: dict[str, bytes], markers=MARKERS) -> dict[str, list[str]]:
    return {name: found for name, data in files.items() if (found := [m for m in markers if m.encode() in data])}


def data_of(evt, *positions) -> list[tuple]:
    events = evt("read", "--format", "ndjson").json()
    return [(e["data"], e["metadata"]) for e in events if not positions or e["position"] in positions]


def backups(folder=".") -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".bak-" in n)


def refuses_updates(path="events.db") -> bool:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE events SET data = '{}' WHERE position = 1")
    except sqlite3.IntegrityError as e:
        return "append-only" in str(e)
    finally:
        conn.close()
    return False


REDACTED = "[redacted]"


# -- redacting ----------------------------------------------------------------------------


def test_a_stream_is_redacted_whole_with_a_backup_an_audit_record_and_no_old_bytes(evt, store):
    before = rows()
    reader = sqlite3.connect("events.db")  # another connection keeps the WAL file in place
    reader.execute("SELECT count(*) FROM events").fetchone()
    r = evt("redact", "--stream", "customer-1", "--reason", "GDPR request 42", "--by", "dpo@example.org", "--yes", "--format", "ndjson")
    assert r.exit_code == 0, r
    [result] = r.json()
    [backup] = backups()
    assert re.fullmatch(r"events\.db\.bak-\d{8}T\d{6}Z", backup)
    assert result == {
        "mode": "redact",
        "store": "events.db",
        "redaction": 1,
        "backup": backup,
        "reason": "GDPR request 42",
        "by": "dpo@example.org",
        "snapshotsDropped": 0,
        "fields": ["data", "metadata"],
        "placeholder": REDACTED,
        "selected": 2,
        "redacted": 2,
        "unchanged": 0,
        "affected": [],
        "rebuilt": [],
        "scrubbed": True,
        "changes": [
            {"position": 1, "stream": "customer-1", "fields": ["data.name", "data.email", "data.tier", "metadata.ip", "metadata.agent"]},
            {"position": 3, "stream": "customer-1", "fields": ["data.address", "data.items"]},
        ],
    }
    assert r.stderr == (
        f"backup: {backup} (it holds the values being redacted: delete it once the redaction is checked)\n"
        f"the values are gone from events.db; the backup {backup} and any earlier backup or copy of events.db still hold them\n"
    )
    assert data_of(evt) == [
        ({"name": REDACTED, "email": REDACTED, "tier": REDACTED}, {"ip": REDACTED, "agent": REDACTED}),
        ({"name": "Amy", "email": "amy@example.org"}, {}),
        ({"address": REDACTED, "items": REDACTED}, {}),
        ({"orderId": "9", "note": "NOTE-MARK"}, {}),
    ]
    after = rows()
    assert [after[1], after[3]] == [before[1], before[3]]  # the other events, byte for byte
    assert [row[:10] for row in after] == [row[:10] for row in before]  # ids, streams, revisions, times…
    files = store_bytes()
    assert "events.db-wal" in files and markers_in(files, MARKERS[:-1]) == {}
    assert rows(backup) == before  # the backup is the store as it was
    assert rows(sql="SELECT id, redacted_by, reason, fields, positions, events, backup FROM evt_redactions") == [
        (1, "dpo@example.org", "GDPR request 42", '["data","metadata"]', "[1,3]", 2, os.path.abspath(backup))
    ]
    [(redacted_at,)] = rows(sql="SELECT redacted_at FROM evt_redactions")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", redacted_at)
    assert refuses_updates()
    assert rows(sql="PRAGMA integrity_check") == [("ok",)]
    reader.close()


def test_an_event_by_id_and_only_one_field(evt, store):
    before = rows()
    r = evt("redact", "--id", "e4", "--field", "data.note", "--reason", "support ticket", "--yes", "--format", "ndjson")
    assert r.exit_code == 0, r
    assert {k: r.json()[0][k] for k in ("fields", "selected", "redacted", "changes")} == {
        "fields": ["data.note"],
        "selected": 1,
        "redacted": 1,
        "changes": [{"position": 4, "stream": "order-9", "fields": ["data.note"]}],
    }
    assert data_of(evt, 4) == [({"orderId": "9", "note": REDACTED}, {})]
    assert rows()[:3] == before[:3]
    assert markers_in(store_bytes(), ["NOTE-MARK"]) == {}
    assert [m for m in MARKERS if m != "NOTE-MARK" and m.encode() not in open("events.db", "rb").read()] == []


def test_events_by_position_and_paths_into_objects_arrays_and_metadata(evt, store):
    r = evt(
        "redact", "--position", "3", "--position", "1",
        "--field", "data.address.street", "--field", "data.items.*.email", "--field", "metadata.ip", "--field", "data.email",
        "--reason", "erasure", "--yes", "--format", "ndjson",
    )
    assert r.exit_code == 0, r
    assert r.json()[0]["changes"] == [
        {"position": 1, "stream": "customer-1", "fields": ["metadata.ip", "data.email"]},
        {"position": 3, "stream": "customer-1", "fields": ["data.address.street", "data.items.0.email", "data.items.1.email"]},
    ]
    assert data_of(evt, 1, 3) == [
        ({"name": "Zed ZEBULON-MARK", "email": REDACTED, "tier": "gold"}, {"ip": REDACTED, "agent": "cli"}),
        ({"address": {"street": REDACTED, "city": "Oslo"}, "items": [{"email": REDACTED, "n": 1}, {"email": REDACTED, "n": 2}]}, {}),
    ]
    gone = ["MAIL-MARK", "IP-MARK", "STREET-MARK", "ITEM-MARK-1", "ITEM-MARK-2"]
    assert markers_in(store_bytes(), gone) == {}
    assert rows(sql="SELECT fields, positions FROM evt_redactions") == [
        ('["data.address.street","data.items.*.email","metadata.ip","data.email"]', "[1,3]")
    ]


def test_an_array_element_by_number(evt, store):
    r = evt("redact", "--position", "3", "--field", "data.items.1", "--reason", "x", "--yes", "--format", "ndjson")
    assert r.json()[0]["changes"] == [{"position": 3, "stream": "customer-1", "fields": ["data.items.1"]}]
    assert data_of(evt, 3)[0][0]["items"] == [{"email": "ITEM-MARK-1", "n": 1}, REDACTED]


def test_redacting_again_changes_nothing_and_keeps_no_second_record(evt, store):
    assert evt("redact", "--stream", "customer-1", "--reason", "first", "--yes").exit_code == 0
    after = rows()
    r = evt("redact", "--stream", "customer-1", "--reason", "second", "--yes", "--format", "ndjson")
    assert r.exit_code == 0, r
    assert {k: r.json()[0][k] for k in ("redaction", "backup", "selected", "redacted", "unchanged", "changes", "scrubbed")} == {
        "redaction": None, "backup": None, "selected": 2, "redacted": 0, "unchanged": 2, "changes": [], "scrubbed": True,
    }
    assert r.stderr == "nothing to redact: the selected values are redacted already; any backup or copy of events.db taken before still holds them\n"
    assert rows() == after and len(backups()) == 1
    assert rows(sql="SELECT reason FROM evt_redactions") == [("first",)]


def test_a_table_on_a_terminal(evt, store):
    r = evt("redact", "--id", "e4", "--field", "data.note", "--dry-run", "--format", "table")
    assert r.exit_code == 0, r
    assert "data.note" in r.stdout and "NOTE-MARK" not in r.stdout


# -- dry run and confirmation ---------------------------------------------------------------


def test_dry_run_shows_positions_and_fields_never_values_and_changes_nothing(evt, store):
    before = store_bytes()
    r = evt("redact", "--stream", "customer-1", "--dry-run", "--format", "ndjson")
    assert r.exit_code == 0, r
    assert r.json() == [
        {
            "mode": "dry-run",
            "store": "events.db",
            "fields": ["data", "metadata"],
            "placeholder": REDACTED,
            "selected": 2,
            "redacted": 2,
            "unchanged": 0,
            "changes": [
                {"position": 1, "stream": "customer-1", "fields": ["data.name", "data.email", "data.tier", "metadata.ip", "metadata.agent"]},
                {"position": 3, "stream": "customer-1", "fields": ["data.address", "data.items"]},
            ],
        }
    ]
    assert (r.stderr, backups()) == ("", []) and unwritten(before)
    assert not any(m in r.stdout for m in MARKERS)


def test_a_script_must_say_yes(evt, store):
    before = store_bytes()
    r = evt("redact", "--stream", "customer-1", "--reason", "x")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == "evt: evt redact rewrites 2 events for good: pass --yes to confirm (--dry-run shows what it would redact)\n"
    assert unwritten(before) and backups() == []


def on_a_terminal(folder, args: list[str], answer: bytes) -> tuple[int, str]:
    "Run evt with a terminal as stdin, answer the question; (exit code, what the terminal showed)."
    import pty

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "evt", *args], cwd=folder, stdin=terminal, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = b""
    while b"[y/N]" not in shown:
        chunk = os.read(controller, 1024)
        assert chunk, shown
        shown += chunk
    os.write(controller, answer)
    proc.stdout.read()
    code = proc.wait(timeout=60)
    try:
        while chunk := os.read(controller, 1024):
            shown += chunk
    except OSError:  # the terminal is gone with the process
        pass
    os.close(controller)
    return code, shown.decode().replace("\r\n", "\n")


def test_on_a_terminal_it_asks_first(store, tmp_path):
    before = store_bytes()
    args = ["redact", "--stream", "customer-1", "--reason", "x", "--format", "ndjson"]
    code, shown = on_a_terminal(tmp_path, args, b"n\n")
    assert code == 0
    assert shown.startswith("redact data, metadata of 2 events (position 1, 3) in events.db? This cannot be undone [y/N] ")
    assert shown.endswith("nothing redacted\n")
    assert unwritten(before) and backups() == []
    code, shown = on_a_terminal(tmp_path, args, b"y\n")
    assert code == 0 and "the values are gone from events.db" in shown
    assert len(backups()) == 1 and rows(sql="SELECT count(*) FROM evt_redactions") == [(1,)]


# -- refusals change nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, code, message",
    [
        ([], 2, "evt redact needs events to redact: --stream STREAM, --id ID or --position N"),
        (["--stream", "customer-1", "--yes"], 2, "evt redact needs --reason TEXT: why these events are redacted (it is kept in the audit record)"),
        (["--stream", "customer-1", "--reason", "", "--yes"], 2, "Invalid value for '--reason': needs a value, not an empty string (see 'evt redact --help')"),
        (["--position", "99", "--reason", "x", "--yes"], 4, "no event at position 99; nothing redacted"),
        (["--position", "1", "--position", "99", "--reason", "x", "--yes"], 4, "no event at position 99; nothing redacted"),
        (["--position", "0", "--reason", "x", "--yes"], 2, "Invalid value for '--position': must be 1 or more, not 0 (see 'evt redact --help')"),
        (["--id", "nope", "--reason", "x", "--yes"], 4, "no event has id 'nope'; nothing redacted"),
        (["--stream", "customer-3", "--reason", "x", "--yes"], 4, "stream 'customer-3' has no events; nothing redacted"),
        (["--stream", "customer-1", "--field", "data.emial", "--reason", "x", "--yes"], 4, "no selected event has data.emial; nothing redacted"),
        (["--stream", "customer-1", "--field", "email", "--reason", "x", "--yes"], 2, "cannot redact field 'email': a field is data or metadata, then keys joined by dots (data.customer.email)"),
        (["--stream", "customer-1", "--field", "data..email", "--reason", "x", "--yes"], 2, "cannot redact field 'data..email': a field is data or metadata, then keys joined by dots (data.customer.email)"),
    ],
)
def test_refusals_write_nothing(evt, store, args, code, message):
    before = store_bytes()
    r = evt("redact", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (code, "", f"evt: {message}\n")
    assert unwritten(before) and backups() == []


def test_a_missing_store_is_not_created(evt, tmp_path):
    r = evt("redact", "--stream", "s", "--reason", "x", "--yes")
    assert r.exit_code == 6 and r.stderr.startswith("evt: no store at events.db")
    assert os.listdir(tmp_path) == []


def test_the_library_needs_a_selection():
    with pytest.raises(UsageError):
        redaction.Selection()


# -- what depends on the redacted events ------------------------------------------------------

TOML = """
model = "model.py"

[projections.names]
setup = "CREATE TABLE IF NOT EXISTS names (stream TEXT PRIMARY KEY, name TEXT)"
[projections.names.on]
"customer.registered" = "INSERT OR REPLACE INTO names VALUES (:stream, json_extract(:data, '$.name'))"
"""

MODEL = """
from evt import Model
model = Model()

@model.aggregate("customer", initial={"name": None})
def customer(state, event):
    return {"name": event.data.get("name", state["name"])}
"""


def test_snapshots_go_and_projections_are_named_or_rebuilt(evt, store, tmp_path):
    (tmp_path / "evt.toml").write_text(TOML)
    (tmp_path / "model.py").write_text(MODEL)
    assert evt("replay", "names").exit_code == 0
    for stream in ("customer-1", "customer-2"):
        assert evt("aggregate", "customer", stream, "--snapshot").exit_code == 0
    assert b"ZEBULON-MARK" in open("events.db", "rb").read()
    r = evt("redact", "--id", "e1", "--field", "data.name", "--reason", "x", "--yes", "--format", "ndjson")
    assert r.exit_code == 0, r
    assert {k: r.json()[0][k] for k in ("snapshotsDropped", "affected", "rebuilt")} == {"snapshotsDropped": 1, "affected": ["names"], "rebuilt": []}
    assert r.stderr.splitlines()[1:3] == [
        "dropped 1 snapshot(s) of the affected streams",
        "projection names has read the erased events (checkpoint 4): rebuild it with evt replay names --rebuild",
    ]
    assert rows(sql="SELECT stream FROM snapshots") == [("customer-2",)]
    assert rows(sql="SELECT name FROM names WHERE stream = 'customer-1'") == [("Zed ZEBULON-MARK",)]  # until rebuilt
    r = evt("redact", "--id", "e1", "--field", "data.email", "--reason", "x", "--yes", "--rebuild-projections", "--format", "ndjson")
    assert r.exit_code == 0, r
    assert r.json()[0]["rebuilt"] == ["names"] and "rebuilt projection names" in r.stderr
    assert rows(sql="SELECT name FROM names WHERE stream = 'customer-1'") == [(REDACTED,)]
    assert markers_in(store_bytes(), ["ZEBULON-MARK", "MAIL-MARK"]) == {}


# -- a redaction killed mid-way (kill -9) ---------------------------------------------------------

BIG = 8_000


def big_store(path) -> None:
    "BIG events of one customer, each with a marker in its data."
    with Store(path, synchronous="normal") as store:
        store.write(
            (NewEvent("customer-7", "customer.noted", {"note": f"KILL-MARK-{n:06d}", "n": n}, id=f"k{n}") for n in range(BIG)),
            validate=False,
        )
        store.write([NewEvent("other-1", "other.noted", {"note": "stays"}, id="o1")])


REDACT_BIG = ["redact", "--stream", "customer-7", "--field", "data.note", "--reason", "erasure", "--yes", "--format", "ndjson"]


def settled(folder) -> str:
    "The store after a killed redaction: 'untouched' or 'redacted' (anything else fails)."
    db = os.path.join(folder, "events.db")
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    notes = rows(db, "SELECT json_extract(data, '$.note') FROM events ORDER BY position")
    assert notes[-1] == ("stays",) and len(notes) == BIG + 1
    records = rows(db, "SELECT events FROM evt_redactions")
    assert refuses_updates(db)
    if notes[0] == (REDACTED,):
        assert set(notes[:-1]) == {(REDACTED,)} and records == [(BIG,)]
        return "redacted"
    assert notes[:-1] == [(f"KILL-MARK-{n:06d}",) for n in range(BIG)] and records == []
    assert [n for n in os.listdir(folder) if ".bak-" in n and ".tmp-" not in n] == []  # no backup of a redaction that did not happen
    return "untouched"


def test_a_redaction_killed_at_any_moment_leaves_the_store_untouched_or_redacted_and_a_rerun_finishes(tmp_path):
    big_store(tmp_path / "original.db")
    (tmp_path / "whole").mkdir()
    shutil.copy(tmp_path / "original.db", tmp_path / "whole" / "events.db")
    started = time.monotonic()
    whole = subprocess.run([sys.executable, "-m", "evt", *REDACT_BIG], cwd=tmp_path / "whole", capture_output=True)
    took = time.monotonic() - started  # how long a whole redaction takes here
    assert whole.returncode == 0, whole.stderr
    for fraction in (0.2, 0.5, 0.8):
        folder = tmp_path / f"killed-{fraction}"
        folder.mkdir()
        shutil.copy(tmp_path / "original.db", folder / "events.db")
        proc = subprocess.Popen([sys.executable, "-m", "evt", *REDACT_BIG], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=took * fraction)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = settled(folder)
        # whatever the kill left, the same command finishes the job
        again = subprocess.run([sys.executable, "-m", "evt", *REDACT_BIG], cwd=folder, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["redacted"] == (BIG if state == "untouched" else 0)
        assert settled(folder) == "redacted"
        assert markers_in(store_bytes(folder), ["KILL-MARK-"]) == {}
        assert len([n for n in os.listdir(folder) if ".bak-" in n]) == 1  # one backup, named; no unfinished one left


def holding_a_snapshot(path="events.db") -> sqlite3.Connection:
    "A reader in the middle of a read transaction: it keeps the WAL from being checkpointed past it."
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()
    return reader


def test_killed_after_it_committed_the_store_is_redacted_and_the_same_command_wipes_the_old_bytes(evt, store, tmp_path):
    args = ["redact", "--stream", "customer-1", "--reason", "erasure", "--yes", "--format", "ndjson"]
    reader = holding_a_snapshot()  # the wipe waits for it: the redaction is killed there
    proc = subprocess.Popen([sys.executable, "-m", "evt", *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while rows(sql="SELECT count(*) FROM evt_redactions") == [(0,)] and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the redaction ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert markers_in({"events.db": open("events.db", "rb").read()}, ["ZEBULON-MARK"]) != {}  # not wiped yet
    reader.close()
    assert [d for d, _ in data_of(evt, 1, 3)] == [{"name": REDACTED, "email": REDACTED, "tier": REDACTED}, {"address": REDACTED, "items": REDACTED}]
    assert refuses_updates() and rows(sql="PRAGMA integrity_check") == [("ok",)]
    r = evt(*args)
    assert (r.exit_code, r.json()[0]["redacted"], r.json()[0]["scrubbed"]) == (0, 0, True)
    assert markers_in(store_bytes(), MARKERS[:-1]) == {}
    assert len(backups()) == 1 and ".tmp-" not in backups()[0]


def test_a_reader_that_keeps_the_wal_past_the_busy_timeout_is_reported_and_the_same_command_finishes(evt, store, monkeypatch):
    monkeypatch.setenv("EVT_BUSY_TIMEOUT", "0.2")
    args = ["redact", "--stream", "customer-1", "--reason", "erasure", "--yes", "--format", "ndjson"]
    reader = holding_a_snapshot()
    r = evt(*args)
    reader.close()
    assert r.exit_code == 6
    assert (r.json()[0]["redacted"], r.json()[0]["scrubbed"]) == (2, False)
    assert r.stderr.splitlines()[-1] == (
        "evt: the events are redacted, but a reader kept events.db-wal from being truncated past the busy timeout: "
        "old bytes may remain in it; run the same evt redact again when readers are done"
    )
    r = evt(*args)
    assert (r.exit_code, r.json()[0]["scrubbed"]) == (0, True)
    assert markers_in(store_bytes(), MARKERS[:-1]) == {}


# -- field paths, for any document --------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "0", "1"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.just(REDACTED),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)
PATHS = st.lists(st.sampled_from(["a", "b", "0", "1", "*"]), min_size=0, max_size=3).map(lambda steps: ".".join(["data", *steps]))


def at(document, steps: list[str]):
    for step in steps:
        document = document[int(step)] if isinstance(document, list) else document[step]
    return document


@given(data=st.dictionaries(KEYS, VALUES, max_size=4), paths=st.lists(PATHS, min_size=1, max_size=3))
@settings(max_examples=300, deadline=None)
def test_a_redaction_replaces_exactly_the_paths_it_reports_and_again_changes_nothing(data, paths):
    original = json.loads(json.dumps(data))
    documents = {"data": json.loads(json.dumps(data)), "metadata": {}}
    changed: list[str] = []
    for field in redaction.fields_of(paths):
        field.redact(documents, changed)
    assert len(changed) == len(set(changed))
    expected = json.loads(json.dumps(original))
    for path in changed:  # the original with the reported paths replaced is the result
        *parents, last = path.split(".")[1:]
        parent = at(expected, parents)
        parent[int(last) if isinstance(parent, list) else last] = REDACTED
        assert at(original, path.split(".")[1:]) != REDACTED  # only what was not redacted yet is reported
    assert documents["data"] == expected
    again: list[str] = []
    for field in redaction.fields_of(paths):
        field.redact(documents, again)
    assert again == []


def test_the_chain_verifies_after_redactions_and_still_catches_any_other_change(evt, store):
    head_before = json.loads(evt("verify").stdout)["headHash"]
    assert evt("redact", "--position", "1", "--field", "data.email", "--reason", "a", "--yes").exit_code == 0
    assert evt("redact", "--position", "1", "--field", "metadata.ip", "--reason", "b", "--yes").exit_code == 0  # again: first digests kept
    assert evt("redact", "--id", "e4", "--reason", "c", "--yes").exit_code == 0
    verified = evt("verify", "--expect-head", head_before)
    assert verified.exit_code == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert (report["verified"], report["redacted"], report["headHash"]) == (True, 2, head_before)  # nothing before it rewritten but by redaction
    assert rows(sql="SELECT position, redaction FROM evt_redacted_events ORDER BY position") == [(1, 1), (4, 3)]
    conn = sqlite3.connect("events.db")
    conn.executescript(
        "DROP TRIGGER events_append_only_update;"
        """UPDATE events SET data = replace(data, 'Oslo', 'Bergen') WHERE position = 3;"""
    )
    conn.close()
    r = evt("verify")
    assert (r.exit_code, r.stderr) == (
        8, "evt: verification failed at position 3: its hash does not match the event and the hash of position 2 (the event was changed, or an earlier hash recomputed)\n"
    )
