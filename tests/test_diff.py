"""The diff that --history shows: what changed between two states."""

from evt.model.diff import describe, diff


def test_changed_added_removed_in_nested_state():
    before = {"balance": 1, "owner": {"name": "Ann"}, "items": [1, 2, 3], "gone": True}
    after = {"balance": 2, "owner": {"name": "Ann", "age": 3}, "items": [1, 5], "odd key": None}
    assert diff(before, after) == [
        {"path": ".balance", "from": 1, "to": 2},
        {"path": ".owner.age", "to": 3},
        {"path": ".items[1]", "from": 2, "to": 5},
        {"path": ".items[2]", "from": 3},
        {"path": ".gone", "from": True},
        {"path": '.["odd key"]', "to": None},
    ]


def test_nothing_changed():
    assert diff({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}) == []


def test_type_changes_count():
    assert diff({"a": 1}, {"a": True}) == [{"path": ".a", "from": 1, "to": True}]
    assert diff(1, [1]) == [{"path": ".", "from": 1, "to": [1]}]


def test_describe():
    assert describe({"path": ".balance", "from": 80.5, "to": 40.5}) == ".balance: 80.5 → 40.5"
    assert describe({"path": ".owner", "to": "Ann"}) == '.owner: + "Ann"'
    assert describe({"path": ".note", "from": "x"}) == '.note: − "x"'
