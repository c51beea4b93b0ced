"""What depends on erased events: snapshots dropped, processors named by checkpoint, projections rebuilt."""

from __future__ import annotations

import json
import sqlite3

import pytest

from evt import Store
from evt.cli.context import Context
from evt.ops.dependents import after_erasure

TOML = """
model = "model.py"

[projections.counts]
setup = "CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)"
[projections.counts.on]
"*" = "INSERT INTO counts VALUES (:stream, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1"

[projections.late]
target = "late.db"
setup = "CREATE TABLE IF NOT EXISTS late (position INTEGER PRIMARY KEY)"
[projections.late.on]
"*" = "INSERT INTO late VALUES (:position)"
"""

MODEL = """
from evt import Model, NewEvent
model = Model()

@model.aggregate("account", initial={"n": 0})
def account(state, event):
    return {"n": state["n"] + 1}

echo = model.reactor("echo")

@echo.on("account.opened")
def react(event):
    return NewEvent("echo-" + event.stream, "account.echoed", {})
"""


def rows(sql, path="events.db"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def setup(evt, tmp_path):
    (tmp_path / "evt.toml").write_text(TOML)
    (tmp_path / "model.py").write_text(MODEL)
    events = [{"stream": f"account-{n % 2}", "type": "account.opened", "data": {}, "id": f"e{n}"} for n in range(1, 5)]
    assert evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in events)).exit_code == 0
    assert evt("replay", "counts", "echo").exit_code == 0  # not "late": it has read nothing
    assert evt("aggregate", "account", "account-1", "--snapshot").exit_code == 0
    assert evt("aggregate", "account", "account-0", "--snapshot").exit_code == 0
    context = Context()
    return context.config, context.model()


def test_snapshots_of_the_streams_go_and_the_readers_of_the_events_are_named(setup, tmp_path):
    config, model = setup
    said = []
    with Store("events.db", model=model) as store:
        found = after_erasure(store, ["account-1"], 3, config=config, model=model, say=said.append)
    assert rows("SELECT stream FROM snapshots") == [("account-0",)]
    assert found.to_dict() == {"snapshotsDropped": 1, "affected": ["counts", "echo"], "rebuilt": []}
    assert said == [
        "dropped 1 snapshot(s) of the affected streams",
        "projection counts has read the erased events (checkpoint 8): rebuild it with evt replay counts --rebuild",
        "reactor echo has read the erased events (checkpoint 8): evt cannot undo what it did with them",
    ]


def test_a_processor_behind_the_first_erased_position_is_not_named(setup):
    config, model = setup
    with Store("events.db", model=model) as store:
        store.save_checkpoint("behind", 2)
        found = after_erasure(store, [], 3, config=config, model=model)
    assert [row["name"] for row in found.affected] == ["counts", "echo"]
    assert found.snapshots == 0


def test_rebuild_replaces_what_a_projection_made_of_the_old_values(setup):
    config, model = setup
    conn = sqlite3.connect("events.db")
    conn.execute("UPDATE counts SET n = 99")  # stands for rows made of values since erased
    conn.commit()
    conn.close()
    said = []
    with Store("events.db", model=model) as store:
        found = after_erasure(store, ["account-1"], 1, rebuild=True, config=config, model=model, say=said.append)
    assert found.rebuilt == ["counts"]
    assert sorted(rows("SELECT stream, n FROM counts")) == [("account-0", 2), ("account-1", 2), ("echo-account-0", 2), ("echo-account-1", 2)]
    assert "rebuilt projection counts" in said

