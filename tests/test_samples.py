"""The bundled sample streams: generated, loadable, and as realistic as the README says."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "sample_streams"
ENVELOPE_KEYS = ["stream", "type", "version", "data", "id", "timestamp", "source", "correlationId", "causationId", "metadata"]


def load_generator():
    spec = importlib.util.spec_from_file_location("sample_generate", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lines_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / name).read_text(encoding="utf-8").splitlines()]


def test_committed_files_are_what_generate_py_writes():
    files = load_generator().render()
    assert sorted(files) == ["bank.ndjson", "orders.ndjson"]
    for name, text in files.items():
        assert (SAMPLES / name).read_text(encoding="utf-8") == text, f"run python sample_streams/generate.py ({name} is stale)"


@pytest.mark.parametrize("name", ["bank.ndjson", "orders.ndjson"])
def test_every_line_is_a_full_envelope_in_time_order(name):
    events = lines_of(name)
    assert len(events) >= 100
    assert all(list(e) == ENVELOPE_KEYS for e in events)
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)
    assert timestamps[-1][:10] > timestamps[0][:10]  # spread over several days
    assert len({e["id"] for e in events}) == len(events)
    ids = {e["id"] for e in events}
    assert all(e["causationId"] in ids for e in events if e["causationId"] is not None)


@pytest.mark.parametrize("name", ["bank.ndjson", "orders.ndjson"])
def test_every_line_loads_into_a_fresh_store(evt, name):
    result = evt("append", "--ndjson", str(SAMPLES / name), "--db", "fresh.db", "-q")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    stored = evt("read", "--db", "fresh.db", "--format", "ndjson").json()
    expected = lines_of(name)
    assert [e["position"] for e in stored] == list(range(1, len(expected) + 1))
    assert [{k: e[k] for k in ENVELOPE_KEYS} for e in stored] == expected


def test_bank_balances_never_go_negative():
    balances: dict[str, float] = {}
    for event in lines_of("bank.ndjson"):
        stream, data = event["stream"], event["data"]
        if event["type"] == "account.opened":
            assert stream not in balances and stream == f"account-{data['accountId']}"
            balances[stream] = 0.0
        elif event["type"] == "account.credited":
            balances[stream] += data["amount"]
        else:
            assert event["type"] == "account.debited"
            balances[stream] -= data["amount"]
        assert balances[stream] >= -1e-9, event
    assert len(balances) == 12


def test_orders_have_both_versions_of_order_placed_and_a_lifecycle():
    events = lines_of("orders.ndjson")
    placed = Counter(e["version"] for e in events if e["type"] == "order.placed")
    assert placed[1] > 0 and placed[2] > 0 and sum(placed.values()) == len({e["stream"] for e in events})
    for event in events:
        items = event["data"].get("items")
        if event["type"] == "order.placed" and event["version"] == 1:
            assert all(isinstance(item, str) for item in items)
        elif event["type"] == "order.placed":
            assert all(set(item) == {"productId", "quantity", "price"} for item in items)
    types = {e["type"] for e in events}
    assert types == {"order.placed", "order.item_added", "order.shipped", "order.delivered", "order.cancelled"}


def test_orders_hold_the_one_free_sample_with_quantity_zero():
    "A line for later work to trip over (see FREE_SAMPLE_* in generate.py), valid for quantity >= 0."
    generator = load_generator()
    expected = 1 if generator.FREE_SAMPLE_ORDER is not None and generator.FREE_SAMPLE_QUANTITY == 0 else 0
    zero = [e for e in lines_of("orders.ndjson") if e["type"] == "order.item_added" and e["data"]["quantity"] == 0]
    assert len(zero) == expected
    assert all(e["data"]["quantity"] >= 0 for e in lines_of("orders.ndjson") if e["type"] == "order.item_added")


def test_a_placement_and_its_items_share_a_correlation_id():
    events = lines_of("orders.ndjson")
    by_id = {e["id"]: e for e in events}
    added_at_checkout = [e for e in events if e["type"] == "order.item_added" and by_id[e["causationId"]]["correlationId"] == e["correlationId"]]
    assert added_at_checkout
    assert all(by_id[e["causationId"]]["type"] == "order.placed" for e in added_at_checkout)


def test_evt_toml_names_the_store():
    import tomllib

    assert tomllib.loads((SAMPLES / "evt.toml").read_text())["db"] == "events.db"
