"""evt verify, as an attacker would try: the plain sqlite3 shell, a hex editor, a hash
recomputed by hand, a whole chain recomputed — each caught at its position, in one line,
exit 8. And what must pass: a clean log, a migrated old store, concurrent writers, a
redacted event, a read-only store.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt import EvtError, NewEvent, Store
from evt.log import migrations
from evt.ops.verify import verify

SQLITE3 = shutil.which("sqlite3")
COLUMNS = "position, revision, timestamp, id, stream, type, version, source, correlation_id, causation_id, data, metadata"
BEFORE_CHAIN = migrations.format_of("_event_hashes") - 1  # the format of a store from before the chain
BROKE = "its hash does not match the event and the hash of position {} (the event was changed, or an earlier hash recomputed)"


# -- an independent implementation of the README's recipe ------------------------------------


def body(row: tuple) -> bytes:
    "The README's body: the JSON array of the fields, then SHA-256 of data and of metadata."
    fields = json.dumps(list(row[:10]), ensure_ascii=False, separators=(",", ":")).encode()
    return fields + hashlib.sha256(row[10].encode()).digest() + hashlib.sha256(row[11].encode()).digest()


def recomputed(path, start: int = 1) -> list[bytes]:
    "Every hash, computed again from the stored fields (chained from the stored hash before ``start``)."
    conn = sqlite3.connect(path)
    try:
        previous = bytes(32) if start == 1 else conn.execute("SELECT hash FROM events WHERE position = ?", (start - 1,)).fetchone()[0]
        hashes = []
        for row in conn.execute(f"SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position", (start,)):
            previous = hashlib.sha256(previous + body(row)).digest()
            hashes.append(previous)
        return hashes
    finally:
        conn.close()


def stored_hashes(path) -> list[bytes]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT hash FROM events ORDER BY position")]
    finally:
        conn.close()


def shell(path, *statements: str) -> None:
    "Run SQL with the plain sqlite3 shell, as a person with the file would."
    if SQLITE3 is None:
        pytest.skip("the sqlite3 shell is not installed")
    proc = subprocess.run([SQLITE3, str(path)], input="\n".join(s.rstrip(";") + ";" for s in statements), capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr


UNLOCK = "DROP TRIGGER events_append_only_update"
UNLOCK_DELETE = "DROP TRIGGER events_append_only_delete"
RELOCK = migrations.APPEND_ONLY_TRIGGERS["events_append_only_update"]
RELOCK_DELETE = migrations.APPEND_ONLY_TRIGGERS["events_append_only_delete"]


def tamper(path, *statements: str) -> None:
    "Drop the triggers, run the statements, put the triggers back: the store looks untouched."
    shell(path, UNLOCK, UNLOCK_DELETE, *statements, RELOCK, RELOCK_DELETE)


@pytest.fixture
def log(evt):
    "A clean 8-event log over three streams (events.db); returns its head hash."
    lines = [
        {"stream": f"order-{i % 3}", "type": "order.noted", "data": {"n": i, "note": f"MARKER-{i:04d}"},
         "source": "checkout" if i % 2 else None, "metadata": {"user": f"u{i}"} if i % 3 else {}}
        for i in range(1, 9)
    ]
    result = evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(line) + "\n" for line in lines))
    assert result.exit_code == 0, result
    report = evt("verify")
    assert report.exit_code == 0, report
    return report.json()[0]["headHash"]


def failed(evt, *args) -> tuple[int, str, str]:
    result = evt("verify", *args)
    return result.exit_code, result.stdout, result.stderr


def at(position: int, what: str) -> tuple[int, str, str]:
    return 8, "", f"evt: verification failed at position {position}: {what}\n"


# -- a clean log ----------------------------------------------------------------------------


def test_a_clean_log_verifies_and_prints_its_head_and_hash(evt, log):
    result = evt("verify", "--format", "json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.json() == [
        {"path": "events.db", "verified": True, "head": 8, "headHash": log, "from": 1, "events": 8, "redacted": 0}
    ]
    assert log == stored_hashes("events.db")[-1].hex() and len(log) == 64


def test_every_stored_hash_is_the_documented_recipe(log):
    assert stored_hashes("events.db") == recomputed("events.db")


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_name = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc", "Cf", "Co", "Cn")), min_size=1, max_size=10)
_envelope = st.fixed_dictionaries(
    {"stream": _name, "type": _name},
    optional={
        "data": st.dictionaries(_text, st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), _text, st.lists(st.integers(), max_size=3)), max_size=4),
        "metadata": st.dictionaries(_text, _text, max_size=2),
        "id": _name,
        "version": st.integers(1, 5),
        "source": st.one_of(st.none(), _text),
        "correlation_id": st.one_of(st.none(), _text),
        "causation_id": st.one_of(st.none(), _text),
        "timestamp": st.sampled_from([None, "2026-01-02T03:04:05.123456Z", "1999-12-31T23:59:59Z"]),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_envelope, min_size=1, max_size=6), min_size=1, max_size=4))
def test_any_events_appended_store_the_documented_hashes(tmp_path_factory, batches):
    "Whatever the fields (none, quotes, any script, given ids and timestamps), each write's hashes are the recipe's."
    path = tmp_path_factory.mktemp("chain") / "events.db"
    with Store(path) as store:
        for envelopes in batches:
            events, ids = [], set()
            for envelope in envelopes:
                if envelope.get("id") in ids:
                    envelope = {k: v for k, v in envelope.items() if k != "id"}
                ids.add(envelope.get("id"))
                events.append(NewEvent(**envelope))
            try:
                store.write(events)
            except EvtError:  # an id given again by a later write with other content: refused, nothing written
                pass
    assert stored_hashes(path) == recomputed(path)


def test_a_connection_taking_too_few_parameters_for_one_row_writes_nothing(tmp_path):
    "Never reached with SQLite's limits (999 at the least); if it were, the write fails whole instead of leaving rows out."
    with Store(tmp_path / "events.db") as store:
        store.write([NewEvent("first", "t.x")])
        store._writer_connection().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 8)
        with pytest.raises(ValueError, match="too few parameters"):
            store.write([NewEvent("s-1", "t.x", {"i": i}) for i in range(3)])
        assert store.head() == 1


def test_neighbours_that_differ_in_one_field_each_store_their_own_hashes(tmp_path):
    "A write's events share the encoded part of the body only while every field in it is the same."
    base = {"stream": "order-1", "type": "order.placed"}
    changes = [
        {}, {}, {"version": 2}, {"version": 2}, {"source": "shop"}, {"correlation_id": "c-1"}, {"causation_id": "c-1"},
        {"source": "shop", "correlation_id": "c-1", "causation_id": "c-2"}, {"stream": "order-2"}, {"type": "order.paid"},
        {"id": 'given "quoted" \\ id'}, {"id": "given-2"}, {}, {"stream": "order-1"},
    ]
    path = tmp_path / "events.db"
    with Store(path) as store:
        store.write([NewEvent(**{**base, **change}) for change in changes])
    assert stored_hashes(path) == recomputed(path)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT version, source, correlation_id, causation_id, stream, type FROM events ORDER BY position").fetchall()
    conn.close()
    assert rows[2:4] == [(2, None, None, None, "order-1", "order.placed")] * 2
    assert rows[7] == (1, "shop", "c-1", "c-2", "order-1", "order.placed")


def _mix(kind: str, size: int) -> list[NewEvent]:
    if kind == "mixed":  # streams and ids in turn: rows of every column, and of the plain ones
        return [
            NewEvent(f"s-{i % 7}", "t.x", {"i": i}, source="src" if i % 3 == 0 else None, correlation_id="c" if i % 5 == 0 else None)
            for i in range(size)
        ]
    if kind == "one stream":  # stream, type, version, timestamp and metadata bound once a statement
        return [NewEvent("s-1", "t.x", {"i": i}) for i in range(size)]
    # one stream for the first half, then what each row shares changes: whole rows from there
    changed = [{"stream": "s-2"}, {"type": "t.y"}, {"version": 2}, {"metadata": {"m": 1}}, {"timestamp": "2026-01-02T03:04:05Z"}]
    return [NewEvent(**{"stream": "s-1", "type": "t.x", "data": {"i": i}, **(changed[i % 5] if i >= size // 2 else {})}) for i in range(size)]


@pytest.mark.parametrize("size", [1, 2, 9, 49, 99, 100, 101, 199, 499, 500, 501])
@pytest.mark.parametrize("parameters", [None, 999])
@pytest.mark.parametrize("mix", ["mixed", "one stream", "one stream, then others"])
def test_writes_of_every_statement_size_store_each_event_once_in_order(tmp_path, size, parameters, mix):
    """Rows go in as multi-row INSERTs of a few sizes (100, 80, ... 1 rows), events without
    source, correlation and causation ids apart from the others, those that share stream,
    type, version, timestamp and metadata with those bound once, and no more parameters to
    a statement than SQLite takes (999 before SQLite 3.32): whatever the size and the mix,
    each event is stored once, at its position, with its fields and the recipe's hash."""
    path = tmp_path / "events.db"
    events = _mix(mix, size)
    with Store(path) as store:
        if parameters is not None:
            store._writer_connection().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, parameters)
        assert store.write([NewEvent("first", "t.x")]) == [1]
        assert store.write(events) == list(range(2, size + 2))
        stored = [(e.stream, e.type, e.version, e.data, e.metadata, e.source, e.correlation_id) for e in store.read()][1:]
        stamped = {e.timestamp for e in list(store.read())[1:]}
    assert stored == [(e.stream, e.type, e.version, e.data, e.metadata, e.source, e.correlation_id) for e in events]
    assert len(stamped) == (1 if mix != "one stream, then others" or size < 9 else 2)  # the store's time, and the one given
    assert stored_hashes(path) == recomputed(path)
    conn = sqlite3.connect(path)
    revisions = conn.execute("SELECT stream, group_concat(revision) FROM (SELECT * FROM events ORDER BY position) GROUP BY stream").fetchall()
    conn.close()
    assert all(revs.split(",") == [str(n) for n in range(1, len(revs.split(",")) + 1)] for _, revs in revisions)


def test_the_readmes_recipe_computes_the_stored_hashes(log):
    "The README's Python recipe, run as written, gives every stored hash: an auditor needs nothing from evt."
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Tamper evidence: evt verify", 1)[1].split("\n### ", 1)[0]
    [recipe] = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    namespace: dict = {}
    exec(compile(recipe, "README.md, Tamper evidence", "exec"), namespace)
    assert [h for _, h in namespace["hashes"]("events.db")] == [h.hex() for h in stored_hashes("events.db")]
    assert list(namespace["hashes"]("events.db"))[-1] == (8, log)


def test_an_empty_log_verifies_with_no_head_hash(evt):
    Store("events.db").close()
    result = evt("verify")
    assert (result.exit_code, result.json()) == (
        0, [{"path": "events.db", "verified": True, "head": 0, "headHash": None, "from": 1, "events": 0, "redacted": 0}]
    )


def test_the_table_names_the_head_hash(evt, log, monkeypatch):
    result = evt("verify", "--format", "table")
    assert result.exit_code == 0
    assert f"headHash  {log}" in result.stdout and "head      8" in result.stdout


def test_verify_never_writes_nor_creates_a_file(evt, log, tmp_path):
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert evt("verify").exit_code == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    missing = evt("verify", "--db", "nothing.db")
    assert (missing.exit_code, missing.stdout) == (6, "")
    assert missing.stderr.startswith("evt: no store at nothing.db")
    assert not (tmp_path / "nothing.db").exists()


# -- tampering with the plain sqlite3 shell ---------------------------------------------------


def test_a_changed_data_byte_is_caught_at_its_position(evt, log):
    tamper("events.db", "UPDATE events SET data = replace(data, 'MARKER-0004', 'MARKER-0005') WHERE position = 4")
    assert failed(evt) == at(4, BROKE.format(3))


def test_a_changed_first_event_says_so(evt, log):
    tamper("events.db", "UPDATE events SET type = 'order.forged' WHERE position = 1")
    assert failed(evt) == at(1, "its hash does not match the event (the event was changed)")


def test_a_deleted_row_is_caught_where_the_positions_break(evt, log):
    tamper("events.db", "DELETE FROM events WHERE position = 5")
    assert failed(evt) == at(5, "the event is missing (the log goes on at position 6): it was deleted")


def test_two_swapped_rows_are_caught_at_the_first(evt, log):
    tamper(
        "events.db",
        "UPDATE events SET position = -3 WHERE position = 3",
        "UPDATE events SET position = 3 WHERE position = 6",
        "UPDATE events SET position = 6 WHERE position = -3",
    )
    assert failed(evt) == at(3, BROKE.format(2))


def test_swapped_contents_with_the_positions_kept_are_caught(evt, log):
    "Two events of one stream exchange their data, metadata, source, timestamp and hashes."
    swap = ", ".join(
        f"{c} = CASE position WHEN 2 THEN (SELECT {c} FROM events WHERE position = 5) ELSE (SELECT {c} FROM events WHERE position = 2) END"
        for c in ("data", "metadata", "source", "timestamp", "hash")
    )
    tamper("events.db", f"UPDATE events SET {swap} WHERE position IN (2, 5)")
    assert failed(evt) == at(2, BROKE.format(1))


def test_a_changed_timestamp_is_caught(evt, log):
    tamper("events.db", "UPDATE events SET timestamp = '2020-01-01T00:00:00.000000Z' WHERE position = 6")
    assert failed(evt) == at(6, BROKE.format(5))


def test_a_value_stored_as_another_kind_is_caught(evt, log):
    "The type's bytes as a BLOB: what readers print is the same, the chain is not."
    tamper("events.db", "UPDATE events SET type = CAST(type AS BLOB) WHERE position = 7")
    assert failed(evt) == at(7, "type holds a BLOB, where evt stores text")


def test_a_hash_recomputed_by_hand_for_one_event_breaks_the_next_link(evt, log):
    tamper("events.db", "UPDATE events SET data = replace(data, 'MARKER-0003', 'MARKER-9999') WHERE position = 3")
    forged = recomputed("events.db", 3)[0]  # the attacker's own correct hash for the changed event
    tamper("events.db", f"UPDATE events SET hash = X'{forged.hex()}' WHERE position = 3")
    assert failed(evt) == at(4, BROKE.format(3))


def test_a_hash_removed_or_cut_short_is_caught(evt, log):
    tamper("events.db", "UPDATE events SET hash = NULL WHERE position = 2")
    assert failed(evt) == at(2, "the event has no hash")
    tamper("events.db", "UPDATE events SET hash = X'00' WHERE position = 2")
    assert failed(evt) == at(2, "its hash is not 32 bytes of SHA-256 (bytes of length 1)")


def test_a_revision_gap_with_a_recomputed_chain_is_still_caught(evt, log):
    "Whoever recomputes the whole chain still cannot make a stream skip a revision."
    tamper("events.db", "UPDATE events SET revision = revision + 1 WHERE position = 8")
    forged = recomputed("events.db", 8)[0]
    tamper("events.db", f"UPDATE events SET hash = X'{forged.hex()}' WHERE position = 8")
    stream, revision = sqlite3.connect("events.db").execute("SELECT stream, revision FROM events WHERE position = 8").fetchone()
    assert failed(evt) == at(8, f"stream {stream!r} goes from revision {revision - 2} to {revision}")


def test_triggers_dropped_and_not_restored_are_caught(evt, log):
    shell("events.db", UNLOCK)
    assert failed(evt) == (8, "", "evt: verification failed: the append-only trigger events_append_only_update is missing (events can be changed)\n")


def test_a_trigger_that_no_longer_refuses_is_caught(evt, log):
    shell("events.db", UNLOCK_DELETE, RELOCK_DELETE.replace("BEFORE DELETE ON events", "BEFORE DELETE ON events WHEN 0"))
    assert failed(evt) == (8, "", "evt: verification failed: the append-only trigger events_append_only_delete is not the one evt creates (it was altered)\n")


def test_an_index_out_of_step_with_the_table_fails_the_integrity_check(evt, log):
    "An index that no longer matches its rows (a read by it would lie): SQLite's integrity check says so."
    shell(
        "events.db",
        "PRAGMA writable_schema = ON",
        "UPDATE sqlite_schema SET sql = replace(sql, 'ON events (timestamp)', 'ON events (type)') WHERE name = 'events_timestamp'",
    )
    code, out, err = failed(evt)
    assert (code, out) == (8, "")
    assert err.startswith("evt: verification failed: the file is damaged (PRAGMA integrity_check: ") and err.count("\n") == 1
    assert "events_timestamp" in err


def test_a_byte_changed_with_a_hex_editor_is_caught(evt, log, tmp_path):
    sqlite3.connect("events.db").execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    raw = (tmp_path / "events.db").read_bytes()
    assert raw.count(b"MARKER-0006") == 1
    (tmp_path / "events.db").write_bytes(raw.replace(b"MARKER-0006", b"MARKER-0007"))
    assert failed(evt) == at(6, BROKE.format(5))


# -- ranges and expected heads ----------------------------------------------------------------


def test_from_verifies_a_range_chained_to_the_stored_hash_before_it(evt, log):
    tamper("events.db", "UPDATE events SET data = '{\"n\":0}' WHERE position = 4")
    assert failed(evt, "--from", "3") == at(4, BROKE.format(3))
    after = evt("verify", "--from", "5")
    assert (after.exit_code, after.json()[0]["events"], after.json()[0]["from"], after.json()[0]["headHash"]) == (0, 4, 5, log)
    assert failed(evt, "--from", "0") == (2, "", "evt: Invalid value for '--from': must be 1 or more, not 0 (see 'evt verify --help')\n")


def test_expect_head_passes_while_the_log_only_grows(evt, log):
    assert evt("append", "order-1", "order.noted", "-q").exit_code == 0
    result = evt("verify", "--expect-head", log.upper())  # hex in either case
    assert (result.exit_code, result.json()[0]["expectedHead"], result.json()[0]["head"]) == (0, 8, 9)


def test_expect_head_catches_a_rewrite_whose_whole_chain_was_recomputed(evt, log):
    tamper("events.db", "UPDATE events SET data = replace(data, 'MARKER-0002', 'MARKER-0000') WHERE position = 2")
    forged = recomputed("events.db", 2)
    tamper("events.db", *(f"UPDATE events SET hash = X'{h.hex()}' WHERE position = {p}" for p, h in enumerate(forged, 2)))
    assert evt("verify").exit_code == 0  # a consistent chain: only a hash kept elsewhere tells
    assert failed(evt, "--expect-head", log) == (
        8, "",
        f"evt: verification failed: no event from position 1 to 8 has the expected head hash {log}: "
        "the log up to that head was rewritten or cut short (or it is another log)\n",
    )


def test_expect_head_catches_a_log_cut_short(evt, log):
    tamper("events.db", "DELETE FROM events WHERE position >= 7")
    assert evt("verify").exit_code == 0
    assert failed(evt, "--expect-head", log)[0] == 8


@pytest.mark.parametrize("given", ["abc", "g" * 64, "a" * 63, "a" * 65, ""])
def test_an_expected_head_that_is_not_a_hash_is_a_usage_error(evt, log, given):
    assert failed(evt, "--expect-head", given) == (
        2, "", f"evt: --expect-head takes the 64 hex characters evt verify printed as headHash, not {given!r}\n"
    )


# -- redaction -------------------------------------------------------------------------------


def redact(path, position: int, digests_of_original: bool = True) -> None:
    conn = sqlite3.connect(path)
    data, metadata = conn.execute("SELECT data, metadata FROM events WHERE position = ?", (position,)).fetchone()
    conn.close()
    if not digests_of_original:
        data = '{"someone":"else"}'
    d, m = hashlib.sha256(data.encode()).hexdigest(), hashlib.sha256(metadata.encode()).hexdigest()
    tamper(
        path,
        f"INSERT INTO evt_redacted_events (position, redaction, data_sha256, metadata_sha256) VALUES ({position}, 1, X'{d}', X'{m}')",
        f"UPDATE events SET data = '{{\"redacted\":true}}', metadata = '{{}}' WHERE position = {position}",
    )


def test_a_redacted_event_verifies_and_is_counted(evt, log):
    redact("events.db", 5)
    result = evt("verify")
    assert (result.exit_code, result.json()[0]["redacted"], result.json()[0]["headHash"]) == (0, 1, log)
    assert evt("verify", "--expect-head", log).exit_code == 0


def test_a_redaction_that_does_not_keep_the_digests_is_caught(evt, log):
    redact("events.db", 5, digests_of_original=False)
    assert failed(evt) == at(5, BROKE.format(4))


# -- stores migrated from before the chain --------------------------------------------------------


def old_store(path) -> None:
    "A store at the format before the chain (its released migrations), events added by plain sqlite3."
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrations.apply_migrations(conn, 0, "2026-01-01T00:00:00.000000Z", until=BEFORE_CHAIN)
    conn.executemany(
        f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, '2026-01-01T00:00:00.000000Z', ?, ?, 'thing.done', 1, ?, NULL, NULL, ?, '{{}}')",
        [(p, (p + 1) // 2, f"id-{p}", f"s-{p % 2}", "old" if p % 3 else None, json.dumps({"p": p, "é": "ü"})) for p in range(1, 12)],
    )
    conn.close()


def test_an_old_store_gets_its_hashes_when_evt_opens_it_and_then_verifies(evt):
    old_store("events.db")
    refused = evt("verify")
    assert (refused.exit_code, refused.stdout) == (6, "")
    assert "from before the hash chain" in refused.stderr and "evt verify never writes" in refused.stderr
    assert sqlite3.connect("events.db").execute("PRAGMA user_version").fetchone() == (BEFORE_CHAIN,)  # verify did not migrate it
    assert evt("stats").exit_code == 0  # any other command does
    assert stored_hashes("events.db") == recomputed("events.db")
    result = evt("verify")
    assert (result.exit_code, result.json()[0]["events"]) == (0, 11)
    assert evt("append", "s-1", "thing.done", "-q").exit_code == 0
    assert evt("verify").json()[0]["events"] == 12 and stored_hashes("events.db") == recomputed("events.db")
    names = [n for (n,) in sqlite3.connect("events.db").execute("SELECT name FROM evt_migrations")]
    assert names[-1] == migrations.MIGRATIONS[-1][0] and any(n.endswith("_event_hashes") for n in names)


# -- every path that writes events chains them ------------------------------------------------


def test_the_first_append_that_creates_a_store_chains_it(evt):
    assert evt("append", "--ndjson", "-", "-q", input='{"stream":"a-1","type":"t"}\n{"stream":"a-1","type":"t"}\n').exit_code == 0
    assert stored_hashes("events.db") == recomputed("events.db") and evt("verify").exit_code == 0


def test_threads_and_processes_writing_at_once_leave_a_chain_that_verifies(tmp_path):
    from test_writers import run_threads, start_writers

    path = tmp_path / "events.db"
    store = Store(path)

    def work(i: int) -> None:
        for b in range(10):
            store.write([NewEvent(f"t{i}-{b % 3}", "t.x", {"k": k}) for k in range(1 + (i + b) % 4)])

    procs = start_writers(path, 3, 5, 7, 30.0)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    assert run_threads(6, work) == []
    assert [p.communicate(timeout=120)[1] for p in procs] == [None] * 3
    store.close()
    report = verify(path)
    assert (report.ok, report.problem, report.events) == (True, None, 3 * 5 * 7 + sum(1 + (i + b) % 4 for i in range(6) for b in range(10)))
    assert stored_hashes(path) == recomputed(path)


UPCAST_MODEL = '''
from evt import Model
model = Model()

@model.upcaster("order.noted", version=1)
def v2(data):
    return {**data, "v": 2}
'''


@pytest.mark.parametrize("mode", ["--in-place", "--out"])
def test_an_upcast_recomputes_the_chain_from_the_first_event_it_rewrites(evt, log, tmp_path, mode):
    (tmp_path / "model.py").write_text(UPCAST_MODEL)
    args = ["--out", "new.db"] if mode == "--out" else ["--in-place"]
    assert evt("upcast", "run", *args, "--model", "model.py", "--format", "json").exit_code == 0
    path = "new.db" if mode == "--out" else "events.db"
    result = evt("verify", "--db", path)
    assert result.exit_code == 0 and result.json()[0]["headHash"] != log  # the data changed: so did the chain
    assert stored_hashes(path) == recomputed(path)
    assert failed(evt, "--db", path, "--expect-head", log)[0] == 8  # a hash kept from before no longer matches


# -- invariants --------------------------------------------------------------------------------

names = st.sampled_from(["a-1", "a-2", "b-1", "ç-1"])
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
events = st.builds(
    lambda stream, text, source: NewEvent(stream, "t.x", {"s": text}, source=source),
    names, texts, st.none() | texts,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(events, min_size=1, max_size=6), min_size=1, max_size=6), data=st.data())
def test_any_appends_verify_and_any_changed_data_byte_is_caught_where_it_is(tmp_path_factory, batches, data):
    path = tmp_path_factory.mktemp("hyp") / "events.db"
    with Store(path) as store:
        for events_ in batches:
            store.write(events_)
    report = verify(path)
    total = sum(map(len, batches))
    assert (report.ok, report.events, report.head_hash) == (True, total, stored_hashes(path)[-1].hex())
    assert stored_hashes(path) == recomputed(path)
    position = data.draw(st.integers(1, total), label="position")
    conn = sqlite3.connect(path, isolation_level=None)
    stored = conn.execute("SELECT CAST(data AS BLOB) FROM events WHERE position = ?", (position,)).fetchone()[0]
    index = data.draw(st.integers(0, len(stored) - 1), label="byte")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != stored[index]), label="value")
    changed = stored[:index] + bytes([byte]) + stored[index + 1 :]
    conn.execute(UNLOCK)
    conn.execute("UPDATE events SET data = CAST(? AS TEXT) WHERE position = ?", (changed, position))
    conn.execute(RELOCK)
    conn.close()
    report = verify(path)
    assert report.problem == (position, "its hash does not match the event (the event was changed)" if position == 1 else BROKE.format(position - 1))


# -- a read-only store --------------------------------------------------------------------------


def test_a_store_on_a_read_only_file_system_verifies(evt_proc, tmp_path):
    source, mounted = tmp_path / "source", tmp_path / "mounted"
    source.mkdir()
    mounted.mkdir()
    with Store(source / "events.db") as store:
        store.append([NewEvent("s-1", "t.x", {"n": n}) for n in range(3)])
    if subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot mount a folder here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        result = evt_proc("verify", "--db", mounted / "events.db")
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert (result.exit_code, result.stderr) == (0, "")
    assert json.loads(result.stdout)["headHash"] == stored_hashes(source / "events.db")[-1].hex()


def test_verify_as_a_process_fails_with_one_line_and_exit_8(evt_proc, log):
    tamper("events.db", "DELETE FROM events WHERE position = 2")
    result = evt_proc("verify")
    assert (result.exit_code, result.stdout, result.stderr) == at(2, "the event is missing (the log goes on at position 3): it was deleted")
