"""evt dlq retry and a stream's earlier dead letters: only park-stream keeps a stream's order.

Under the default policy (dlq) each failed event was retried on its own; an earlier dead
letter of the same stream must not stop a retry from running the handler.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

# Each event inserts its key; a key seen before fails (UNIQUE), until the statement is fixed.
TOML = """
[projections.keys]
setup = "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, position INTEGER)"
max_attempts = 1
on_error = "{policy}"
[projections.keys.on]
"*" = "{statement}"
"""
STRICT = "INSERT INTO seen VALUES (json_extract(:data, '$.key'), :position)"
FIXED = "INSERT INTO seen VALUES (json_extract(:data, '$.key') || '@' || :position, :position)"

EVENTS = [
    {"stream": "s-1", "type": "t", "data": {"key": "a"}},
    {"stream": "s-1", "type": "t", "data": {"key": "a"}},  # fails
    {"stream": "s-2", "type": "t", "data": {"key": "b"}},
    {"stream": "s-1", "type": "t", "data": {"key": "a"}},  # fails (or, under park-stream, is parked)
]


def configure(tmp_path, policy: str, statement: str) -> None:
    (tmp_path / "evt.toml").write_text(TOML.format(policy=policy, statement=statement))


@pytest.fixture
def failing(evt, tmp_path):
    def make(policy: str):
        configure(tmp_path, policy, STRICT)
        assert evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS)).exit_code == 0
        r = evt("replay")
        assert r.exit_code == 0, r.stderr
        return evt

    return make


def dead(evt) -> list[tuple]:
    return [(d["id"], d["position"], d["attempts"], d["error"]) for d in evt("dlq", "list").json()]


def seen(tmp_path) -> list[tuple]:
    conn = sqlite3.connect(tmp_path / "events.db")
    try:
        return conn.execute("SELECT key, position FROM seen ORDER BY position").fetchall()
    finally:
        conn.close()


def test_under_dlq_a_later_dead_letter_is_retried_before_an_earlier_one_of_its_stream(failing, tmp_path):
    evt = failing("dlq")
    unique = "IntegrityError: UNIQUE constraint failed: seen.key"
    assert dead(evt) == [(1, 2, 1, unique), (2, 4, 1, unique)]
    configure(tmp_path, "dlq", FIXED)
    r = evt("dlq", "retry", "2")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.splitlines() == ["retrying 1 dead letter", "retried 1 dead letter: all succeeded"]
    assert seen(tmp_path) == [("a", 1), ("b", 3), ("a@4", 4)]  # the handler ran on position 4
    assert dead(evt) == [(1, 2, 1, unique)]
    assert evt("dlq", "retry", "1").exit_code == 0
    assert seen(tmp_path) == [("a", 1), ("a@2", 2), ("b", 3), ("a@4", 4)]
    assert dead(evt) == []


def test_under_dlq_a_retry_that_fails_again_counts_an_attempt_and_says_why(failing, tmp_path):
    evt = failing("dlq")
    r = evt("dlq", "retry", "2")
    assert r.exit_code == 7
    assert "evt: dead letter 2 (keys, position 4) failed again: IntegrityError: UNIQUE constraint failed: seen.key" in r.stderr
    assert [(i, attempts) for i, _, attempts, _ in dead(evt)] == [(1, 1), (2, 2)]


def test_under_park_stream_a_parked_entry_waits_for_its_blocker_and_counts_no_attempt(failing, tmp_path):
    evt = failing("park-stream")
    assert dead(evt) == [
        (1, 2, 1, "IntegrityError: UNIQUE constraint failed: seen.key"),
        (2, 4, 0, "parked behind dead letter 1 (stream s-1)"),
    ]
    configure(tmp_path, "park-stream", FIXED)
    r = evt("dlq", "retry", "2")
    assert r.exit_code == 7
    assert "evt: dead letter 2 (keys, position 4) failed again: parked behind dead letter 1 (stream s-1); retry that one first" in r.stderr
    assert seen(tmp_path) == [("a", 1), ("b", 3)]  # the handler never ran
    assert dead(evt)[1] == (2, 4, 0, "parked behind dead letter 1 (stream s-1); retry that one first")
    r = evt("dlq", "retry", "--all")  # oldest first: the blocker, then what it held back
    assert r.exit_code == 0, r.stderr
    assert seen(tmp_path) == [("a", 1), ("a@2", 2), ("b", 3), ("a@4", 4)]
    assert dead(evt) == []


def test_a_parked_entry_of_a_shell_consumer_waits_whatever_policy_the_retry_runs_with(evt, tmp_path):
    "evt dlq retry does not know a consumer's --on-error; an entry parked behind another still waits for it."
    (tmp_path / "fail.flag").write_text("")
    assert evt("append", "--ndjson", "-", "-q", input="".join(json.dumps(e) + "\n" for e in EVENTS)).exit_code == 0
    command = "test ! -e fail.flag || test $EVT_POSITION = 1 || test $EVT_POSITION = 3"
    r = evt("consume", "picky", "--exec", command, "--max-attempts", "1", "--on-error", "park-stream")
    assert r.exit_code == 0, r.stderr
    assert [(p, a) for _, p, a, _ in dead(evt)] == [(2, 1), (4, 0)]
    (tmp_path / "fail.flag").unlink()
    r = evt("dlq", "retry", "2")
    assert r.exit_code == 7 and "parked behind dead letter 1 (stream s-1); retry that one first" in r.stderr
    assert evt("dlq", "retry", "--all").exit_code == 0
    assert dead(evt) == []
