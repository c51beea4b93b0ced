"""Appends and a checkpoint in one transaction (a process manager), and checkpoints that only move forward."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from evt import Conflict, NewEvent, Store, WrongExpectedRevision


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "events.db") as store:
        yield store


def checkpoint_rows(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, kind, position FROM evt_checkpoints ORDER BY name").fetchall()
    finally:
        conn.close()


def test_events_and_a_checkpoint_commit_together(store, tmp_path):
    store.write([NewEvent("order-1", "order.placed", {"total": 5})])
    assert store.checkpoint("payments") == 0
    assert store.write([NewEvent("payment-1", "payment.requested", {"order": "order-1"})], checkpoint=("payments", 1)) == [2]
    assert store.checkpoint("payments") == 1
    assert checkpoint_rows(tmp_path / "events.db") == [("payments", "reactor", 1)]
    [event] = store.append([NewEvent("payment-2", "payment.requested")], checkpoint=("payments", 2))
    assert (event.position, store.checkpoint("payments")) == (3, 2)


def test_a_checkpoint_never_moves_back_and_then_nothing_is_written(store, tmp_path):
    store.write([NewEvent("a-1", "t.x"), NewEvent("a-2", "t.x")], checkpoint=("pm", 2))
    with pytest.raises(Conflict) as refused:
        store.write([NewEvent("late-1", "t.x")], checkpoint=("pm", 1))
    assert refused.value.exit_code == 3
    assert str(refused.value) == "checkpoint 'pm' is at position 2; it cannot move back to 1"
    assert store.head() == 2 and store.checkpoint("pm") == 2
    store.save_checkpoint("pm", 2)  # standing still is not moving back
    with pytest.raises(Conflict):
        store.save_checkpoint("pm", 0)


def test_a_failed_append_moves_no_checkpoint(store):
    store.write([NewEvent("s-1", "t.x")])
    with pytest.raises(WrongExpectedRevision):
        store.write([NewEvent("s-1", "t.x", expected=0)], checkpoint=("pm", 1))
    assert store.checkpoint("pm") == 0 and store.head() == 1


def test_a_transaction_groups_writes_and_checkpoints(store):
    with store.transaction():
        store.write([NewEvent("s-1", "t.x")])
        store.save_checkpoint("pm", 7)
        store.write([NewEvent("s-2", "t.x")], checkpoint=("other", 1))
    assert (store.head(), store.checkpoint("pm"), store.checkpoint("other")) == (2, 7, 1)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.write([NewEvent("s-3", "t.x")])
            store.save_checkpoint("pm", 9)
            raise RuntimeError("the process manager failed")
    assert (store.head(), store.checkpoint("pm")) == (2, 7)


@pytest.mark.parametrize("bad", [("pm",), ["pm", 1], (1, 2), ("pm", -1), ("pm", "1")])
def test_a_malformed_checkpoint_is_refused_before_anything_is_written(store, bad):
    with pytest.raises(ValueError):
        store.write([NewEvent("s-1", "t.x")], checkpoint=bad)
    assert store.head() == 0


# A process manager: for every order.placed it appends a payment.requested, with its
# checkpoint in the same transaction. It does one step per line on its stdin, so the test
# decides how far each run gets before it is killed, at a random moment of the next step.
PROCESS_MANAGER = r"""
import sys
from evt import Filter, NewEvent, Store
store = Store(sys.argv[1])
name = "payments"
while sys.stdin.readline():
    after = store.checkpoint(name)
    batch = list(store.read(Filter(types=["order.placed"], after=after, limit=3)))
    if batch:
        store.write(
            [NewEvent(f"payment-{e.stream}", "payment.requested", {"order": e.stream}, causation_id=e.id, correlation_id=e.correlation_id) for e in batch],
            checkpoint=(name, batch[-1].position),
        )
    elif store.head() > after:
        store.save_checkpoint(name, store.head())  # what follows holds no orders
    print("stepped", flush=True)
"""


def test_a_process_manager_killed_at_random_moments_reacts_exactly_once(tmp_path):
    path = tmp_path / "events.db"
    orders = 60
    with Store(path) as store:
        store.write([NewEvent(f"order-{i}", "order.placed", {"n": i}, correlation_id=f"req-{i}") for i in range(orders)])
    rng = random.Random(7)
    kills = 0
    done = False
    while not done:
        proc = subprocess.Popen([sys.executable, "-c", PROCESS_MANAGER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(rng.randint(0, 3)):  # whole steps
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "stepped\n"
        proc.stdin.write("\n")  # one more step, killed somewhere in it (or before, or after)
        proc.stdin.flush()
        time.sleep(rng.uniform(0, 0.004))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        with Store(path) as store:
            done = store.checkpoint("payments") == store.head()
    assert kills >= 5  # 20 steps of work, at most 4 in a run
    conn = sqlite3.connect(path)
    reactions = conn.execute(
        "SELECT stream, count(*), min(causation_id IS NOT NULL) FROM events WHERE type = 'payment.requested' GROUP BY stream"
    ).fetchall()
    conn.close()
    assert len(reactions) == orders
    assert {count for _, count, _ in reactions} == {1}  # each order once, however often it was killed
    assert all(caused for _, _, caused in reactions)


def test_evt_projections_lists_a_process_managers_checkpoint(tmp_path, evt):
    with Store(tmp_path / "events.db") as store:
        store.write([NewEvent("order-1", "order.placed"), NewEvent("order-2", "order.placed")])
        store.write([NewEvent("payment-1", "payment.requested")], checkpoint=("payments", 1))
    result = evt("projections", "--format", "ndjson")
    assert result.exit_code == 0
    [row] = [json.loads(line) for line in result.lines]
    assert {k: row[k] for k in ("name", "kind", "checkpoint", "head", "lag", "deadLetters")} == {
        "name": "payments", "kind": "reactor", "checkpoint": 1, "head": 3, "lag": 2, "deadLetters": 0,
    }
