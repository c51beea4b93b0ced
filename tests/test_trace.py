"""evt trace: the causal tree of a request across streams, from any of its events, indexed."""

from __future__ import annotations

import json
import sqlite3

import pytest

from evt import NewEvent, Store
from evt.log import trace as tracing

# A checkout request fans out over four streams. "e-" ids are events; "cmd-1" is a command
# (not an event), so what names it as its cause has no stored cause.
FAN_OUT = [
    # id, stream, type, time (seconds after 10:00:00), correlation, causation
    ("e-order", "order-1", "order.placed", "00.000", "req-1", None),
    ("e-other", "order-2", "order.placed", "01.000", "req-2", None),  # another request
    ("e-pay", "payment-1", "payment.requested", "00.250", "req-1", "e-order"),
    ("e-stock-a", "stock-a", "stock.reserved", "00.500", "req-1", "e-order"),
    ("e-loose", "audit-1", "checkout.logged", "02.000", "req-1", None),  # no cause: under the first of req-1
    ("e-paid", "payment-1", "payment.captured", "03.500", "req-1", "e-pay"),
    ("e-cmd", "order-1", "order.confirmed", "04.000", "req-1", "cmd-1"),  # its cause is not an event
    ("e-later", "order-1", "order.shipped", "05.000", "req-9", "e-order"),  # caused by it, another request
    ("e-mail", "mail-1", "mail.sent", "06.000", None, "e-paid"),
    ("e-alone", "misc-1", "thing.happened", "07.000", None, None),
]

# The tree, depth first, children in position order: (id, depth, parent, link, delaySeconds)
TREE = [
    ("e-order", 0, None, None, None),
    ("e-pay", 1, "e-order", "causation", 0.25),
    ("e-paid", 2, "e-pay", "causation", 3.25),
    ("e-mail", 3, "e-paid", "causation", 2.5),
    ("e-stock-a", 1, "e-order", "causation", 0.5),
    ("e-loose", 1, "e-order", "correlation", 2.0),
    ("e-cmd", 1, "e-order", "correlation", 4.0),
    ("e-later", 1, "e-order", "causation", 5.0),
]


@pytest.fixture
def fan_out(tmp_path):
    with Store(tmp_path / "events.db") as store:
        store.write([
            NewEvent(stream, type_, {"n": i}, id=id_, timestamp=f"2026-11-20T10:00:{t}Z", correlation_id=corr, causation_id=cause)
            for i, (id_, stream, type_, t, corr, cause) in enumerate(FAN_OUT)
        ])
    return tmp_path / "events.db"


def brief(result) -> list[tuple]:
    assert result.exit_code == 0, result.stderr
    return [(s["id"], s["depth"], s["parent"], s["link"], s["delaySeconds"]) for s in result.json()]


@pytest.mark.parametrize("start", [id_ for id_, *_ in TREE])
def test_from_any_event_of_the_tree_the_whole_tree_from_its_root(fan_out, evt, start):
    assert brief(evt("trace", start)) == TREE


def test_by_correlation_id(fan_out, evt):
    assert brief(evt("trace", "--correlation-id", "req-1")) == TREE
    assert brief(evt("trace", "--correlation-id", "req-9")) == TREE  # its first event was caused from req-1's
    assert brief(evt("trace", "--correlation-id", "req-2")) == [("e-other", 0, None, None, None)]


def test_each_line_is_the_envelope_then_depth_parent_link_and_delay(fan_out, evt):
    lines = evt("trace", "e-paid").json()
    stored = {e["id"]: e for e in evt("read").json()}
    for line in lines:
        assert list(line)[:12] == list(stored[line["id"]])
        assert {k: line[k] for k in stored[line["id"]]} == stored[line["id"]]
        assert list(line)[12:] == ["depth", "parent", "link", "delaySeconds"]


def test_json_is_one_nested_object(fan_out, evt):
    r = evt("trace", "e-mail", "--format", "json")
    assert r.exit_code == 0, r.stderr
    root = json.loads(r.stdout)

    def shape(node):
        return (node["id"], [shape(child) for child in node["children"]])

    assert shape(root) == (
        "e-order",
        [("e-pay", [("e-paid", [("e-mail", [])])]), ("e-stock-a", []), ("e-loose", []), ("e-cmd", []), ("e-later", [])],
    )
    assert root["children"][0]["children"][0]["delaySeconds"] == 3.25


def test_a_tree_on_a_terminal(fan_out, evt, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    r = evt("trace", "e-stock-a", "--format", "table")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "order.placed  order-1 #1  pos 1  2026-11-20T10:00:00Z",
        "├── payment.requested  payment-1 #1  pos 3  2026-11-20T10:00:00Z  +0.25s",
        "│   └── payment.captured  payment-1 #2  pos 6  2026-11-20T10:00:03Z  +3.25s",
        "│       └── mail.sent  mail-1 #1  pos 9  2026-11-20T10:00:06Z  +2.5s",
        "├── stock.reserved  stock-a #1  pos 4  2026-11-20T10:00:00Z  +0.5s",
        "├── checkout.logged  audit-1 #1  pos 5  2026-11-20T10:00:02Z  +2s  (by correlation)",
        "├── order.confirmed  order-1 #2  pos 7  2026-11-20T10:00:04Z  +4s  (by correlation)",
        "└── order.shipped  order-1 #3  pos 8  2026-11-20T10:00:05Z  +5s",
    ]


def test_an_event_with_neither_cause_nor_effects_is_a_tree_of_one(fan_out, evt):
    assert brief(evt("trace", "e-alone")) == [("e-alone", 0, None, None, None)]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nope"], 4, "evt: no event with id 'nope'\n"),
        (["--correlation-id", "req-404"], 4, "evt: no event with correlation id 'req-404'\n"),
        ([], 2, "evt: give an event ID or --correlation-id ID (one of them)\n"),
        (["e-order", "--correlation-id", "req-1"], 2, "evt: give an event ID or --correlation-id ID (one of them)\n"),
    ],
)
def test_unknown_ids_are_exit_4_and_the_wrong_arguments_exit_2(fan_out, evt, args, code, message):
    r = evt("trace", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (code, "", message)


def test_a_missing_store_is_exit_6_and_not_created(evt, tmp_path):
    r = evt("trace", "x")
    assert r.exit_code == 6
    assert not (tmp_path / "events.db").exists()


def test_a_causation_cycle_is_walked_once(tmp_path, evt):
    with Store(tmp_path / "events.db") as store:
        store.write([
            NewEvent("a-1", "t.a", id="a", causation_id="b"),
            NewEvent("b-1", "t.b", id="b", causation_id="a"),
            NewEvent("c-1", "t.c", id="c", causation_id="c"),
        ])
    assert [s[:2] for s in brief(evt("trace", "a"))] == [("b", 0), ("a", 1)]
    assert [s[:2] for s in brief(evt("trace", "b"))] == [("a", 0), ("b", 1)]
    assert [s[:2] for s in brief(evt("trace", "c"))] == [("c", 0)]


def test_every_lookup_is_indexed(fan_out, monkeypatch):
    "No query of a trace scans the events table: each goes through an index."
    queries = []
    original = tracing.Tracer._events

    def recording(self, sql, params):
        queries.append((f"SELECT {self.columns} FROM events AS e {sql}", params))
        return original(self, sql, params)

    monkeypatch.setattr(tracing.Tracer, "_events", recording)
    with Store(fan_out) as store:
        assert len(list(tracing.trace(store, "e-mail"))) == len(TREE)
        assert len(list(tracing.trace(store, correlation_id="req-1"))) == len(TREE)
        plans = [" / ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)) for sql, params in queries]
    assert {kind for sql, _ in queries for kind in ("id", "causation", "correlation") if f"WHERE {kind}" in sql.replace("_id", "")} == {"id", "causation", "correlation"}
    for plan in plans:
        assert "SCAN" not in plan, plan
        assert "USING" in plan, plan


def test_a_store_of_an_older_format_gets_the_causation_index(fan_out, evt):
    conn = sqlite3.connect(fan_out)
    # as evt 0.x left it: format 6, the migrations from 0007 on not recorded (they are idempotent)
    conn.executescript("DROP INDEX events_causation; DELETE FROM evt_migrations WHERE name >= '0007'; PRAGMA user_version = 6;")
    conn.close()
    assert brief(evt("trace", "e-order")) == TREE
    conn = sqlite3.connect(fan_out)
    assert conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'events_causation'").fetchone() == (1,)
    conn.close()


UPCASTING_MODEL = """
from evt import Model
model = Model()

@model.upcaster("order.placed", version=1)
def v2(data):
    return {**data, "upcast": True}
"""


def test_events_read_upcast_unless_raw(fan_out, evt, tmp_path):
    (tmp_path / "model.py").write_text(UPCASTING_MODEL)
    [root, *_] = evt("trace", "e-pay", "--model", "model.py").json()
    assert (root["type"], root["version"], root["data"]) == ("order.placed", 2, {"n": 0, "upcast": True})
    [root, *_] = evt("trace", "e-pay", "--model", "model.py", "--raw").json()
    assert (root["version"], root["data"]) == (1, {"n": 0})


# -- for any log: the trace of an event is exactly its tree ---------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Each event: (index of its cause among the earlier events, or -1 for a command id, or None), correlation (or None).
LOGS = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(min_value=-1, max_value=40)), st.one_of(st.none(), st.sampled_from(["r1", "r2", "r3"]))),
    min_size=1,
    max_size=25,
)


def reference_parents(log) -> dict:
    "The parent of each event by the rule evt documents, computed the obvious way."
    ids = [f"e{i}" for i in range(len(log))]
    first = {}
    for i, (_, corr) in enumerate(log):
        if corr is not None:
            first.setdefault(corr, i)
    parents = {}
    for i, (cause, corr) in enumerate(log):
        if cause is not None and 0 <= cause < i:
            parents[ids[i]] = (ids[cause], "causation")
        elif corr is not None and first[corr] < i:
            parents[ids[i]] = (ids[first[corr]], "correlation")
        else:
            parents[ids[i]] = (None, None)
    return parents


@settings(max_examples=60, deadline=None)
@given(log=LOGS, start=st.integers(min_value=0))
def test_the_trace_of_any_event_is_its_whole_tree_depth_first_by_position(log, start):
    with Store(":memory:") as store:
        store.write([
            NewEvent(f"s-{i % 4}", "t.x", id=f"e{i}", correlation_id=corr,
                     causation_id=None if cause is None else ("cmd-1" if cause < 0 or cause >= i else f"e{cause}"))
            for i, (cause, corr) in enumerate(log)
        ])
        start_id = f"e{start % len(log)}"
        steps = list(tracing.trace(store, start_id))
    parents = reference_parents(log)

    def root_of(node):
        while parents[node][0] is not None:
            node = parents[node][0]
        return node

    root = root_of(start_id)
    members = [f"e{i}" for i in range(len(log)) if root_of(f"e{i}") == root]
    children = {m: sorted((c for c in members if parents[c][0] == m), key=lambda c: int(c[1:])) for m in members}
    expected = []

    def walk(node, depth):
        expected.append((node, depth, *parents[node]))
        for child in children[node]:
            walk(child, depth + 1)

    walk(root, 0)
    assert [(s.event.id, s.depth, s.parent.id if s.parent else None, s.link) for s in steps] == expected
