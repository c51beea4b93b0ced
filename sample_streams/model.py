"""The sample model: schemas and upcasters for the bundled sample streams.

Used by the README tour (``model = "model.py"`` in evt.toml).
"""

from typing import Optional

import pydantic

from evt import Model

model = Model()


# === Upcasting: order.placed v1 -> v2 (issue 4) =========================================
# Older orders stored their items as product ids (["prod_a", ...]); since version 2 an
# item is {"productId", "quantity", "price"}. The upcaster turns each id into one item
# of quantity 1 whose price is unknown (null). Readers see every order.placed at v2;
# `evt upcast run` migrates the stored events themselves.


class OrderItem(pydantic.BaseModel):
    productId: str
    quantity: int
    price: Optional[float]  # null: not known (orders placed before v2 did not record it)


@model.schema("order.placed", version=2)
class OrderPlacedV2(pydantic.BaseModel):
    orderId: str
    customerId: str
    items: list[OrderItem]
    total: float


@model.upcaster("order.placed", version=1)
def order_placed_v1_to_v2(data: dict) -> dict:
    "OrderPlacedV1 -> OrderPlacedV2: a product id becomes {productId, quantity: 1, price: null}."
    items = [{"productId": product_id, "quantity": 1, "price": None} for product_id in data["items"]]
    return {**data, "items": items}


# === end of upcasting ===================================================================


# === Projections (issue 5) ==============================================================
# Revenue per customer, written with sqlite-utils into read.db (next to evt.toml).
# `evt replay revenue` keeps it up to date; `evt replay revenue --rebuild` starts over.

revenue = model.projection("revenue", tables=["customer_revenue", "order_revenue"], target="read.db")


@revenue.setup
def create_tables(db):
    db["customer_revenue"].create({"customer_id": str, "orders": int, "revenue": float}, pk="customer_id", if_not_exists=True)
    db["order_revenue"].create({"order_id": str, "customer_id": str, "revenue": float}, pk="order_id", if_not_exists=True)


def add(db, table, pk, key, **amounts):
    "Add amounts to a row's columns (a sqlite-utils upsert; the row is created at zero)."
    current = next(db[table].rows_where(f"{pk} = ?", [key]), {})
    db[table].upsert({pk: key, **{k: current.get(k, 0) + v for k, v in amounts.items()}}, pk=pk)


@revenue.on("order.placed")
def order_placed(db, event):
    order = event.data
    db["order_revenue"].insert({"order_id": order["orderId"], "customer_id": order["customerId"], "revenue": order["total"]}, pk="order_id")
    add(db, "customer_revenue", "customer_id", order["customerId"], orders=1, revenue=order["total"])


@revenue.on("order.item_added")
def item_added(db, event):
    item = event.data
    if item["quantity"] <= 0:
        raise ValueError(f"order {item['orderId']}: {item['productId']} added with quantity {item['quantity']}")
    line = item["quantity"] * item["price"]
    order = db["order_revenue"].get(item["orderId"])
    add(db, "order_revenue", "order_id", item["orderId"], revenue=line)
    add(db, "customer_revenue", "customer_id", order["customer_id"], revenue=line)


@revenue.on("order.cancelled")
def order_cancelled(db, event):
    order = db["order_revenue"].get(event.data["orderId"])
    add(db, "customer_revenue", "customer_id", order["customer_id"], orders=-1, revenue=-order["revenue"])
    db["order_revenue"].delete(order["order_id"])


# === end of projections =================================================================
