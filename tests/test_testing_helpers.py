"""evt.testing: given events, expect state — without files."""

from __future__ import annotations

import pytest
from model_helpers import ACCOUNT_7, write_model

from evt import InvalidInput, NewEvent, load_model
from evt.model.aggregates import AggregateNotFound
from evt.testing import given, memory_store


@pytest.fixture
def model(tmp_path):
    return load_model(str(write_model(tmp_path)))


def test_given_tuples_fold_into_state(model):
    history = given(("account.opened", {"owner": "Ann"}), ("account.credited", {"amount": 5}), model=model)
    assert history.fold("account") == {"owner": "Ann", "balance": 5.0}
    assert history.fold("account", at_revision=1) == {"owner": "Ann", "balance": 0.0}
    assert [e.revision for e in history.events] == [1, 2]
    assert history.events[0].stream == "test-1"


def test_given_envelopes_as_evt_read_prints_them(model):
    history = given(*ACCOUNT_7, model=model)
    assert history.fold("account") == {"owner": "Ann", "balance": 30.0}
    assert history.events[-1].timestamp == "2026-11-20T10:05:00.000000Z"
    assert [step["state"]["balance"] for step in history.history("account")] == [0.0, 100.0, 70.0, -20.0, 30.0]


def test_given_new_events_in_several_streams(model):
    history = given(
        NewEvent("account-1", "account.credited", {"amount": 1}),
        NewEvent("account-2", "account.credited", {"amount": 2}),
        model=model,
    )
    assert history.fold("account", "account-2") == {"owner": None, "balance": 2.0}


def test_one_stream_is_found_without_naming_it(model):
    history = given(NewEvent("account-9", "account.credited", {"amount": 1}), model=model)
    assert history.fold("account") == {"owner": None, "balance": 1.0}


def test_given_validates_with_the_model_unless_told_not_to(model):
    with pytest.raises(InvalidInput, match=r"^account.credited v1 is invalid: amount: Input should be greater than 0$"):
        given(("account.credited", {"amount": -1}), model=model)
    assert given(("account.credited", {"amount": -1}), model=model, validate=False).fold("account")["balance"] == -1


def test_given_takes_a_model_path(tmp_path):
    path = write_model(tmp_path / "m")
    assert given(("account.credited", {"amount": 3}), model=str(path)).fold("account")["balance"] == 3


def test_unknown_aggregate_and_missing_model(model):
    with pytest.raises(AggregateNotFound):
        given(("account.credited", {"amount": 3}), model=model).fold("ledger")
    with pytest.raises(TypeError, match="needs your model"):
        given(("account.credited", {"amount": 3})).fold("account")


def test_bad_event_spec():
    with pytest.raises(TypeError, match="an event is"):
        given("account.credited")


def test_memory_store_is_empty_and_private(model):
    store = memory_store(model)
    store.append(NewEvent("a-1", "x.happened"))
    assert memory_store(model).head() == 0 and store.head() == 1


def test_a_frozen_state_class_returns_new_instances(tmp_path):
    path = write_model(tmp_path, extra='''
        from pydantic import ConfigDict

        @model.aggregate("frozen")
        class Frozen(BaseModel):
            model_config = ConfigDict(frozen=True)
            total: int = 0

            @on("account.credited")
            def credited(self, event):
                return self.model_copy(update={"total": self.total + int(event.data["amount"])})
    ''')
    history = given(("account.credited", {"amount": 2}), ("account.credited", {"amount": 3}), model=str(path))
    assert history.fold("frozen") == {"total": 5}
