"""evt replay NAME --rebuild --shadow: rebuilt beside the live tables, swapped in at once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import evt_command
from evt import NewEvent, Store
from evt.log.migrations import own_tables

TOML = """
[projections.t]
setup = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)"
[projections.t.on]
"order.placed" = "INSERT INTO t VALUES (json_extract(:data, '$.n'), 'VERSION')"
"""


def configure(tmp_path, version="v1", toml=TOML) -> None:
    (tmp_path / "evt.toml").write_text(toml.replace("VERSION", version))


def fill(tmp_path, n: int, start: int = 0) -> None:
    with Store(tmp_path / "events.db", synchronous="normal") as store:
        store.write(NewEvent(f"order-{i}", "order.placed", {"n": i}) for i in range(start, start + n))


def rows(sql: str, path="events.db") -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(sql).fetchall()
        conn.commit()
        return found
    finally:
        conn.close()


def tables(path="events.db") -> list[str]:
    return [n for (n,) in rows("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name", path)]


# A reader polling the projection's table every 2 ms, noting each new answer, until its
# stdin closes; then it looks once more and prints what it saw (JSON) and how often it looked.
READER = r"""
import json, sqlite3, sys, threading, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
seen, polls, errors = [], 0, []
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
def look():
    global polls
    try:
        answer = list(conn.execute("SELECT count(*), min(v), max(v) FROM t").fetchone())
    except sqlite3.Error as e:
        errors.append(str(e))
        answer = None
    polls += 1
    if not seen or seen[-1] != answer:
        seen.append(answer)
while not stop.is_set():
    look()
    time.sleep(0.002)
look()  # once more after being told to stop: the table as the rebuild left it
print(json.dumps({"seen": seen, "polls": polls, "errors": errors[:5]}), flush=True)
"""


def test_a_reader_polling_through_a_shadow_rebuild_of_100000_events_sees_the_old_table_then_the_new(tmp_path, evt_proc):
    n = 100_000
    configure(tmp_path, "v1")
    fill(tmp_path, n)
    r = evt_proc("replay", env={"EVT_SYNCHRONOUS": "normal"})
    assert r.exit_code == 0, r.stderr
    configure(tmp_path, "v2")  # the fixed projection
    reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path / "events.db")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "ready\n"
        rebuild = subprocess.run(
            evt_command() + ["replay", "t", "--rebuild", "--shadow"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env={**__import__("os").environ, "EVT_SYNCHRONOUS": "normal"},
        )
        out, _ = reader.communicate("", timeout=30)
    finally:
        reader.kill()
    assert rebuild.returncode == 0, rebuild.stderr
    assert rebuild.stderr == "t: the shadow is in place (checkpoint 100000); the old tables are dropped\n"
    lines = [json.loads(line) for line in rebuild.stdout.splitlines()]
    assert lines[0] == {"projection": "t", "table": "t", "before": n, "after": n}
    assert (lines[1]["name"], lines[1]["events"], lines[1]["checkpoint"]) == ("t", n, n)
    observed = json.loads(out)
    assert observed["errors"] == []
    assert observed["seen"] == [[n, "v1", "v1"], [n, "v2", "v2"]]  # never empty, never partial, one swap
    assert observed["polls"] > 50, observed  # it really looked, all along
    assert [t for t in tables() if t.lower() not in own_tables()] == ["t"]  # no shadow left behind
    assert rows("SELECT name, kind, position FROM evt_checkpoints") == [("t", "sql", n)]


def shadow_checkpoint(tmp_path, name="t (shadow)") -> int:
    try:
        found = rows(f"SELECT position FROM evt_checkpoints WHERE name = '{name}'")
    except sqlite3.OperationalError:
        return 0
    return found[0][0] if found else 0


def test_killed_mid_way_the_live_tables_are_untouched_and_the_next_run_starts_afresh(tmp_path, evt_proc):
    n = 30_000
    configure(tmp_path, "v1")
    fill(tmp_path, n)
    assert evt_proc("replay").exit_code == 0
    before = rows("SELECT count(*), sum(id), min(v), max(v) FROM t")
    configure(tmp_path, "v2")
    proc = subprocess.Popen(evt_command() + ["replay", "t", "--rebuild", "--shadow", "--batch-size", "500"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while shadow_checkpoint(tmp_path) < 2_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = shadow_checkpoint(tmp_path)
    assert 0 < killed_at < n, killed_at  # really killed mid-way
    assert rows("SELECT count(*), sum(id), min(v), max(v) FROM t") == before
    assert rows("SELECT name, position FROM evt_checkpoints ORDER BY name") == [("t", n), ("t (shadow)", killed_at)]
    assert rows("SELECT projection, state FROM evt_shadows") == [("t", "building")]
    r = evt_proc("replay", "t", "--swap")  # an unfinished shadow is never swapped in
    assert (r.exit_code, r.stderr) == (2, "evt: no shadow of t was not finished (its build was stopped): evt replay t --rebuild --shadow --no-swap builds one to keep\n")
    r = evt_proc("replay", "t", "--rebuild", "--shadow", "--format", "json")
    assert r.exit_code == 0, r.stderr
    [counts, summary] = json.loads(r.stdout)
    assert (counts["after"], summary["events"]) == (n, n)  # afresh, from the start
    assert rows("SELECT count(*), sum(id), min(v), max(v) FROM t") == [(n, before[0][1], "v2", "v2")]
    assert "evt_shadow_t" not in tables() and rows("SELECT count(*) FROM evt_shadows") == [(0,)]


def test_no_swap_keeps_the_shadow_and_swap_catches_it_up_then_puts_it_in_place(tmp_path, evt):
    configure(tmp_path, "v1")
    fill(tmp_path, 5)
    evt("replay")
    configure(tmp_path, "v2")
    r = evt("replay", "t", "--rebuild", "--shadow", "--no-swap")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == "t: the shadow is kept for inspection (evt_shadow_t); evt replay t --swap puts it in place\n"
    assert rows("SELECT DISTINCT v FROM t") == [("v1",)] and rows("SELECT count(*), min(v) FROM evt_shadow_t") == [(5, "v2")]
    assert [p["checkpoint"] for p in evt("projections").json()] == [5]
    fill(tmp_path, 3, start=5)
    evt("replay")  # the live projection goes on meanwhile
    assert rows("SELECT count(*) FROM t") == [(8,)]
    r = evt("replay", "t", "--swap")
    assert r.exit_code == 0, r.stderr
    [counts, summary] = r.json()
    assert counts == {"projection": "t", "table": "t", "before": 8, "after": 8}
    assert (summary["events"], summary["checkpoint"]) == (3, 8)  # caught up first
    assert rows("SELECT count(*), min(v), max(v) FROM t") == [(8, "v2", "v2")]
    assert "evt_shadow_t" not in tables()
    r = evt("replay", "t", "--swap")
    assert (r.exit_code, r.stderr) == (2, "evt: no shadow of t was kept: evt replay t --rebuild --shadow --no-swap builds one to keep\n")


def test_a_kept_shadow_is_not_swapped_in_by_changed_code(tmp_path, evt):
    configure(tmp_path, "v1")
    fill(tmp_path, 2)
    evt("replay")
    assert evt("replay", "t", "--rebuild", "--shadow", "--no-swap").exit_code == 0
    configure(tmp_path, "v3")
    r = evt("replay", "t", "--swap")
    assert (r.exit_code, r.stderr) == (2, "evt: projection t changed since its shadow was built: evt replay t --rebuild --shadow builds a new one\n")
    assert rows("SELECT DISTINCT v FROM t") == [("v1",)]


DIFF_TOML = """
[projections.d]
setup = "CREATE TABLE IF NOT EXISTS keyed (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE IF NOT EXISTS loose (v TEXT)"
[projections.d.on]
"order.placed" = [
  "INSERT INTO keyed SELECT json_extract(:data, '$.n'), 'x' WHERE json_extract(:data, '$.n') != SKIP",
  "INSERT INTO loose VALUES (CASE WHEN json_extract(:data, '$.n') = 1 THEN 'one' ELSE 'many' END)",
]
"""


def test_diff_shows_the_rows_that_differ_by_key_or_whole_rows(tmp_path, evt):
    (tmp_path / "evt.toml").write_text(DIFF_TOML.replace("SKIP", "2"))
    fill(tmp_path, 4)  # n = 0..3
    evt("replay")
    rows("UPDATE keyed SET v = 'tampered' WHERE id = 0")
    rows("INSERT INTO loose VALUES ('stray')")
    (tmp_path / "evt.toml").write_text(DIFF_TOML.replace("SKIP", "3"))
    r = evt("replay", "d", "--rebuild", "--shadow", "--diff")
    assert r.exit_code == 0, r.stderr
    assert r.json()[:-1] == [
        {"projection": "d", "table": "keyed", "before": 3, "after": 3},
        {"projection": "d", "table": "loose", "before": 5, "after": 4},
        {"projection": "d", "table": "keyed", "change": "changed", "key": {"id": 0}, "before": {"id": 0, "v": "tampered"}, "after": {"id": 0, "v": "x"}},
        {"projection": "d", "table": "keyed", "change": "added", "key": {"id": 2}, "before": None, "after": {"id": 2, "v": "x"}},
        {"projection": "d", "table": "keyed", "change": "removed", "key": {"id": 3}, "before": {"id": 3, "v": "x"}, "after": None},
        {"projection": "d", "table": "loose", "change": "removed", "key": None, "before": {"v": "stray"}, "after": None},
    ]
    assert rows("SELECT * FROM keyed ORDER BY id") == [(0, "x"), (1, "x"), (2, "x")]


SCHEMA_TOML = """
[projections.s]
setup = [
  "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, status TEXT)",
  "CREATE TABLE IF NOT EXISTS counts (status TEXT PRIMARY KEY, n INTEGER)",
  "CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status)",
  "CREATE VIEW IF NOT EXISTS placed AS SELECT id FROM orders WHERE status = 'placed'",
  "CREATE TRIGGER IF NOT EXISTS counting AFTER INSERT ON orders BEGIN INSERT INTO counts VALUES (NEW.status, 1) ON CONFLICT (status) DO UPDATE SET n = n + 1; END",
]
[projections.s.on]
"order.placed" = "INSERT INTO orders VALUES (json_extract(:data, '$.n'), 'STATUS')"
"""


def objects(path="events.db") -> list[tuple]:
    return rows("SELECT type, name, tbl_name FROM sqlite_schema WHERE tbl_name IN ('orders', 'counts', 'placed', 'mine') ORDER BY type, name", path)


def test_indexes_views_and_triggers_come_along_and_views_of_others_follow(tmp_path, evt):
    (tmp_path / "evt.toml").write_text(SCHEMA_TOML.replace("STATUS", "placed"))
    fill(tmp_path, 3)
    evt("replay")
    rows("CREATE VIEW mine AS SELECT count(*) AS n FROM orders JOIN counts USING (status)")  # someone else's view
    for round, status in enumerate(("placed", "placed", "shipped")):  # twice the same, then a change
        (tmp_path / "evt.toml").write_text(SCHEMA_TOML.replace("STATUS", status))
        r = evt("replay", "s", "--rebuild", "--shadow")
        assert r.exit_code == 0, (round, r.stderr)
        assert rows("SELECT * FROM counts") == [(status, 3)]  # the trigger ran in the shadow
        assert rows("SELECT count(*) FROM placed") == [(3 if status == "placed" else 0,)]
        assert rows("SELECT n FROM mine") == [(3,)]
        found = objects()
        assert [(t, n) for t, n, _ in found if t != "index"] == [("table", "counts"), ("table", "orders"), ("trigger", "counting"), ("view", "mine"), ("view", "placed")]
        [index] = [(n, table) for t, n, table in found if t == "index" and not n.startswith("sqlite_")]
        assert index[1] == "orders" and index[0] in ("orders_by_status", "evt_shadow_orders_by_status")
        assert "orders_by_status" in str(rows("EXPLAIN QUERY PLAN SELECT id FROM orders WHERE status = 'x'"))  # in use
        assert not [n for n in tables() if n.startswith(("evt_shadow_", "evt_retired_"))]
    fill(tmp_path, 1, start=3)
    evt("replay")
    assert rows("SELECT * FROM counts") == [("shipped", 4)]  # the trigger is on the new table


PY_MODEL = """
from evt import Model
model = Model()
totals = model.projection("totals", tables=["totals", "seen"], target="read.db")

@totals.setup
def create(db):
    db["totals"].create({"stream": str, "n": int}, pk="stream")
    db["totals"].create_index(["n"])

@totals.on("order.placed")
def placed(db, event):
    db["totals"].upsert({"stream": event.stream, "n": event.data["n"] * FACTOR}, pk="stream")
    db.execute("INSERT INTO seen (position) VALUES (?)", [event.position])
    assert db.query("SELECT count(*) AS c FROM seen WHERE position = ?", [event.position]).__next__()["c"] == 1
"""


def test_a_python_projection_is_rebuilt_in_its_shadow_in_its_own_file(tmp_path, evt):
    (tmp_path / "model.py").write_text(PY_MODEL.replace("FACTOR", "1").replace('db["totals"].create(', 'db["seen"].create({"position": int}, pk="position")\n    db["totals"].create('))
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    fill(tmp_path, 4)
    assert evt("replay").exit_code == 0
    for factor in ("10", "100"):
        (tmp_path / "model.py").write_text(PY_MODEL.replace("FACTOR", factor).replace('db["totals"].create(', 'db["seen"].create({"position": int}, pk="position")\n    db["totals"].create('))
        r = evt("replay", "--rebuild", "--shadow", "--diff")
        assert r.exit_code == 0, r.stderr
        changes = r.json()[:-1]
        assert changes[:2] == [
            {"projection": "totals", "table": "totals", "before": 4, "after": 4},
            {"projection": "totals", "table": "seen", "before": 4, "after": 4},
        ]
        assert [c["change"] for c in changes[2:]] == ["changed"] * 3  # order-0 is 0 whatever the factor
        assert rows("SELECT n FROM totals ORDER BY stream", "read.db") == [(0,), (int(factor),), (2 * int(factor),), (3 * int(factor),)]
        assert tables("read.db") == ["evt_checkpoints", "evt_dead_letters", "evt_shadows", "seen", "totals"]
        assert [name for (name,) in rows("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'totals' AND name NOT LIKE 'sqlite_%'", "read.db")]
    assert not (set(tables()) & {"totals", "seen"})


def test_a_handler_that_reaches_for_the_live_tables_stops_the_shadow(tmp_path, evt):
    model = PY_MODEL.replace("FACTOR", "1").replace('db["totals"].create(', 'db["seen"].create({"position": int}, pk="position")\n    db["totals"].create(')
    (tmp_path / "model.py").write_text(model)
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')
    fill(tmp_path, 2)
    evt("replay")
    (tmp_path / "model.py").write_text(model.replace('db.execute("INSERT INTO seen', 'db.conn.execute("INSERT INTO seen'))
    r = evt("replay", "--rebuild", "--shadow")
    assert r.exit_code == 7
    assert "totals (shadow): the handler of position 1 (order.placed) tried to change seen, a live table, while its shadow is built" in r.stderr
    assert rows("SELECT count(*) FROM seen", "read.db") == [(2,)]  # untouched


def test_a_statement_that_renaming_would_change_is_refused_up_front(tmp_path, evt):
    (tmp_path / "evt.toml").write_text("""
[projections.odd]
setup = "CREATE TABLE IF NOT EXISTS total (n INTEGER); CREATE TABLE IF NOT EXISTS other (total INTEGER)"
[projections.odd.on]
"*" = "INSERT INTO other (total) VALUES (1)"
""")
    fill(tmp_path, 1)
    evt("replay")
    r = evt("replay", "odd", "--rebuild", "--shadow")
    assert r.exit_code == 2
    assert r.stderr == (
        "evt: projection odd: cannot be rebuilt in a shadow: with its tables renamed, 'CREATE TABLE IF NOT EXISTS other (total INTEGER)' "
        "would do something else (a column, alias or function named like one of its tables: total, other?); evt replay odd --rebuild rebuilds it in place\n"
    )
    assert "evt_shadow_total" not in tables()


def test_dead_letters_of_the_shadow_become_the_projections_at_the_swap(tmp_path, evt):
    toml = TOML.replace("v TEXT NOT NULL", "v TEXT NOT NULL CHECK (v != 'bad' OR id < 2)").replace("[projections.t.on]", "max_attempts = 1\n[projections.t.on]")
    configure(tmp_path, "v1", toml)
    fill(tmp_path, 4)
    evt("replay")
    configure(tmp_path, "bad", toml)
    r = evt("replay", "t", "--rebuild", "--shadow", "--no-swap")
    assert r.exit_code == 0, r.stderr
    assert [(d["consumer"], d["position"]) for d in evt("dlq", "list").json()] == [("t (shadow)", 3), ("t (shadow)", 4)]
    r = evt("replay", "t", "--swap")
    assert r.exit_code == 0, r.stderr
    assert r.json()[-1]["failures"] == 0
    assert [(d["consumer"], d["position"]) for d in evt("dlq", "list").json()] == [("t", 3), ("t", 4)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shadow"], "--shadow is a way to rebuild: evt replay NAME --rebuild --shadow"),
        (["--rebuild", "--no-swap"], "--no-swap keeps a shadow: evt replay NAME --rebuild --shadow --no-swap"),
        (["--diff"], "--diff shows what a shadow changes: give it with --rebuild --shadow or --swap"),
        (["--swap", "--rebuild"], "--swap puts a kept shadow in place; it does not go with --rebuild, --shadow or --no-swap"),
        (["--rebuild", "--shadow", "--follow"], "--follow does not go with --shadow or --swap: keep the projection's evt replay --follow running beside it (it goes on from the new tables once they are swapped in), or start one after"),
    ],
)
def test_options_that_do_not_go_together(tmp_path, evt, args, message):
    configure(tmp_path)
    fill(tmp_path, 1)
    r = evt("replay", *args)
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"evt: {message}\n")


def test_a_follower_running_beside_a_shadow_rebuild_goes_on_from_the_new_tables(tmp_path, evt_proc):
    "The live projection's replay keeps it up to date while the shadow is built, and then keeps the new tables up to date: each event once."
    configure(tmp_path, "v1")
    fill(tmp_path, 2_000)
    assert evt_proc("replay").exit_code == 0
    follower = subprocess.Popen(evt_command() + ["replay", "--follow"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        rows("DELETE FROM t WHERE id < 100")  # damage to repair
        fill(tmp_path, 10, start=2_000)
        r = evt_proc("replay", "t", "--rebuild", "--shadow")
        assert r.exit_code == 0, r.stderr
        fill(tmp_path, 10, start=2_010)
        deadline = time.monotonic() + 30
        while rows("SELECT count(*) FROM t") != [(2_020,)] and time.monotonic() < deadline:
            time.sleep(0.02)
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=10)
    finally:
        follower.kill()
    assert err == b""
    assert rows("SELECT count(*), min(id), max(id) FROM t") == [(2_020, 0, 2_019)]
    assert rows("SELECT count(*) FROM evt_dead_letters") == [(0,)]
