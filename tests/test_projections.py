"""Projections: SQL in evt.toml, Python in the model, replay, rebuild, targets, status."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

ORDER_TOML = """db = "events.db"

[projections.order_summaries]
setup = "CREATE TABLE IF NOT EXISTS order_summaries (id TEXT PRIMARY KEY, customer_id TEXT, total REAL, status TEXT, created_at TEXT)"

[projections.order_summaries.on]
"order.placed" = "INSERT INTO order_summaries VALUES (json_extract(:data,'$.orderId'), json_extract(:data,'$.customerId'), json_extract(:data,'$.total'), 'placed', :timestamp)"
"order.shipped" = "UPDATE order_summaries SET status = 'shipped' WHERE id = json_extract(:data,'$.orderId')"
"""

ORDERS = [
    {"stream": "order-1", "type": "order.placed", "data": {"orderId": "1", "customerId": "c1", "total": 10}, "timestamp": "2026-01-01T00:00:00Z"},
    {"stream": "order-2", "type": "order.placed", "data": {"orderId": "2", "customerId": "c2", "total": 5.5}, "timestamp": "2026-01-01T00:00:01Z"},
    {"stream": "order-1", "type": "order.shipped", "data": {"orderId": "1"}, "timestamp": "2026-01-01T00:00:02Z"},
    {"stream": "account-9", "type": "account.opened", "data": {"accountId": "9"}, "timestamp": "2026-01-01T00:00:03Z"},
]


def ndjson(events) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def rows(sql: str, path: str = "events.db") -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def summary_of(result) -> list[dict]:
    "Summaries without their timing fields."
    found = result.json()
    for line in found:
        assert set(line) == {"name", "kind", "events", "seconds", "rate", "failures", "checkpoint"}
        del line["seconds"], line["rate"]
    return found


@pytest.fixture
def orders(evt, tmp_path):
    (tmp_path / "evt.toml").write_text(ORDER_TOML)
    assert evt("append", "--ndjson", "-", "-q", input=ndjson(ORDERS)).exit_code == 0
    return evt


def test_sql_projection_builds_order_summaries(orders):
    r = orders("replay")
    assert r.exit_code == 0, r.stderr
    # events: the 3 it has a handler for; the checkpoint passed the account event too
    assert summary_of(r) == [{"name": "order_summaries", "kind": "sql", "events": 3, "failures": 0, "checkpoint": 4}]
    assert r.stderr == ""
    assert rows("SELECT * FROM order_summaries ORDER BY id") == [
        ("1", "c1", 10.0, "shipped", "2026-01-01T00:00:00.000000Z"),
        ("2", "c2", 5.5, "placed", "2026-01-01T00:00:01.000000Z"),
    ]


def test_replay_catches_up_from_its_checkpoint(orders):
    orders("replay")
    r = orders("replay")
    assert summary_of(r) == [{"name": "order_summaries", "kind": "sql", "events": 0, "failures": 0, "checkpoint": 4}]
    orders("append", "order-3", "order.placed", '{"orderId": "3", "customerId": "c1", "total": 1}', "-q")
    r = orders("replay", "order_summaries")
    assert summary_of(r) == [{"name": "order_summaries", "kind": "sql", "events": 1, "failures": 0, "checkpoint": 5}]
    assert rows("SELECT id, status FROM order_summaries ORDER BY id") == [("1", "shipped"), ("2", "placed"), ("3", "placed")]


def test_rebuild_drops_the_tables_and_produces_the_same_ones(orders):
    orders("replay")
    before = rows("SELECT * FROM order_summaries ORDER BY id")
    conn = sqlite3.connect("events.db")
    conn.execute("INSERT INTO order_summaries VALUES ('stray', NULL, NULL, NULL, NULL)")
    conn.commit()
    conn.close()
    r = orders("replay", "--rebuild")
    assert summary_of(r) == [{"name": "order_summaries", "kind": "sql", "events": 3, "failures": 0, "checkpoint": 4}]
    assert rows("SELECT * FROM order_summaries ORDER BY id") == before


def test_projections_lists_checkpoint_head_lag_and_dead_letters(orders):
    r = orders("projections")
    assert r.json() == [{"name": "order_summaries", "kind": "sql", "checkpoint": 0, "head": 4, "lag": 4, "deadLetters": 0, "lastRunAt": None}]
    orders("replay")
    orders("append", "order-3", "order.placed", '{"orderId": "1"}', "-q")  # a duplicate id: a constraint failure
    orders("replay")
    (line,) = orders("projections").json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line.pop("lastRunAt"))
    assert line == {"name": "order_summaries", "kind": "sql", "checkpoint": 5, "head": 5, "lag": 0, "deadLetters": 1}


def test_a_failing_statement_is_retried_then_dead_lettered_and_replay_goes_on(orders, tmp_path):
    text = ORDER_TOML.replace("[projections.order_summaries.on]", "backoff = 0\n\n[projections.order_summaries.on]")
    (tmp_path / "evt.toml").write_text(text)
    orders("append", "order-3", "order.placed", '{"orderId": "1", "customerId": "c3", "total": 3}', "-q")
    orders("append", "order-4", "order.placed", '{"orderId": "4", "customerId": "c4", "total": 4}', "-q")
    r = orders("replay")
    assert r.exit_code == 0
    assert summary_of(r) == [{"name": "order_summaries", "kind": "sql", "events": 5, "failures": 1, "checkpoint": 6}]
    assert r.stderr.splitlines() == [
        f"evt: order_summaries: position 5 (order.placed) failed, attempt {n} of 3: IntegrityError: UNIQUE constraint failed: order_summaries.id"
        for n in (1, 2, 3)
    ]
    assert rows("SELECT id FROM order_summaries ORDER BY id") == [("1",), ("2",), ("4",)]
    (dead,) = orders("dlq", "list").json()
    assert list(dead) == ["id", "consumer", "position", "eventId", "type", "error", "attempts", "firstFailedAt", "lastFailedAt"]
    assert (dead["consumer"], dead["position"], dead["type"], dead["attempts"]) == ("order_summaries", 5, "order.placed", 3)
    assert dead["error"] == "IntegrityError: UNIQUE constraint failed: order_summaries.id"


def test_a_failed_event_leaves_no_partial_writes(evt, tmp_path):
    (tmp_path / "evt.toml").write_text("""
[projections.audit]
setup = "CREATE TABLE seen (position INTEGER PRIMARY KEY); CREATE TABLE totals (stream TEXT PRIMARY KEY, total REAL NOT NULL)"
max_attempts = 1
[projections.audit.on]
"*" = ["INSERT INTO seen VALUES (:position)", "INSERT INTO totals VALUES (:stream, json_extract(:data, '$.total')) ON CONFLICT (stream) DO UPDATE SET total = total + excluded.total"]
""")
    evt("append", "--ndjson", "-", "-q", input=ndjson([
        {"stream": "a-1", "type": "x", "data": {"total": 1}},
        {"stream": "a-1", "type": "x", "data": {}},  # total NULL: the second statement fails
        {"stream": "a-1", "type": "x", "data": {"total": 2}},
    ]))
    r = evt("replay")
    assert summary_of(r) == [{"name": "audit", "kind": "sql", "events": 3, "failures": 1, "checkpoint": 3}]
    assert rows("SELECT * FROM seen") == [(1,), (3,)]
    assert rows("SELECT * FROM totals") == [("a-1", 3.0)]


def test_on_error_stop_exits_7_before_the_event(orders, tmp_path):
    "The projection that stops is summed up where it stopped; the others still run."
    text = ORDER_TOML.replace("[projections.order_summaries.on]", 'on_error = "stop"\nmax_attempts = 1\n\n[projections.order_summaries.on]')
    text += '[projections.ids]\nsetup = "CREATE TABLE ids (id TEXT)"\non = {"*" = "INSERT INTO ids VALUES (:id)"}\n'
    (tmp_path / "evt.toml").write_text(text)
    orders("append", "order-3", "order.placed", '{"orderId": "1"}', "-q")
    r = orders("replay")
    assert r.exit_code == 7
    assert summary_of(r) == [
        {"name": "order_summaries", "kind": "sql", "events": 3, "failures": 0, "checkpoint": 4},
        {"name": "ids", "kind": "sql", "events": 5, "failures": 0, "checkpoint": 5},
    ]
    assert r.stderr.splitlines() == [
        "evt: order_summaries: position 5 (order.placed) failed, attempt 1 of 1: IntegrityError: UNIQUE constraint failed: order_summaries.id",
        "evt: order_summaries stopped at position 5 (order.placed) after 1 attempt: IntegrityError: UNIQUE constraint failed: order_summaries.id",
    ]
    assert orders("projections").json()[0]["checkpoint"] == 4
    assert orders("dlq", "list").stdout == ""


def test_park_stream_holds_back_the_streams_later_events(evt, tmp_path):
    (tmp_path / "evt.toml").write_text("""
[projections.balances]
setup = "CREATE TABLE balances (stream TEXT PRIMARY KEY, amount REAL NOT NULL CHECK (amount >= 0))"
max_attempts = 1
on_error = "park-stream"
[projections.balances.on]
"account.opened" = "INSERT INTO balances VALUES (:stream, 0)"
"account.credited" = "UPDATE balances SET amount = amount + json_extract(:data, '$.amount') WHERE stream = :stream"
"account.debited" = "UPDATE balances SET amount = amount - json_extract(:data, '$.amount') WHERE stream = :stream"
""")
    evt("append", "--ndjson", "-", "-q", input=ndjson([
        {"stream": "account-1", "type": "account.opened", "data": {}},
        {"stream": "account-2", "type": "account.opened", "data": {}},
        {"stream": "account-1", "type": "account.debited", "data": {"amount": 5}},  # fails: negative
        {"stream": "account-1", "type": "account.credited", "data": {"amount": 10}},  # parked
        {"stream": "account-2", "type": "account.credited", "data": {"amount": 7}},
    ]))
    r = evt("replay")
    assert summary_of(r) == [{"name": "balances", "kind": "sql", "events": 5, "failures": 2, "checkpoint": 5}]
    assert rows("SELECT * FROM balances ORDER BY stream") == [("account-1", 0.0), ("account-2", 7.0)]
    dead = evt("dlq", "list").json()
    assert [(d["id"], d["position"], d["attempts"]) for d in dead] == [(1, 3, 1), (2, 4, 0)]
    assert dead[1]["error"] == "parked behind dead letter 1 (stream account-1)"
    # the parked event cannot jump the queue
    r = evt("dlq", "retry", "2")
    assert r.exit_code == 7
    assert "parked behind dead letter 1 (stream account-1); retry that one first" in r.stderr
    # a later event of the parked stream is parked too
    evt("append", "account-1", "account.credited", '{"amount": 1}', "-q")
    evt("replay")
    assert [d["position"] for d in evt("dlq", "list").json()] == [3, 4, 6]
    # the fix: allow overdrafts; retrying all applies the stream's events in order
    text = (tmp_path / "evt.toml").read_text().replace(" CHECK (amount >= 0)", "")
    (tmp_path / "evt.toml").write_text(text)
    conn = sqlite3.connect("events.db")
    conn.executescript("CREATE TABLE b2 AS SELECT * FROM balances; DROP TABLE balances; ALTER TABLE b2 RENAME TO balances;")
    conn.close()
    r = evt("dlq", "retry", "--all")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines() == ["retrying 3 dead letters", "retried 3 dead letters: all succeeded"]
    assert rows("SELECT * FROM balances ORDER BY stream") == [("account-1", 6.0), ("account-2", 7.0)]


def test_a_projection_may_write_into_another_file(orders, tmp_path):
    text = ORDER_TOML.replace("[projections.order_summaries.on]", 'target = "read/orders.db"\n\n[projections.order_summaries.on]')
    (tmp_path / "evt.toml").write_text(text)
    (tmp_path / "read").mkdir()
    assert orders("replay").exit_code == 0
    assert rows("SELECT id FROM order_summaries ORDER BY id", "read/orders.db") == [("1",), ("2",)]
    assert rows("SELECT name, position FROM evt_checkpoints", "read/orders.db") == [("order_summaries", 4)]
    assert rows("SELECT count(*) FROM sqlite_schema WHERE name = 'order_summaries'") == [(0,)]
    assert rows("SELECT count(*) FROM evt_checkpoints") == [(0,)]
    assert orders("projections").json()[0]["checkpoint"] == 4


@pytest.mark.parametrize(
    "table, message",
    [
        ('on = {"x" = "INSERT INTO nowhere VALUES (:oops"}', 'projections.p.on.\'x\': near ";": syntax error'),
        ('on = {"x" = 1}', "projections.p.on.'x' must be a SQL statement or a list of them"),
        ('on_error = "ignore"\non = {"x" = "SELECT 1"}', "projections.p: on error must be one of dlq, stop, park-stream, not 'ignore'"),
        ('max_attempts = 0\non = {"x" = "SELECT 1"}', "projections.p: max attempts must be a whole number of at least 1, not 0"),
        ('colour = "red"\non = {"x" = "SELECT 1"}', "projections.p: unknown key 'colour' (known: backoff, max_attempts, on, on_error, setup, target)"),
        ('setup = "CREATE TABLE"\non = {"x" = "SELECT 1"}', "projection p: setup failed"),
    ],
)
def test_a_broken_sql_projection_is_a_config_error(evt, tmp_path, table, message):
    (tmp_path / "evt.toml").write_text(f"[projections.p]\n{table}\n")
    evt("append", "s-1", "x", "-q")
    r = evt("replay")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("evt: ")
    assert message in r.stderr


def test_format_json_is_one_array_for_all_projections(orders, tmp_path):
    text = ORDER_TOML + '[projections.ids]\nsetup = "CREATE TABLE ids (id TEXT)"\non = {"*" = "INSERT INTO ids VALUES (:id)"}\n'
    (tmp_path / "evt.toml").write_text(text)
    r = orders("replay", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert [(s["name"], s["events"]) for s in json.loads(r.stdout)] == [("order_summaries", 3), ("ids", 4)]


def test_an_unknown_projection_is_exit_4(orders):
    r = orders("replay", "nope")
    assert (r.exit_code, r.stderr) == (4, "evt: no projection named 'nope' (projections: order_summaries)\n")


def test_replay_needs_a_store(evt, tmp_path):
    (tmp_path / "evt.toml").write_text(ORDER_TOML)
    r = evt("replay")
    assert r.exit_code == 6
    assert not (tmp_path / "events.db").exists()


def test_statements_get_every_envelope_field(evt, tmp_path):
    (tmp_path / "evt.toml").write_text("""
[projections.copy]
setup = "CREATE TABLE copy (position, stream, revision, id, type, version, timestamp, source, correlation, causation, data, metadata)"
[projections.copy.on]
"order.*" = "INSERT INTO copy VALUES (:position, :stream, :revision, :id, :type, :version, :timestamp, :source, :correlationId, :causationId, :data, :metadata)"
""")
    evt("append", "order-1", "order.placed", '{"a": [1, "é"]}', "--id", "e1", "--source", "shop", "--correlation-id", "c", "--causation-id", "k", "--meta", "who=me", "-q")
    evt("append", "other-1", "other.thing", "-q")
    evt("replay")
    (row,) = rows("SELECT * FROM copy")
    assert row[:6] == (1, "order-1", 1, "e1", "order.placed", 1)
    assert row[7:] == ("shop", "c", "k", '{"a":[1,"é"]}', '{"who":"me"}')


MODEL = '''
from evt import Model

model = Model()

@model.upcaster("order.placed", 1)
def v2(data):
    return {**data, "total": data["amount"]}

revenue = model.projection("revenue", tables=["revenue"], target="read.db", backoff=0)

@revenue.setup
def create(db):
    db["revenue"].create({"customer": str, "total": float}, pk="customer")

@revenue.on("order.placed")
def placed(db, event):
    row = next(db["revenue"].rows_where("customer = ?", [event.data["customer"]]), {})
    db["revenue"].upsert({"customer": event.data["customer"], "total": row.get("total", 0) + event.data["total"]}, pk="customer")

@revenue.on("order.refunded")
def refunded(db, event):
    db["revenue"].upsert({"customer": event.data["customer"], "total": 0}, pk="customer")
    if event.data["amount"] <= 0:
        raise ValueError(f"refund of {event.data['amount']}")
'''


@pytest.fixture
def python_model(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    (tmp_path / "model.py").write_text(MODEL)
    evt("append", "--ndjson", "-", "-q", input=ndjson([
        {"stream": "order-1", "type": "order.placed", "data": {"customer": "c1", "amount": 10}},
        {"stream": "order-2", "type": "order.placed", "version": 2, "data": {"customer": "c1", "total": 5}},
        {"stream": "order-2", "type": "order.refunded", "data": {"customer": "c1", "amount": 0}},
        {"stream": "order-3", "type": "order.placed", "version": 2, "data": {"customer": "c2", "total": 1}},
    ]))
    return evt


def test_python_projection_sees_upcast_events_and_writes_with_sqlite_utils(python_model):
    r = python_model("replay")
    assert summary_of(r) == [{"name": "revenue", "kind": "python", "events": 4, "failures": 1, "checkpoint": 4}]
    # the refund's partial write (total set to 0) was rolled back with its failure
    assert rows("SELECT * FROM revenue ORDER BY customer", "read.db") == [("c1", 15.0), ("c2", 1.0)]
    (dead,) = python_model("dlq", "list").json()
    line = next(n for n, text in enumerate(MODEL.splitlines(), 1) if "raise ValueError" in text)
    assert dead["error"] == f"ValueError: refund of 0 (model.py, line {line})"
    assert (dead["consumer"], dead["position"], dead["type"]) == ("revenue", 3, "order.refunded")


def test_python_projection_rebuild_drops_its_declared_tables(python_model):
    python_model("replay")
    r = python_model("replay", "--rebuild")
    assert summary_of(r) == [{"name": "revenue", "kind": "python", "events": 4, "failures": 1, "checkpoint": 4}]
    assert rows("SELECT * FROM revenue ORDER BY customer", "read.db") == [("c1", 15.0), ("c2", 1.0)]
    assert [d["position"] for d in python_model("dlq", "list").json()] == [3]


def test_model_projection_as_a_plain_decorator():
    from evt import Model

    model = Model()

    @model.projection("audit")
    def audit(db, event):
        pass

    assert model.projections["audit"].plan("anything") == [audit]


def test_replay_follow_stays_live_until_ctrl_c(tmp_path, evt_proc):
    import signal
    import subprocess
    import time

    from conftest import evt_command

    (tmp_path / "evt.toml").write_text(ORDER_TOML)
    evt_proc("append", "--ndjson", "-", "-q", input=ndjson(ORDERS))
    proc = subprocess.Popen(evt_command() + ["replay", "--follow"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        evt_proc("append", "order-3", "order.placed", '{"orderId": "3", "customerId": "c3", "total": 3}', "-q")
        while time.monotonic() < deadline:
            try:
                if rows("SELECT count(*) FROM order_summaries") == [(3,)]:
                    break
            except sqlite3.OperationalError:
                pass
            time.sleep(0.05)
        assert rows("SELECT id FROM order_summaries ORDER BY id") == [("1",), ("2",), ("3",)]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (130, b"")
    (line,) = [json.loads(x) for x in out.decode().splitlines()]
    assert (line["name"], line["events"], line["checkpoint"]) == ("order_summaries", 4, 5)


def test_a_statement_that_rolls_back_the_whole_transaction_stops_the_replay(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('[projections.p]\nsetup = "CREATE TABLE t (k TEXT PRIMARY KEY)"\non = {"*" = "INSERT OR ROLLBACK INTO t VALUES (:stream)"}\n')
    for stream in ("a-1", "a-2", "a-1"):
        evt("append", stream, "x", "-q")
    r = evt("replay")
    assert r.exit_code == 7
    assert r.stderr == "evt: p: a statement rolled back the whole transaction (ON CONFLICT ROLLBACK or RAISE(ROLLBACK)); stopped at checkpoint 0, nothing after it was kept\n"
    assert rows("SELECT count(*) FROM t") == [(0,)]


def test_a_python_handler_must_not_commit(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    (tmp_path / "model.py").write_text(
        "from evt import Model\nmodel = Model()\np = model.projection('p')\n"
        "@p.on('*')\ndef h(db, event):\n    db['t'].insert({'k': event.stream})\n    db.commit()\n"
    )
    evt("append", "a-1", "x", "-q")
    r = evt("replay")
    assert r.exit_code == 7
    assert r.stderr == "evt: p: the handler of position 1 ended evt's transaction (a commit?); handlers must not commit: evt commits each batch with its checkpoint\n"


def test_setup_may_refer_to_the_events_table(evt, tmp_path):
    (tmp_path / "evt.toml").write_text("""
[projections.counts]
setup = "CREATE TABLE counts (type TEXT PRIMARY KEY, n INTEGER); CREATE VIEW IF NOT EXISTS recent AS SELECT * FROM events ORDER BY position DESC LIMIT 5"
[projections.counts.on]
"*" = "INSERT INTO counts VALUES (:type, 1) ON CONFLICT (type) DO UPDATE SET n = n + 1"
""")
    for type in ("a", "b", "a"):
        evt("append", "s-1", type, "-q")
    assert evt("replay").exit_code == 0
    assert evt("replay", "--rebuild").exit_code == 0
    assert rows("SELECT * FROM counts ORDER BY type") == [("a", 2), ("b", 1)]
    assert rows("SELECT count(*) FROM recent") == [(3,)]


def test_a_failing_python_setup_is_a_config_error(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    (tmp_path / "model.py").write_text(
        "from evt import Model\nmodel = Model()\np = model.projection('p')\n"
        "@p.setup\ndef setup(db):\n    db.execute('CREATE TABLE oops (')\n"
    )
    evt("append", "a-1", "x", "-q")
    r = evt("replay")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == "evt: projection p: setup failed: OperationalError: incomplete input (model.py, line 6)\n"
    assert evt("projections").json()[0]["checkpoint"] == 0


@pytest.mark.parametrize(
    "setup, table",
    [
        ("CREATE TABLE IF NOT EXISTS events (id TEXT)", "events"),
        ("CREATE TABLE IF NOT EXISTS Evt_Checkpoints (id TEXT)", "Evt_Checkpoints"),
        ('CREATE TABLE IF NOT EXISTS \\"SNAPSHOTS\\" (id TEXT)', "SNAPSHOTS"),
    ],
)
def test_a_projection_cannot_own_evts_tables_so_a_rebuild_never_drops_the_log(evt, tmp_path, setup, table):
    evt("append", "a-1", "x", "-q")
    (tmp_path / "evt.toml").write_text(f'[projections.p]\nsetup = "{setup}"\non = {{"*" = "SELECT 1"}}\n')
    r = evt("replay", "--rebuild")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.endswith(f"evt.toml: projections.p.setup: the table {table!r} is evt's own (a rebuild would drop it); give the projection's table another name\n")
    assert [e["position"] for e in evt("read").json()] == [1]


def test_a_python_projection_cannot_own_evts_tables(evt, tmp_path):
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    (tmp_path / "model.py").write_text("from evt import Model\nmodel = Model()\nmodel.projection('p', tables=['events'])\n")
    evt("append", "a-1", "x", "-q")
    r = evt("replay", "--rebuild")
    assert (r.exit_code, r.stderr) == (2, "evt: projection p: tables: the table 'events' is evt's own (a rebuild would drop it); give the projection's table another name\n")
    assert [e["position"] for e in evt("read").json()] == [1]


def test_idle_followers_on_one_store_write_nothing(tmp_path, evt_proc):
    "A replay --follow and a consume --follow must not wake each other with empty commits forever."
    import subprocess
    import time

    from conftest import evt_command

    (tmp_path / "evt.toml").write_text(ORDER_TOML)
    evt_proc("append", "--ndjson", "-", "-q", input=ndjson(ORDERS))
    followers = [
        subprocess.Popen(evt_command() + args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for args in (["replay", "--follow"], ["consume", "idle", "--exec", "cat >/dev/null", "--follow"])
    ]
    try:
        checkpoints = "SELECT name, position, last_run_at FROM evt_checkpoints ORDER BY name"
        deadline = time.monotonic() + 20
        while [r[1] for r in rows(checkpoints)] != [4, 4]:
            assert time.monotonic() < deadline, "the followers did not catch up"
            time.sleep(0.05)
        time.sleep(0.3)
        before = rows(checkpoints)
        time.sleep(1)
        assert rows(checkpoints) == before
        evt_proc("append", "order-3", "order.placed", '{"orderId": "3", "customerId": "c3", "total": 3}', "-q")
        while [r[1] for r in rows(checkpoints)] != [5, 5]:
            assert time.monotonic() < deadline, "the followers did not handle the new event"
            time.sleep(0.05)
    finally:
        for proc in followers:
            proc.kill()
            proc.wait()
