"""Reactors: handlers that append events, run by evt replay, exactly once (kill -9 included)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import evt_command
from evt import Model, NewEvent, Store
from evt.processing.reactors import reaction_id

MODEL = '''
import time
from pydantic import BaseModel, Field
from evt import Model, NewEvent

model = Model()

@model.schema("payment.requested")
class PaymentRequested(BaseModel):
    order: str
    amount: float = Field(gt=0)

checkout = model.reactor("checkout", backoff=0, on_error=ON_ERROR)

@checkout.on("order.placed")
def request_payment(event):
    time.sleep(SLEEP)
    order = event.data["orderId"]
    yield NewEvent(f"payment-{order}", "payment.requested", {"order": order, "amount": event.data["total"]}, expected=0)
    for item in event.data.get("items", []):
        yield {"stream": f"stock-{item}", "type": "stock.reserved", "data": {"order": order}}
'''


def write_model(tmp_path, on_error="dlq", sleep=0.0, body=MODEL):
    (tmp_path / "model.py").write_text(body.replace("ON_ERROR", repr(on_error)).replace("SLEEP", repr(sleep)))
    (tmp_path / "evt.toml").write_text('model = "model.py"\n')


def order(n: int, total: float = 10.0, items=("a",), correlation: str | None = None) -> str:
    return json.dumps({
        "stream": f"order-{n}", "type": "order.placed", "id": f"placed-{n}",
        "data": {"orderId": str(n), "total": total, "items": list(items)},
        "correlationId": correlation or f"req-{n}",
    }) + "\n"


def rows(sql: str, path="events.db") -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def reactions() -> list[tuple]:
    return rows("SELECT stream, type, causation_id, correlation_id FROM events WHERE type != 'order.placed' ORDER BY position")


def test_a_reactor_appends_its_events_caused_by_the_handled_one(evt, tmp_path):
    write_model(tmp_path)
    evt("append", "--ndjson", "-", "-q", input=order(1, items=("a", "b")) + order(2, items=()))
    r = evt("replay")
    assert r.exit_code == 0, r.stderr
    [summary] = r.json()
    assert {k: summary[k] for k in ("name", "kind", "failures", "checkpoint")} == {"name": "checkout", "kind": "reactor", "failures": 0, "checkpoint": 6}
    assert reactions() == [
        ("payment-1", "payment.requested", "placed-1", "req-1"),
        ("stock-a", "stock.reserved", "placed-1", "req-1"),
        ("stock-b", "stock.reserved", "placed-1", "req-1"),
        ("payment-2", "payment.requested", "placed-2", "req-2"),
    ]
    ids = [i for (i,) in rows("SELECT id FROM events WHERE position > 2 ORDER BY position")]
    assert ids == [reaction_id("checkout", "placed-1", 0), reaction_id("checkout", "placed-1", 1), reaction_id("checkout", "placed-1", 2), reaction_id("checkout", "placed-2", 0)]
    [status] = [p for p in evt("projections").json() if p["name"] == "checkout"]
    assert {k: status[k] for k in ("kind", "checkpoint", "head", "lag", "deadLetters")} == {"kind": "reactor", "checkpoint": 6, "head": 6, "lag": 0, "deadLetters": 0}
    assert rows("SELECT name, kind, position FROM evt_checkpoints") == [("checkout", "reactor", 6)]
    assert [s["type"] for s in evt("trace", "--correlation-id", "req-1").json()] == ["order.placed", "payment.requested", "stock.reserved", "stock.reserved"]
    # nothing new: nothing appended
    r = evt("replay")
    assert r.json()[0]["events"] == 0 and len(reactions()) == 4


def test_what_the_handler_sets_is_kept(tmp_path):
    model = Model()
    reactor = model.reactor("r")

    @reactor.on("a.happened")
    def react(event):
        return [NewEvent("b-1", "b.happened", id="given", correlation_id="mine", causation_id="cmd-1", source="svc", metadata={"k": 1})]

    from evt.processing.projections import replay
    from evt.processing.reactors import Reactor

    with Store(tmp_path / "events.db", model=model) as store:
        store.write([NewEvent("a-1", "a.happened", correlation_id="req")])
        replay(store, Reactor(model.reactors["r"]))
        [event] = list(store.read())[1:]
    assert (event.id, event.correlation_id, event.causation_id, event.source, event.metadata) == ("given", "mine", "cmd-1", "svc", {"k": 1})


def test_a_reaction_appended_again_after_a_reset_is_not_stored_twice(evt, tmp_path):
    write_model(tmp_path)
    evt("append", "--ndjson", "-", "-q", input=order(1) + order(2))
    assert evt("replay").exit_code == 0
    before = rows("SELECT * FROM events ORDER BY position")
    with Store(tmp_path / "events.db") as store, store.transaction() as conn:
        from evt.log import checkpoints

        checkpoints.reset(conn, "checkout", "reactor", 0)
    r = evt("replay")
    assert r.exit_code == 0, r.stderr
    assert r.json()[0]["failures"] == 0
    assert rows("SELECT * FROM events ORDER BY position") == before  # same ids, same content: nothing new


def test_an_event_the_schema_refuses_is_a_handler_failure_and_nothing_of_it_is_appended(evt, tmp_path):
    write_model(tmp_path)
    evt("append", "--ndjson", "-", "-q", input=order(1, items=("a",)) + order(2, total=0, items=("b",)) + order(3))
    r = evt("replay")
    assert r.exit_code == 0, r.stderr
    assert r.json()[0]["failures"] == 1
    assert "evt: checkout: position 2 (order.placed) failed, attempt 3 of 3: payment.requested v1 is invalid: amount: Input should be greater than 0" in r.stderr
    assert [s for s, *_ in reactions()] == ["payment-1", "stock-a", "payment-3", "stock-a"]  # not stock-b: the event's reaction is all or nothing
    [dead] = evt("dlq", "list").json()
    assert (dead["consumer"], dead["position"], dead["attempts"]) == ("checkout", 2, 3)
    assert dead["error"] == "payment.requested v1 is invalid: amount: Input should be greater than 0"
    # fixed: the retry appends the reaction, once
    write_model(tmp_path, body=MODEL.replace("Field(gt=0)", "Field(ge=0)"))
    r = evt("dlq", "retry", "--all")
    assert r.exit_code == 0, r.stderr
    assert [s for s, *_ in reactions()][-2:] == ["payment-2", "stock-b"]
    assert evt("dlq", "list").stdout == ""
    assert evt("replay").json()[0]["failures"] == 0
    assert len(reactions()) == 6  # what the retry appended is not reacted to again


def test_an_expected_revision_not_met_is_a_handler_failure(evt, tmp_path):
    write_model(tmp_path)
    evt("append", "payment-2", "payment.requested", '{"order": "2", "amount": 1}', "-q")  # already there
    evt("append", "--ndjson", "-", "-q", input=order(1, items=()) + order(2, items=()))
    r = evt("replay")
    assert r.exit_code == 0, r.stderr
    [dead] = evt("dlq", "list").json()
    assert (dead["position"], dead["error"]) == (3, "stream 'payment-2' already exists, at revision 1 (expected it not to exist)")
    assert [s for s, *_ in reactions()] == ["payment-2", "payment-1"]


def test_on_error_stop_exits_7_before_the_event(evt, tmp_path):
    write_model(tmp_path, on_error="stop")
    evt("append", "--ndjson", "-", "-q", input=order(1, items=()) + order(2, total=0, items=()) + order(3, items=()))
    r = evt("replay")
    assert r.exit_code == 7
    assert r.stderr.splitlines()[-1] == "evt: checkout stopped at position 2 (order.placed) after 3 attempts: payment.requested v1 is invalid: amount: Input should be greater than 0"
    assert [s for s, *_ in reactions()] == ["payment-1"]
    assert [p["checkpoint"] for p in evt("projections").json()] == [1]


@pytest.mark.parametrize(
    "returned, shown",
    [("42", "42"), ("'payment'", "'payment'"), ("[NewEvent('a-1', 'x'), 7]", "7")],
)
def test_a_handler_that_returns_something_else_than_events_fails(evt, tmp_path, returned, shown):
    write_model(tmp_path, body=f"from evt import Model, NewEvent\nmodel = Model()\nr = model.reactor('r', max_attempts=1)\n@r.on('*')\ndef react(event):\n    return {returned}\n")
    evt("append", "s-1", "x", "-q")
    assert evt("replay").exit_code == 0
    [dead] = evt("dlq", "list").json()
    assert dead["error"] == f"reactor r: react returned {shown}: return NewEvent objects (or envelope dicts), a list of them, or None"
    assert rows("SELECT count(*) FROM events") == [(1,)]


def test_a_reactor_has_nothing_to_rebuild(evt, tmp_path):
    write_model(tmp_path)
    evt("append", "--ndjson", "-", "-q", input=order(1, items=()))
    assert evt("replay").exit_code == 0
    r = evt("replay", "checkout", "--rebuild")
    assert (r.exit_code, r.stderr) == (2, "evt: reactor checkout has nothing to rebuild (what it appended stays in the log); to react again from an earlier position: evt projections reset checkout --to POSITION\n")
    r = evt("replay", "--rebuild")  # all: the projections rebuild, the reactor catches up
    assert r.exit_code == 0 and r.json()[0]["checkpoint"] == 2
    assert len(reactions()) == 1


def test_names_are_unique_across_projections_and_reactors(evt, tmp_path):
    model = Model()
    model.projection("p")
    with pytest.raises(Exception, match="a projection and a reactor are both named p"):
        model.reactor("p")
    model.reactor("r")
    with pytest.raises(Exception, match="two reactors named r"):
        model.reactor("r")
    write_model(tmp_path)
    evt("append", "s-1", "x", "-q")
    (tmp_path / "evt.toml").write_text('model = "model.py"\n[projections.checkout]\non = {"*" = "SELECT 1"}\n')
    r = evt("replay")
    assert r.exit_code == 2
    assert "checkout is both a projection in" in r.stderr and "and a reactor in the model" in r.stderr
    write_model(tmp_path)
    r = evt("consume", "checkout", "--exec", "true")
    assert (r.exit_code, r.stderr) == (2, "evt: checkout is a reactor; name the consumer differently\n")


def test_reactors_run_before_projections_so_they_see_what_was_appended(evt, tmp_path):
    write_model(tmp_path)
    (tmp_path / "evt.toml").write_text(
        'model = "model.py"\n[projections.payments]\nsetup = "CREATE TABLE payments (stream TEXT)"\n'
        '[projections.payments.on]\n"payment.*" = "INSERT INTO payments VALUES (:stream)"\n'
    )
    evt("append", "--ndjson", "-", "-q", input=order(1, items=()))
    r = evt("replay")
    assert [s["name"] for s in r.json()] == ["checkout", "payments"]
    assert rows("SELECT * FROM payments") == [("payment-1",)]


def test_replay_follow_reacts_to_new_events(evt_proc, tmp_path):
    write_model(tmp_path)
    evt_proc("append", "--ndjson", "-", "-q", input=order(1, items=()))
    proc = subprocess.Popen(evt_command() + ["replay", "--follow"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        evt_proc("append", "--ndjson", "-", "-q", input=order(2, items=()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(reactions()) < 2:
            time.sleep(0.02)
        assert [s for s, *_ in reactions()] == ["payment-1", "payment-2"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (130, b"")
    [summary] = [json.loads(line) for line in out.decode().splitlines()]
    assert (summary["name"], summary["kind"], summary["checkpoint"]) == ("checkout", "reactor", 4)


def checkpoint_of(name: str) -> int:
    try:
        found = rows(f"SELECT position FROM evt_checkpoints WHERE name = '{name}'")
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    return found[0][0] if found else 0


def test_a_reactor_killed_at_random_moments_reacts_to_each_event_exactly_once(evt_proc, tmp_path):
    orders = 600
    write_model(tmp_path, sleep=0.001)
    with Store(tmp_path / "events.db") as store:
        store.write(NewEvent.from_envelope(json.loads(order(n, items=("a", "b")[: n % 3]))) for n in range(orders))
    rng = random.Random(14)
    env = {**os.environ, "EVT_SYNCHRONOUS": "normal"}  # a killed process loses nothing it committed either way
    seen, alive = [], 0
    for _ in range(6):  # each run makes some progress, then is killed somewhere after it
        reached = checkpoint_of("checkout")
        proc = subprocess.Popen(evt_command() + ["replay", "--batch-size", str(rng.choice((1, 7, 50)))], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while checkpoint_of("checkout") <= reached and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        alive += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(checkpoint_of("checkout"))
    assert seen == sorted(seen) and alive >= 4, (seen, alive)  # killed while running, the checkpoint never back
    r = evt_proc("replay", env={"EVT_SYNCHRONOUS": "normal"})
    assert r.exit_code == 0, r.stderr
    assert seen[-1] < json.loads(r.stdout)["checkpoint"], seen  # there was work left
    counts = rows("SELECT causation_id, type, count(*) FROM events WHERE causation_id IS NOT NULL GROUP BY causation_id, type")
    by_order: dict = {}
    for cause, type_, n in counts:
        by_order.setdefault(cause, {})[type_] = n
    assert len(by_order) == orders
    for n in range(orders):
        expected = {"payment.requested": 1} | ({"stock.reserved": n % 3} if n % 3 else {})
        assert by_order[f"placed-{n}"] == expected, n
    assert rows("SELECT count(*) FROM events") == [(orders + orders + sum(n % 3 for n in range(orders)),)]


def test_the_readme_reactor_example_runs_as_written(tmp_path):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Reactors: handlers that append events", 1)[1].split("\n### ", 1)[0]
    [example] = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict = {}
    exec(compile(example, "README.md, Reactors", "exec"), namespace)
    from evt.processing.projections import replay
    from evt.processing.reactors import Reactor

    model = namespace["model"]
    with Store(tmp_path / "events.db", model=model) as store:
        store.write([NewEvent("order-1", "order.placed", {"orderId": "1", "total": 5}, id="o-1", correlation_id="r")])
        assert replay(store, Reactor(model.reactors["checkout"])).failures == 0
        [_, payment] = list(store.read())
    assert (payment.stream, payment.type, payment.data) == ("payment-1", "payment.requested", {"orderId": "1", "amount": 5})
    assert (payment.causation_id, payment.correlation_id) == ("o-1", "r")
