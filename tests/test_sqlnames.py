"""Names in SQL, renamed token by token (the shadow rebuild's rewriting)."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evt.processing.sqlnames import fold, names_in, rename, tokens

MAPPING = {"orders": "evt_shadow_orders", "totals": "evt_shadow_totals"}


@pytest.mark.parametrize(
    "sql, renamed",
    [
        ("INSERT INTO orders VALUES (:id, 'orders')", "INSERT INTO \"evt_shadow_orders\" VALUES (:id, 'orders')"),
        ("UPDATE Orders SET n = n + 1 WHERE orders.id = :id -- orders", 'UPDATE "evt_shadow_orders" SET n = n + 1 WHERE "evt_shadow_orders".id = :id -- orders'),
        ('SELECT x.orders, main.orders, "orders", [ORDERS], `orders` FROM orders AS x /* orders */',
         'SELECT x.orders, main."evt_shadow_orders", "evt_shadow_orders", "evt_shadow_orders", "evt_shadow_orders" FROM "evt_shadow_orders" AS x /* orders */'),
        ("SELECT :orders, @orders, $orders, ?1, X'0a', 1e3 FROM totals", "SELECT :orders, @orders, $orders, ?1, X'0a', 1e3 FROM \"evt_shadow_totals\""),
        ("SELECT 'it''s orders' FROM \"tot\"\"als\"", "SELECT 'it''s orders' FROM \"tot\"\"als\""),
        ("SELECT ordersx, xorders, orders_1 FROM orders", 'SELECT ordersx, xorders, orders_1 FROM "evt_shadow_orders"'),
    ],
)
def test_identifiers_are_renamed_and_nothing_else(sql, renamed):
    assert rename(sql, MAPPING) == renamed


def test_renamed_statements_run_on_the_renamed_tables():
    conn = sqlite3.connect(":memory:")
    setup = "CREATE TABLE orders (id INTEGER PRIMARY KEY, n INTEGER); CREATE INDEX orders_n ON orders (n)"
    conn.executescript(rename(setup, MAPPING))
    conn.execute(rename("INSERT INTO orders (id, n) VALUES (:id, 1) ON CONFLICT (id) DO UPDATE SET n = orders.n + 1", MAPPING), {"id": 7})
    conn.execute(rename("INSERT INTO orders (id, n) VALUES (:id, 1) ON CONFLICT (id) DO UPDATE SET n = orders.n + 1", MAPPING), {"id": 7})
    assert conn.execute("SELECT id, n FROM evt_shadow_orders").fetchall() == [(7, 2)]
    assert conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall() == [("evt_shadow_orders",)]


def test_names_in_finds_identifiers_only():
    assert names_in("SELECT a, \"B\" FROM [c] WHERE d = 'e' -- f") == {"select", "a", "b", "from", "c", "where", "d"}
    assert fold("ÄBc") == "Äbc"  # as SQLite: ASCII letters only


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_the_tokens_of_any_text_are_the_text(text):
    assert "".join(token for _, token in tokens(text)) == text
    assert rename(text, {}) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["orders", "ORDERS", "'orders'", '"orders"', "x.orders", "main.orders", ":orders", "-- orders\n", " ", ",", "(", ")", "1", "other"]), max_size=30))
def test_renaming_there_and_back_gives_the_same_tokens(pieces):
    "Mapping orders to a fresh name and back leaves every token as it was but for the quoting of a renamed name."
    sql = " ".join(pieces)
    there = rename(sql, {"orders": "evt_shadow_orders"})
    back = rename(there, {"evt_shadow_orders": "orders"})
    def shown(text: str) -> list[str]:
        return [fold(token.strip('"')) for kind, token in tokens(text) if kind != "space"]

    assert shown(back) == shown(sql)
    assert ("orders" in names_in(there)) == ("x.orders" in pieces)  # only a column of x keeps the name
