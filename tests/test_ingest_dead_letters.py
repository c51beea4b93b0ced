"""Messages evt ingest could not store are dead letters like any other (no broker needed)."""

from __future__ import annotations

import json

from evt import Store
from evt.relay.state import load_position, record_bad_message, save_position

GOOD = json.dumps({"stream": "s-1", "type": "t.x", "data": {"n": 1}, "id": "m-1"})


def park(payload: str, error: str = "conflict") -> None:
    with Store("events.db") as store:
        record_bad_message(store, "redis://127.0.0.1:6379/0#events", payload, error)


def test_listed_and_shown_with_their_payload(evt):
    park("not json at all", "invalid JSON")
    park(GOOD)
    park("not json at all", "invalid JSON")  # redelivered: one more attempt, not a second entry
    listed = evt("dlq", "list").json()
    assert [(e["id"], e["position"], e["eventId"], e["type"], e["attempts"]) for e in listed] == [
        (1, None, None, None, 2),
        (2, None, "m-1", "t.x", 1),
    ]
    assert list(listed[0]) == ["id", "consumer", "position", "eventId", "type", "error", "attempts", "firstFailedAt", "lastFailedAt"]
    shown = evt("dlq", "show", "2").json()[0]
    assert shown["payload"] == GOOD and shown["consumer"] == "redis://127.0.0.1:6379/0#events"


def test_retry_appends_the_message_and_clears_the_entry(evt):
    park("not json at all", "invalid JSON")
    park(GOOD)
    result = evt("dlq", "retry", "2")
    assert result.exit_code == 0, result
    assert [e["id"] for e in evt("read").json()] == ["m-1"]
    assert [e["id"] for e in evt("dlq", "list").json()] == [1]
    again = evt("dlq", "retry", "1")
    assert again.exit_code == 7
    assert again.stderr.splitlines()[1] == (
        "evt: dead letter 1 (redis://127.0.0.1:6379/0#events, a message ingest could not store) failed again: "
        "invalid JSON at column 1: Expecting value"
    )
    assert [e["attempts"] for e in evt("dlq", "list").json()] == [2]


def test_a_relay_position_is_a_checkpoint_listed_by_evt_projections(evt):
    evt("append", "s-1", "t.x", "-q")
    with Store("events.db") as store:
        with store.transaction():
            save_position(store, "redis://127.0.0.1:6379/0#events", 1)
        assert load_position(store, "redis://127.0.0.1:6379/0#events") == 1
    [row] = evt("projections").json()
    assert (row["name"], row["kind"], row["checkpoint"], row["lag"]) == ("redis://127.0.0.1:6379/0#events", "relay", 1, 0)
