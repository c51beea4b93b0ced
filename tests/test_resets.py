"""evt projections reset NAME --to POSITION|TIME|start|end: a preview, then --execute."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import REDIS_URL

TOML = """
model = "model.py"

[projections.counts]
setup = "CREATE TABLE IF NOT EXISTS counts (type TEXT PRIMARY KEY, n INTEGER NOT NULL)"
max_attempts = 1
[projections.counts.on]
"*" = "INSERT INTO counts VALUES (:type, 1) ON CONFLICT (type) DO UPDATE SET n = n + 1"

[projections.picky]
target = "read.db"
setup = "CREATE TABLE IF NOT EXISTS picky (position INTEGER PRIMARY KEY, ok INTEGER CHECK (ok))"
max_attempts = 1
[projections.picky.on]
"order.*" = "INSERT INTO picky VALUES (:position, json_extract(:data, '$.ok'))"
"""

MODEL = """
from evt import Model, NewEvent
model = Model()
echo = model.reactor("echo")

@echo.on("order.placed")
def react(event):
    return NewEvent("echo-" + event.stream, "order.echoed", {"ok": True})
"""

# Five events, a day apart: orders 1, 3, 5 (5 not ok), accounts 2, 4.
EVENTS = [
    {"stream": f"{'order' if n % 2 else 'account'}-{n}", "type": "order.placed" if n % 2 else "account.opened",
     "data": {"ok": n != 5}, "timestamp": f"2026-11-0{n}T12:00:00Z", "id": f"e{n}"}
    for n in range(1, 6)
]


@pytest.fixture
def ran(evt, tmp_path):
    (tmp_path / "evt.toml").write_text(TOML)
    (tmp_path / "model.py").write_text(MODEL)
    assert evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS)).exit_code == 0
    r = evt("replay")
    assert r.exit_code == 0, r.stderr
    return evt


def rows(sql, path="events.db"):
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(sql).fetchall()
        conn.commit()
        return found
    finally:
        conn.close()


def checkpoints(evt) -> dict:
    return {p["name"]: p["checkpoint"] for p in evt("projections").json()}


def test_the_preview_changes_nothing(ran, tmp_path):
    before = (checkpoints(ran), rows("SELECT * FROM evt_dead_letters", "read.db"))
    r = ran("projections", "reset", "picky", "--to", "2")
    assert r.exit_code == 0, r.stderr
    assert r.json() == [{
        "name": "picky", "kind": "sql", "checkpoint": 8, "to": 2, "head": 8, "again": 6, "skipped": 0,
        "handled": 5, "deadLetters": 1, "executed": False,
    }]  # positions 3..8: orders 3 and 5, the reactor's three echoes (handled: order.*) and account 4; 1 dead letter (5) would be cleared
    assert r.stderr.splitlines() == [
        "warning: picky's tables already hold what events 3..8 did: replaying them without a rebuild may apply them twice "
        "(evt replay picky --rebuild starts over; with --shadow, without downtime)",
        "would reset picky from position 8 to 2 (a preview: nothing changed; --execute does it)",
    ]
    assert (checkpoints(ran), rows("SELECT * FROM evt_dead_letters", "read.db")) == before


def test_executed_backwards_a_projection_handles_the_events_again_which_is_why_it_warns(ran, tmp_path):
    assert rows("SELECT * FROM counts ORDER BY type") == [("account.opened", 2), ("order.echoed", 3), ("order.placed", 3)]
    r = ran("projections", "reset", "counts", "--to", "4", "--execute")
    assert r.exit_code == 0, r.stderr
    assert r.json()[0] | {} == {
        "name": "counts", "kind": "sql", "checkpoint": 8, "to": 4, "head": 8, "again": 4, "skipped": 0,
        "handled": 4, "deadLetters": 0, "executed": True,
    }
    assert r.stderr.splitlines()[-1] == "reset counts from position 8 to 4"
    assert checkpoints(ran)["counts"] == 4
    ran("replay", "counts")
    assert rows("SELECT * FROM counts ORDER BY type") == [("account.opened", 2), ("order.echoed", 6), ("order.placed", 4)]  # applied twice


def test_going_back_clears_the_dead_letters_of_events_handled_again(ran, tmp_path):
    assert [(d["consumer"], d["position"]) for d in ran("dlq", "list").json()] == [("picky", 5)]
    (tmp_path / "evt.toml").write_text(TOML.replace("json_extract(:data, '$.ok'))", "1)"))  # fixed
    rows("DELETE FROM picky", "read.db")
    r = ran("projections", "reset", "picky", "--to", "start", "--execute")
    assert r.json()[0]["deadLetters"] == 1
    assert ran("dlq", "list").stdout == ""
    assert ran("replay", "picky").json()[0]["failures"] == 0
    assert rows("SELECT position FROM picky ORDER BY position", "read.db") == [(1,), (3,), (5,), (6,), (7,), (8,)]


@pytest.mark.parametrize(
    "to, position",
    [("start", 0), ("end", 8), ("0", 0), ("3", 3), ("2026-11-03T12:00:00Z", 2), ("2026-11-03", 2), ("2026-11-04T00:00:00+01:00", 3), ("2027-01-01", 8)],
)
def test_where_to(ran, to, position):
    ran("projections", "reset", "counts", "--to", "start", "--execute")
    r = ran("projections", "reset", "counts", "--to", to, "--execute")
    assert r.exit_code == 0, r.stderr
    assert r.json()[0]["to"] == position
    assert checkpoints(ran)["counts"] == position


def test_a_time_as_an_age_means_events_since_then(ran, evt):
    r = ran("projections", "reset", "counts", "--to", "1h")
    assert (r.json()[0]["to"], r.json()[0]["again"]) == (5, 3)  # the echoes the reactor appended just now (6..8)


def test_forwards_skips_and_says_so(ran, evt):
    evt("append", "--ndjson", "-", "-q", input=json.dumps({"stream": "order-9", "type": "order.placed", "data": {"ok": True}}) + "\n")
    r = ran("projections", "reset", "counts", "--to", "end", "--execute")
    assert r.json()[0] | {} == {
        "name": "counts", "kind": "sql", "checkpoint": 8, "to": 9, "head": 9, "again": 0, "skipped": 1,
        "handled": 1, "deadLetters": 0, "executed": True,
    }
    assert r.stderr.splitlines()[0] == "warning: counts will skip events 9..9: they will never be handled by it"
    ran("replay", "counts")
    assert rows("SELECT n FROM counts WHERE type = 'order.placed'") == [(3,)]


def test_a_reactor_reset_back_appends_nothing_twice(ran):
    before = rows("SELECT * FROM events ORDER BY position")
    r = ran("projections", "reset", "echo", "--to", "start", "--execute")
    assert (r.json()[0]["kind"], r.json()[0]["again"], r.json()[0]["handled"]) == ("reactor", 8, 3)
    assert r.stderr.splitlines()[0].startswith("warning: reactor echo will react to events 1..8 again: what it appended then keeps its id")
    r = ran("replay", "echo")
    assert r.exit_code == 0 and r.json()[0]["failures"] == 0
    assert rows("SELECT * FROM events ORDER BY position") == before


def test_a_shell_consumer_reset_back_runs_its_command_again(ran, tmp_path):
    assert ran("consume", "log", "--exec", "echo $EVT_POSITION >> seen.txt", "--type", "account.*").exit_code == 0
    r = ran("projections", "reset", "log", "--to", "3", "--execute")
    assert (r.json()[0]["kind"], r.json()[0]["again"], r.json()[0]["handled"]) == ("exec", 5, None)
    assert "consumer log will run its command again for events 4..8" in r.stderr
    ran("consume", "log", "--type", "account.*")
    assert (tmp_path / "seen.txt").read_text().split() == ["2", "4", "4"]


def test_a_relay_to_redis_reset_back_sends_nothing_redis_has(ran, redis_broker):
    client, key = redis_broker
    r = ran("relay", REDIS_URL, "--key", key)
    assert json.loads(r.stdout)["published"] == 8
    name = f"{REDIS_URL}#{key}"
    r = ran("projections", "reset", name, "--to", "start", "--execute")
    assert (r.json()[0]["kind"], r.json()[0]["again"]) == ("relay", 8)
    assert "Redis refuses what it already has" in r.stderr
    r = ran("relay", REDIS_URL, "--key", key)
    assert json.loads(r.stdout) | {} == {"relay": name, "published": 0, "alreadyPublished": 8, "position": 8}
    assert client.xlen(key) == 8


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["nope", "--to", "1"], 4, "evt: no projection, reactor, consumer or relay named 'nope' (known: counts, echo, picky)\n"),
        (["counts", "--to", "9"], 2, "evt: --to 9 is past the end of the log (its last position is 8); --to end goes there\n"),
        (["counts", "--to", "yesterday"], 2, "evt: --to 'yesterday': expected RFC 3339 (2026-11-28T02:00:00Z) or an age like 30s, 15m, 2h, 7d, 1w\n"),
    ],
)
def test_bad_input_changes_nothing(ran, args, code, message):
    before = checkpoints(ran)
    r = ran("projections", "reset", *args, "--execute")
    assert (r.exit_code, r.stdout, r.stderr) == (code, "", message)
    assert checkpoints(ran) == before


def test_a_projection_that_never_ran_has_nothing_to_reset(evt, tmp_path):
    (tmp_path / "evt.toml").write_text(TOML)
    (tmp_path / "model.py").write_text(MODEL)
    evt("append", "s-1", "x", "-q")
    r = evt("projections", "reset", "picky", "--to", "0", "--execute")
    assert (r.exit_code, r.stderr) == (2, "evt: projection picky has never run, so there is nothing to reset (evt replay picky sets it up)\n")
    assert not (tmp_path / "read.db").exists()


def test_shared_options_before_the_group(ran, tmp_path):
    (tmp_path / "evt.toml").rename(tmp_path / "other.toml")
    r = ran("--config", "other.toml", "projections", "reset", "counts", "--to", "0")
    assert r.exit_code == 0, r.stderr
    assert [p["name"] for p in ran("--config", "other.toml", "projections").json()] == ["counts", "picky", "echo"]
