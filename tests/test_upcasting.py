"""Upcasting: read-time upcasting, evt upcast status, and the checked migrations."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evt import Filter, Model, NewEvent, Store
from evt.ops import upcast as upcasting
from evt.errors import Conflict, UpcastFailed

MODEL = textwrap.dedent(
    '''
    import pydantic
    from evt import Model

    model = Model()


    class Item(pydantic.BaseModel):
        productId: str
        quantity: int
        price: float | None


    @model.schema("order.placed", version=2)
    class OrderPlacedV2(pydantic.BaseModel):
        orderId: str
        items: list[Item]


    @model.upcaster("order.placed", version=1)
    def order_placed_v1_to_v2(data):
        items = [{"productId": p, "quantity": 1, "price": None} for p in data["items"]]
        return {**data, "items": items}


    # a chain with a rename: cart.opened v1 -> order.opened v2 -> order.opened v3
    @model.upcaster("cart.opened", version=1, to_type="order.opened")
    def cart_opened_v1(data):
        return {"orderId": data["cartId"]}


    @model.upcaster("order.opened", version=2)
    def order_opened_v2(data):
        return {**data, "channel": "web"}
    '''
)


def envelope(n: int, stream: str, type_: str, version: int, data: dict, **extra) -> dict:
    return {
        "id": f"id-{n:06d}",
        "stream": stream,
        "type": type_,
        "version": version,
        "timestamp": f"2026-11-01T10:00:{n % 60:02d}.000000Z",
        "data": data,
        **extra,
    }


SMALL = [
    envelope(1, "order-1", "order.placed", 1, {"orderId": "1", "items": ["a", "b"]}, source="checkout", correlationId="c1"),
    envelope(2, "order-2", "order.placed", 2, {"orderId": "2", "items": [{"productId": "a", "quantity": 2, "price": 3.5}]}),
    envelope(3, "cart-3", "cart.opened", 1, {"cartId": "3"}, metadata={"by": "bot"}),
    envelope(4, "order-1", "order.shipped", 1, {"orderId": "1"}),
]


def ndjson(envelopes) -> str:
    return "".join(json.dumps(e) + "\n" for e in envelopes)


@pytest.fixture
def store(evt, tmp_path):
    "A store with SMALL in it and the model configured in evt.toml."
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "evt.toml").write_text('db = "events.db"\nmodel = "model.py"\n')
    r = evt("append", "--ndjson", "-", "-q", input=ndjson(SMALL))
    assert r.exit_code == 0, r
    return tmp_path / "events.db"


def raw_events(evt, *args):
    r = evt("read", "--raw", *args)
    assert r.exit_code == 0, r
    return r.json()


def dump_events(path) -> list[tuple]:
    "Every stored row, straight from SQLite."
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    finally:
        conn.close()


# -- read-time upcasting ----------------------------------------------------------


def test_read_shows_latest_versions_and_raw_shows_stored(evt, store):
    read = evt("read").json()
    assert [(e["type"], e["version"]) for e in read] == [
        ("order.placed", 2),
        ("order.placed", 2),
        ("order.opened", 3),
        ("order.shipped", 1),
    ]
    assert read[0]["data"] == {"orderId": "1", "items": [{"productId": "a", "quantity": 1, "price": None}, {"productId": "b", "quantity": 1, "price": None}]}
    assert read[2]["data"] == {"orderId": "3", "channel": "web"}
    assert read[2]["metadata"] == {"by": "bot"} and read[0]["correlationId"] == "c1"
    raw = raw_events(evt)
    assert [(e["type"], e["version"], e["data"]) for e in raw] == [(e["type"], e["version"], e["data"]) for e in SMALL]


def test_tail_upcasts_and_raw_does_not(evt, store):
    assert [e["version"] for e in evt("tail", "-n", "4").json()] == [2, 2, 3, 1]
    assert [e["version"] for e in evt("tail", "-n", "4", "--raw").json()] == [1, 2, 1, 1]


def test_append_prints_what_it_stored_not_the_upcast(evt, store):
    r = evt("append", "order-9", "order.placed", '{"orderId":"9","items":["x"]}')
    assert r.exit_code == 0
    [printed] = r.json()
    assert (printed["version"], printed["data"]["items"]) == (1, ["x"])


def test_type_filter_matches_the_type_readers_see(evt, store):
    assert [e["position"] for e in evt("read", "--type", "order.opened").json()] == [3]
    assert [e["position"] for e in evt("read", "--type", "order.o*").json()] == [3]
    assert evt("read", "--type", "cart.*").stdout == ""
    assert [e["position"] for e in evt("read", "--type", "cart.*", "--raw").json()] == [3]
    assert evt("read", "--type", "order.opened", "--raw").stdout == ""
    assert [e["position"] for e in evt("read", "--type", "order.*").json()] == [1, 2, 3, 4]
    assert [e["position"] for e in evt("tail", "--type", "order.opened").json()] == [3]


def test_an_upcaster_that_raises_names_the_position(evt, store):
    evt("append", "order-5", "order.placed", '{"orderId":"5"}', "-q")
    r = evt("read", "order-5")
    assert r.exit_code == 5
    assert r.stderr == "evt: cannot upcast the event at position 5 (order.placed v1): upcaster order.placed v1 raised KeyError: 'items'\n"


def test_upcast_output_is_validated_against_the_target_schema(evt, store):
    evt("append", "order-5", "order.placed", '{"orderId":"5","items":[7]}', "-q")
    r = evt("read", "order-5")
    assert r.exit_code == 5
    assert r.stderr == (
        "evt: cannot upcast the event at position 5 (order.placed v1): upcaster order.placed v1 produced invalid data: "
        "order.placed v2 is invalid: items.0.productId: Input should be a valid string\n"
    )


def test_an_upcaster_returning_no_object_fails():
    model = Model()
    model.upcaster("a", 1)(lambda data: [data])
    with Store(os.path.join(tempfile.mkdtemp(), "e.db"), model=model) as store:
        store.append(NewEvent("s-1", "a", {}))
        with pytest.raises(UpcastFailed) as e:
            list(store.read())
    assert str(e.value) == "cannot upcast the event at position 1 (a v1): upcaster a v1 returned an array, not an object"
    assert e.value.position == 1


def test_chains_validate_every_step_that_has_a_schema():
    import pydantic

    model = Model()

    @model.schema("a", 2)
    class V2(pydantic.BaseModel):
        x: int

    model.upcaster("a", 1)(lambda d: {"x": "not a number"})
    model.upcaster("a", 2)(lambda d: {"y": 1})
    assert model.latest("a", 1) == ("a", 3)
    with pytest.raises(UpcastFailed, match=r"upcaster a v1 produced invalid data: a v2 is invalid: x:"):
        model.upcast(model_event("a", 1))


def model_event(type_, version):
    from evt import Event

    return Event(7, "s-1", 1, "id", type_, version, "2026-01-01T00:00:00.000000Z", None, None, None, {}, {})


def test_two_upcasters_for_one_version_are_a_config_error():
    from evt.errors import ConfigError

    model = Model()
    model.upcaster("a", 1)(lambda d: d)
    with pytest.raises(ConfigError, match="two upcasters for a v1"):
        model.upcaster("a", 1)(lambda d: d)


def test_follow_upcasts_new_events(evt_proc, store, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "evt", "tail", "-f", "-n", "0", "--type", "order.opened"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        import time

        time.sleep(1.0)  # let it start following
        assert evt_proc("append", "cart-8", "cart.opened", '{"cartId":"8"}', "-q").exit_code == 0
        line = json.loads(proc.stdout.readline())
        assert (line["position"], line["type"], line["version"], line["data"]) == (5, "order.opened", 3, {"orderId": "8", "channel": "web"})
    finally:
        proc.kill()
        proc.wait()


# -- evt upcast status --------------------------------------------------------------


def test_status(evt, store):
    r = evt("upcast", "status")
    assert r.exit_code == 0
    assert r.lines == [
        '{"type":"cart.opened","versions":{"1":1},"latest":3,"pending":1}',
        '{"type":"order.placed","versions":{"1":1,"2":1},"latest":2,"pending":1}',
        '{"type":"order.shipped","versions":{"1":1},"latest":1,"pending":0}',
    ]


def test_status_as_a_table(evt, store):
    r = evt("upcast", "status", "--format", "table")
    assert [line.rstrip() for line in r.lines] == [
        "type           versions      latest  pending",
        "cart.opened    v1: 1              3        1",
        "order.placed   v1: 1, v2: 1       2        1",
        "order.shipped  v1: 1              1        0",
    ]


def test_status_without_a_model_shows_stored_versions(evt, store, tmp_path):
    (tmp_path / "evt.toml").write_text('db = "events.db"\n')
    assert evt("upcast", "status").json()[1] == {"type": "order.placed", "versions": {"1": 1, "2": 1}, "latest": 2, "pending": 0}


def test_status_of_a_missing_store_is_exit_6(evt, tmp_path):
    r = evt("upcast", "status", "--db", "nope.db")
    assert r.exit_code == 6 and r.stderr.startswith("evt: no store at nope.db")


# -- evt upcast run: usage ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "evt: evt upcast run needs exactly one of --dry-run, --out NEW.db, --in-place\n"),
        (("--dry-run", "--in-place"), "evt: evt upcast run needs exactly one of --dry-run, --out NEW.db, --in-place (got --dry-run and --in-place)\n"),
    ],
)
def test_run_needs_exactly_one_mode(evt, store, args, message):
    r = evt("upcast", "run", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", message)


def test_run_needs_a_model(evt, store, tmp_path):
    (tmp_path / "evt.toml").write_text('db = "events.db"\n')
    r = evt("upcast", "run", "--dry-run")
    assert r.exit_code == 2
    assert r.stderr == 'evt: no model: upcasters are declared in the user\'s model (pass --model, set EVT_MODEL, or add model = "model.py" to evt.toml)\n'


# -- dry run ---------------------------------------------------------------------------


def test_dry_run_reports_and_changes_nothing(evt, store):
    before = dump_events(store)
    r = evt("upcast", "run", "--dry-run", "--sample", "1")
    assert r.exit_code == 0, r
    [result] = r.json()
    raw = raw_events(evt)
    assert result == {
        "mode": "dry-run",
        "store": str(store),
        "events": 4,
        "upcast": 2,
        "unchanged": 2,
        "changes": [
            {"type": "cart.opened", "version": 1, "toType": "order.opened", "toVersion": 3, "count": 1},
            {"type": "order.placed", "version": 1, "toType": "order.placed", "toVersion": 2, "count": 1},
        ],
        "sample": [{"position": 3, "before": raw[2], "after": evt("read", "--from", "3", "--to", "3").json()[0]}],
    }
    assert dump_events(store) == before
    assert [s["position"] for s in evt("upcast", "run", "--dry-run").json()[0]["sample"]] == [1, 3]


def test_dry_run_finds_a_failing_upcaster(evt, store):
    evt("append", "order-5", "order.placed", '{"orderId":"5"}', "-q")
    r = evt("upcast", "run", "--dry-run")
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr == "evt: cannot upcast the event at position 5 (order.placed v1): upcaster order.placed v1 raised KeyError: 'items'\n"


def test_dry_run_as_a_table(evt, store):
    r = evt("upcast", "run", "--dry-run", "--sample", "1", "--format", "table")
    lines = [line.rstrip() for line in r.lines]
    assert "cart.opened v1   order.opened v3       1" in lines
    assert lines[-3:] == [
        "position 3 (cart-3 revision 1): cart.opened v1 -> order.opened v3",
        '  before: {"cartId":"3"}',
        '  after:  {"orderId":"3","channel":"web"}',
    ]


# -- --out --------------------------------------------------------------------------------


def test_out_copies_and_upcasts_into_a_new_store(evt, store, tmp_path):
    before = dump_events(store)
    upcast_view = evt("read").json()
    r = evt("upcast", "run", "--out", "new.db")
    assert r.exit_code == 0, r
    assert r.json() == [
        {
            "mode": "copy",
            "source": str(store),
            "out": "new.db",
            "events": 4,
            "upcast": 2,
            "unchanged": 2,
            "changes": [
                {"type": "cart.opened", "version": 1, "toType": "order.opened", "toVersion": 3, "count": 1},
                {"type": "order.placed", "version": 1, "toType": "order.placed", "toVersion": 2, "count": 1},
            ],
            "verified": True,
        }
    ]
    assert dump_events(store) == before  # the source is untouched
    assert raw_events(evt, "--db", "new.db") == upcast_view
    assert [name for name in os.listdir(tmp_path) if "tmp" in name] == []
    assert [s["pending"] for s in evt("upcast", "status", "--db", "new.db").json()] == [0, 0, 0]


def test_out_is_a_proper_store(evt, store):
    evt("upcast", "run", "--out", "new.db")
    conn = sqlite3.connect("new.db", isolation_level=None)
    source = sqlite3.connect("events.db", isolation_level=None)
    schema = "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    assert conn.execute(schema).fetchall() == source.execute(schema).fetchall()
    for pragma in ("application_id", "user_version", "journal_mode"):
        assert conn.execute(f"PRAGMA {pragma}").fetchone() == source.execute(f"PRAGMA {pragma}").fetchone()
    assert conn.execute("SELECT * FROM evt_migrations").fetchall() == source.execute("SELECT * FROM evt_migrations").fetchall()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET data = '{}'")
    [run] = conn.execute("SELECT mode, source, backup, upcasters, events, upcast FROM evt_upcast_runs").fetchall()
    assert run[:3] == ("copy", os.path.abspath("events.db"), None)
    assert [(u["type"], u["version"], u["toType"], u["toVersion"]) for u in json.loads(run[3])] == [
        ("cart.opened", 1, "order.opened", 2),
        ("order.opened", 2, "order.opened", 3),
        ("order.placed", 1, "order.placed", 2),
    ]
    assert json.loads(run[3])[2]["function"].endswith(".order_placed_v1_to_v2")
    assert run[4:] == (4, 2)
    # the new store works: an append continues its streams
    r = evt("append", "order-1", "order.delivered", "--db", "new.db")
    assert (r.json()[0]["position"], r.json()[0]["revision"]) == (5, 3)


def test_out_copies_other_tables_but_not_snapshots(evt, store):
    conn = sqlite3.connect("events.db", isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE app_checkpoints (name TEXT PRIMARY KEY, position INTEGER);
        INSERT INTO app_checkpoints VALUES ('orders', 4);
        CREATE TABLE evt_snapshots (stream TEXT, revision INTEGER, state TEXT);
        INSERT INTO evt_snapshots VALUES ('order-1', 2, '{}');
        CREATE TABLE order_summaries (id TEXT PRIMARY KEY, total REAL, twice REAL GENERATED ALWAYS AS (total * 2));
        CREATE INDEX order_summaries_total ON order_summaries (total);
        INSERT INTO order_summaries (id, total) VALUES ('1', 5);
        """
    )
    conn.close()
    assert evt("upcast", "run", "--out", "new.db").exit_code == 0
    new = sqlite3.connect("new.db", isolation_level=None)
    assert new.execute("SELECT * FROM app_checkpoints").fetchall() == [("orders", 4)]
    assert new.execute("SELECT count(*) FROM evt_snapshots").fetchone() == (0,)
    assert new.execute("SELECT * FROM order_summaries").fetchall() == [("1", 5.0, 10.0)]
    assert new.execute("SELECT name FROM sqlite_schema WHERE name = 'order_summaries_total'").fetchone() == ("order_summaries_total",)


def test_out_refuses_an_existing_file(evt, store, tmp_path):
    (tmp_path / "new.db").write_text("mine")
    r = evt("upcast", "run", "--out", "new.db")
    assert (r.exit_code, r.stdout) == (3, "")
    assert r.stderr == "evt: new.db already exists; evt upcast run --out never overwrites (choose a new file)\n"
    assert (tmp_path / "new.db").read_text() == "mine"
    assert evt("upcast", "run", "--out", "events.db").exit_code == 3


def test_out_into_a_missing_folder_is_a_usage_error(evt, store, tmp_path):
    r = evt("upcast", "run", "--out", "no/such/new.db")
    assert r.exit_code == 2
    assert r.stderr == f"evt: cannot create no/such/new.db: folder {tmp_path}/no/such does not exist\n"


# -- --in-place ---------------------------------------------------------------------------


def test_in_place_backs_up_rewrites_and_records(evt, store, tmp_path):
    before = dump_events(store)
    upcast_view = evt("read").json()
    r = evt("upcast", "run", "--in-place")
    assert r.exit_code == 0, r
    [result] = r.json()
    backup = result["backup"]
    assert backup.startswith(f"{store}.bak-2") and os.path.exists(backup)
    assert r.stderr == f"backup: {backup}\n"
    assert {k: v for k, v in result.items() if k not in ("backup", "changes")} == {
        "mode": "in-place",
        "store": str(store),
        "events": 4,
        "upcast": 2,
        "unchanged": 2,
        "verified": True,
    }
    assert raw_events(evt) == upcast_view
    assert dump_events(backup) == before
    conn = sqlite3.connect("events.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    [run] = conn.execute("SELECT mode, source, backup, events, upcast FROM evt_upcast_runs").fetchall()
    assert run == ("in-place", os.path.abspath("events.db"), os.path.abspath(backup), 4, 2)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # a second run has nothing to do: no backup, no record
    again = evt("upcast", "run", "--in-place")
    assert again.json()[0]["upcast"] == 0 and again.json()[0]["backup"] is None and again.stderr == ""
    assert conn.execute("SELECT count(*) FROM evt_upcast_runs").fetchone() == (1,)


# -- failures change nothing ---------------------------------------------------------------

FAILING_MODEL = textwrap.dedent(
    '''
    from evt import Model

    model = Model()


    @model.upcaster("order.placed", version=1)
    def order_placed_v1_to_v2(data):
        if data["orderId"] == "ord_15001":
            raise ValueError("cannot read this order")
        return {**data, "items": [{"productId": p, "quantity": 1, "price": None} for p in data["items"]]}
    '''
)


def big_log(path, count: int, model=None) -> None:
    "``count`` events: order.placed v1 and order.shipped, through the library (fast)."
    with Store(path, synchronous="normal", model=model) as store:
        store.write(
            (
                NewEvent(f"order-{n // 2}", "order.placed" if n % 2 else "order.shipped", {"orderId": f"ord_{n}", "items": ["a"]}, id=f"e{n}")
                for n in range(1, count + 1)
            ),
            validate=False,
        )


@pytest.fixture
def failing(tmp_path):
    (tmp_path / "model.py").write_text(FAILING_MODEL)
    (tmp_path / "evt.toml").write_text('db = "events.db"\nmodel = "model.py"\n')
    big_log(tmp_path / "events.db", 20_000)
    return tmp_path


def test_a_failing_upcaster_halfway_leaves_no_new_file(evt, failing):
    before = dump_events("events.db")
    r = evt("upcast", "run", "--out", "new.db")
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr == "evt: cannot upcast the event at position 15001 (order.placed v1): upcaster order.placed v1 raised ValueError: cannot read this order\n"
    assert sorted(name for name in os.listdir(failing) if not name.startswith("events.db-")) == ["events.db", "evt.toml", "model.py"]
    assert dump_events("events.db") == before


def test_a_failing_upcaster_halfway_changes_nothing_in_place(evt, failing):
    before = dump_events("events.db")
    r = evt("upcast", "run", "--in-place")
    assert (r.exit_code, r.stdout) == (5, "")
    assert r.stderr.splitlines()[-1] == "evt: cannot upcast the event at position 15001 (order.placed v1): upcaster order.placed v1 raised ValueError: cannot read this order"
    assert dump_events("events.db") == before
    assert sorted(name for name in os.listdir(failing) if name not in ("events.db-wal", "events.db-shm", "events.db-lock")) == ["events.db", "evt.toml", "model.py"]  # backup removed
    conn = sqlite3.connect("events.db", isolation_level=None)
    assert conn.execute("SELECT count(*) FROM evt_upcast_runs").fetchone() == (0,)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET data = '{}'")


# -- a large log ---------------------------------------------------------------------------


def test_migrating_tens_of_thousands_of_events(evt, tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "evt.toml").write_text('db = "events.db"\nmodel = "model.py"\n')
    big_log(tmp_path / "events.db", 40_000)
    r = evt("upcast", "run", "--out", "new.db")
    assert r.exit_code == 0, r
    assert {k: r.json()[0][k] for k in ("events", "upcast", "unchanged", "verified")} == {"events": 40_000, "upcast": 20_000, "unchanged": 20_000, "verified": True}
    with Store("new.db") as new, Store("events.db", model=upcasting_model(MODEL)) as old:
        assert list(new.read(raw=True)) == list(old.read())
    r = evt("upcast", "run", "--in-place")
    assert r.exit_code == 0 and r.json()[0]["upcast"] == 20_000
    assert dump_events("events.db") == dump_events("new.db")


def upcasting_model(source: str) -> Model:
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "model.py")
    with open(path, "w") as f:
        f.write(source)
    from evt import load_model

    return load_model(path)


# -- the invariant: read-time upcasting and a migrated store give the same events ---------

CHAIN_MODEL = textwrap.dedent(
    '''
    from evt import Model

    model = Model()


    @model.upcaster("a", 1)
    def a1(data):
        return {"value": data.get("v"), "from": 1}


    @model.upcaster("a", 2, to_type="b")
    def a2(data):
        return {**data, "renamed": True}


    @model.upcaster("b", 3)
    def b3(data):
        return {**data, "n": len(data)}
    '''
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)

events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["s-1", "s-2", "t-1"]),
        st.sampled_from([("a", 1), ("a", 2), ("a", 3), ("b", 3), ("b", 4), ("c", 1)]),
        st.dictionaries(st.sampled_from(["v", "w"]), json_values, max_size=2),
        st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy)
def test_read_time_upcasting_and_migrated_stores_agree(events):
    model = upcasting_model(CHAIN_MODEL)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "events.db")
        with Store(path, model=model) as store:
            # versions the model does not know (a v3) are refused on append: stored here as a trusted import
            store.write([NewEvent(s, t, d, version=v, metadata=m, source="x") for s, (t, v), d, m in events], validate=False)
            seen = list(store.read())
            seen_b = list(store.read(Filter(types=["b*"])))
            upcasting.migrate_copy(store, os.path.join(folder, "new.db"))
            upcasting.migrate_in_place(store)
            in_place = list(store.read(raw=True))
        with Store(os.path.join(folder, "new.db"), model=model) as new:
            assert list(new.read(raw=True)) == seen
            assert list(new.read()) == seen  # nothing left to upcast
            assert list(new.read(Filter(types=["b*"]), raw=True)) == seen_b
        assert in_place == seen
        assert all(e.type == "b" for e in seen_b)


def test_library_out_refuses_existing(tmp_path):
    model = upcasting_model(CHAIN_MODEL)
    (tmp_path / "x.db").write_text("")
    with Store(tmp_path / "events.db", model=model) as store, pytest.raises(Conflict):
        upcasting.migrate_copy(store, tmp_path / "x.db")


# -- the docs and the sample model ------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_readme_model_works(evt, tmp_path):
    import re

    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## Upcasting") :]
    (tmp_path / "model.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    evt("append", "order-1", "order.placed", '{"items":["p1"]}', "-q")
    evt("append", "cart-2", "cart.opened", '{"cartId":"2"}', "-q")
    read = evt("read", "--model", "model.py").json()
    assert [(e["type"], e["version"], e["data"]) for e in read] == [
        ("order.placed", 2, {"items": [{"productId": "p1", "quantity": 1, "price": None}]}),
        ("order.opened", 2, {"orderId": "2"}),
    ]


def test_the_sample_model_upcasts_order_placed_v1(evt, tmp_path):
    v1 = {"orderId": "ord_0001", "customerId": "cus_1", "items": ["prod_a", "prod_b"], "total": 30.5}
    evt("append", "order-ord_0001", "order.placed", json.dumps(v1), "-q")
    model = os.path.join(ROOT, "sample_streams", "model.py")
    [event] = evt("read", "--model", model).json()
    assert (event["version"], event["data"]) == (
        2,
        {
            "orderId": "ord_0001",
            "customerId": "cus_1",
            "items": [{"productId": "prod_a", "quantity": 1, "price": None}, {"productId": "prod_b", "quantity": 1, "price": None}],
            "total": 30.5,
        },
    )
    assert evt("upcast", "status", "--model", model).lines == ['{"type":"order.placed","versions":{"1":1},"latest":2,"pending":1}']


# -- verification catches a broken migration -------------------------------------------------


def tampering(monkeypatch, change):
    rows = upcasting.Upcaster.rows
    monkeypatch.setattr(upcasting.Upcaster, "rows", lambda self, batch, *crypt: [change(r) for r in rows(self, batch, *crypt)])


def test_a_copy_that_does_not_match_its_source_is_not_published(evt, store, tmp_path, monkeypatch):
    tampering(monkeypatch, lambda r: (r[0], r[1] + "-x") + r[2:])  # a changed stream name
    r = evt("upcast", "run", "--out", "new.db")
    assert (r.exit_code, r.stdout) == (6, "")
    assert r.stderr == "evt: 2 events differ from the source in more than type, version and data\n"
    assert not os.path.exists("new.db") and [n for n in os.listdir(tmp_path) if "tmp" in n] == []


def test_an_in_place_run_that_misses_the_latest_version_is_rolled_back(evt, store, monkeypatch):
    before = dump_events(store)
    tampering(monkeypatch, lambda r: r[:5] + (9,) + r[6:])  # a wrong target version
    r = evt("upcast", "run", "--in-place")
    assert r.exit_code == 6
    assert r.stderr.splitlines()[-1] == "evt: 1 event of cart.opened v1 became order.opened v9, not order.opened v3"
    assert dump_events(store) == before
    assert not [n for n in os.listdir(".") if ".bak-" in n]


def test_in_place_and_a_concurrent_writer_both_succeed(failing, tmp_path):
    (tmp_path / "model.py").write_text(MODEL)  # a model that succeeds
    command = [sys.executable, "-m", "evt"]
    run = subprocess.Popen(command + ["upcast", "run", "--in-place"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    append = subprocess.run(command + ["append", "order-new", "order.placed", '{"orderId":"n","items":["z"]}', "-q"], cwd=tmp_path, capture_output=True)
    out, err = run.communicate(timeout=60)
    assert (run.returncode, append.returncode) == (0, 0), (err, append.stderr)
    with Store(tmp_path / "events.db") as store:
        events = list(store.read(raw=True))
    assert len(events) == 20_001 and events[-1].stream == "order-new"
    assert {(e.type, e.version) for e in events[:-1]} == {("order.placed", 2), ("order.shipped", 1)}
    # the new event was either upcast by the run (appended first) or stored after it, at v1
    assert (events[-1].version, json.loads(out)["upcast"]) in {(2, 10_001), (1, 10_000)}


def test_an_upcaster_returning_what_is_not_json_stops_a_migration(evt, tmp_path):
    (tmp_path / "model.py").write_text(
        "import datetime\nfrom evt import Model\nmodel = Model()\n"
        "@model.upcaster('a', 1)\ndef a1(data):\n    return {'at': datetime.date(2026, 1, 1)}\n"
    )
    evt("append", "s-1", "a", "--model", "model.py", "-q")
    r = evt("upcast", "run", "--out", "new.db", "--model", "model.py")
    assert r.exit_code == 5
    assert r.stderr == "evt: cannot upcast the event at position 1 (a v1): upcaster a v1 returned data that is not JSON: Object of type date is not JSON serializable\n"
    assert not os.path.exists("new.db")


# -- a run killed mid-way (kill -9) ----------------------------------------------------------

SLOW_MODEL = textwrap.dedent(
    '''
    import time
    from evt import Model

    model = Model()


    @model.upcaster("order.placed", version=1)
    def order_placed_v1_to_v2(data):
        time.sleep(0.001)  # slow enough to be killed mid-run
        return {**data, "items": [{"productId": p, "quantity": 1, "price": None} for p in data["items"]]}
    '''
)


def killed_mid_run(folder, *args: str, when) -> None:
    "Start ``evt upcast run ARGS`` and kill -9 it as soon as ``when()`` holds."
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "evt", "upcast", "run", *args], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def slow(tmp_path):
    (tmp_path / "model.py").write_text(SLOW_MODEL)
    (tmp_path / "evt.toml").write_text('db = "events.db"\nmodel = "model.py"\n')
    big_log(tmp_path / "events.db", 10_000)
    return tmp_path


def intact(path) -> bool:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_a_copy_killed_mid_run_leaves_nothing_that_stays_or_blocks_a_rerun(evt, slow):
    before = dump_events("events.db")
    killed_mid_run(slow, "--out", "new.db", when=lambda: any(n.startswith("new.db.tmp-") for n in os.listdir(slow)))
    assert not os.path.exists("new.db")
    assert intact("events.db") and dump_events("events.db") == before
    (slow / "model.py").write_text(MODEL)  # the same upcaster, without the wait
    r = evt("upcast", "run", "--out", "new.db")
    assert r.exit_code == 0, r
    assert sorted(n for n in os.listdir(slow) if n.startswith("new.db")) == ["new.db"]  # the killed run's file is gone


def test_an_in_place_run_killed_mid_run_leaves_the_store_as_it_was_and_no_backup(evt, slow):
    "A backup gets its name only when its migration commits: a killed run leaves none behind for good."
    before = dump_events("events.db")
    size = os.path.getsize("events.db")

    def backup_written() -> bool:
        "The backup's own file (not its journal, which comes and goes) has the store's size."
        for name in os.listdir(slow):
            try:
                if re.search(r"\.bak-.*\.tmp-\d+$", name) and os.path.getsize(slow / name) >= size:
                    return True
            except FileNotFoundError:  # gone between the listing and the look
                pass
        return False

    killed_mid_run(slow, "--in-place", when=backup_written)
    assert intact("events.db") and dump_events("events.db") == before
    conn = sqlite3.connect("events.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET data = '{}'")
    conn.close()
    [unfinished] = [n for n in os.listdir(slow) if ".bak-" in n]
    assert ".tmp-" in unfinished  # never under a backup's name: that migration did not happen
    (slow / "model.py").write_text(MODEL)
    r = evt("upcast", "run", "--in-place")
    assert r.exit_code == 0 and r.json()[0]["upcast"] == 5_000
    backup = os.path.basename(r.json()[0]["backup"])
    assert [n for n in os.listdir(slow) if ".bak-" in n] == [backup]  # the killed run's file is gone
    assert intact(backup) and dump_events(backup) == before


def test_a_backup_whose_migration_committed_gets_its_name_even_if_the_run_was_killed_before_naming_it(evt, store):
    r = evt("upcast", "run", "--in-place")
    backup = os.path.basename(r.json()[0]["backup"])
    content = dump_events(backup)
    unnamed = f"{backup}.tmp-{dead_pid()}"
    os.rename(backup, unnamed)  # as if killed between the commit and the naming
    again = evt("upcast", "run", "--in-place")  # nothing left to upcast; it settles the backup
    assert (again.exit_code, again.json()[0]["backup"]) == (0, None)
    assert [n for n in os.listdir(".") if ".bak-" in n] == [backup]
    assert dump_events(backup) == content


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_unfinished_files_of_killed_runs_are_removed_by_the_next_run(evt, store):
    pid = dead_pid()
    for name in (f"new.db.tmp-{pid}", f"events.db.bak-20261128T010203Z.tmp-{pid}", f"events.db.bak-20261128T010203Z.tmp-{pid}-journal"):
        with open(name, "w") as f:
            f.write("half a file")
    assert evt("upcast", "run", "--out", "new.db").exit_code == 0
    r = evt("upcast", "run", "--in-place")
    assert r.exit_code == 0
    assert sorted(n for n in os.listdir(".") if n.startswith(("new.db", "events.db."))) == sorted(["new.db", os.path.basename(r.json()[0]["backup"])])


def test_an_upcaster_raising_a_multi_line_error_is_reported_in_one_line(evt, tmp_path):
    (tmp_path / "model.py").write_text(
        "import pydantic\nfrom evt import Model\nmodel = Model()\n"
        "class Shape(pydantic.BaseModel):\n    a: int\n    b: int\n"
        "@model.upcaster('x.made', 1)\ndef x1(data):\n    return Shape.model_validate(data).model_dump()\n"
    )
    evt("append", "s-1", "x.made", '{"a": 1}', "--model", "model.py", "-q")
    for args in (["read"], ["upcast", "run", "--dry-run"]):
        r = evt(*args, "--model", "model.py")
        assert (r.exit_code, r.stderr) == (5, "evt: cannot upcast the event at position 1 (x.made v1): upcaster x.made v1 raised ValidationError: b: Field required\n")
