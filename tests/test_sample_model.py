"""sample_streams/model.py: the schemas and aggregates of the bank and order samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evt import InvalidInput, NewEvent, load_model
from evt.model.aggregates import get_aggregate, load
from evt.testing import given

SAMPLES = Path(__file__).resolve().parent.parent / "sample_streams"


@pytest.fixture(scope="module")
def model():
    return load_model(str(SAMPLES / "model.py"))


def test_evt_toml_names_the_model():
    assert 'model = "model.py"' in (SAMPLES / "evt.toml").read_text().splitlines()


def test_account(model):
    history = given(
        ("account.opened", {"accountId": "7", "owner": "Alice Martin"}),
        ("account.credited", {"amount": 120.5}),
        ("account.debited", {"amount": 40}),
        model=model,
    )
    assert history.fold("account") == {"accountId": "7", "owner": "Alice Martin", "balance": 80.5}


@pytest.mark.parametrize(
    "type_, data, problem",
    [
        ("account.credited", {"amount": 0}, "amount: Input should be greater than 0"),
        ("account.debited", {"amount": "ten"}, "amount: Input should be a valid number"),
        ("account.debited", {}, "amount: Field required"),
        ("order.item_added", {"orderId": "o", "productId": "p", "quantity": -1, "price": 1}, "quantity: Input should be greater than or equal to 0"),
    ],
)
def test_schemas_refuse_bad_data(model, type_, data, problem):
    with pytest.raises(InvalidInput, match=problem):
        given((type_, data), model=model)


def test_order_placed_v1_and_v2_are_both_registered(model):
    assert {(t, v) for t, v in model.schemas if t == "order.placed"} == {("order.placed", 1), ("order.placed", 2)}


def test_order_from_a_v1_placement(model):
    history = given(
        ("order.placed", {"orderId": "o1", "customerId": "c1", "items": ["prod_a"], "total": 6.5}),
        ("order.item_added", {"orderId": "o1", "productId": "prod_b", "quantity": 2, "price": 3.25}),
        ("order.shipped", {"orderId": "o1", "carrier": "UPS", "trackingNumber": "1Z"}),
        model=model,
    )
    state = history.fold("order")
    assert (state["status"], state["total"], state["carrier"]) == ("shipped", 13.0, "UPS")
    assert state["items"] == [
        {"productId": "prod_a", "quantity": 1, "price": None},
        {"productId": "prod_b", "quantity": 2, "price": 3.25},
    ]


def test_order_from_a_v2_placement_then_cancelled(model):
    items = [{"productId": "prod_a", "quantity": 2, "price": 4.0}]
    history = given(
        ("order.placed", {"orderId": "o2", "customerId": "c1", "items": items, "total": 8.0}, 2),
        ("order.cancelled", {"orderId": "o2", "reason": "changed mind"}),
        model=model,
    )
    state = history.fold("order")
    assert (state["status"], state["items"], state["total"], state["cancelReason"]) == (
        "cancelled", items, 8.0, "changed mind"
    )  # fmt: skip


@pytest.mark.skipif(not (SAMPLES / "bank.ndjson").exists(), reason="the sample streams are generated on the samples branch")
def test_every_sample_event_is_valid_and_every_stream_folds(model):
    events = []
    for name in ("bank.ndjson", "orders.ndjson"):
        events += [NewEvent.from_envelope(json.loads(line)) for line in (SAMPLES / name).read_text().splitlines() if line]
    store = given(*events, model=model).store
    for stream in store.streams():
        name = stream["category"]
        folded = load(store, get_aggregate(model, name), stream["stream"], use_snapshots=False)
        assert folded.revision == stream["revision"]
        if name == "account":
            assert folded.state["balance"] >= 0
        else:
            assert folded.state["status"] in ("placed", "shipped", "delivered", "cancelled")
