"""The sample streams' model: what bank and order events mean to evt.

evt loads it through evt.toml (model = "model.py"). It declares:
- schemas: evt append validates each event's data against the schema of its type and version;
- upcasters: order.placed v1 reads as v2 (evt read, aggregates, projections, evt upcast);
- aggregates: evt aggregate folds a stream into state (account-N -> account, order-… -> order);
- projections: revenue per customer, a Python read model in read.db (evt replay revenue);
- a reactor: an order placed requests its payment and reserves its stock (evt replay checkout).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from evt import Model, NewEvent, on

model = Model()


# -- schemas: bank ------------------------------------------------------------------


@model.schema("account.opened", version=1)
class AccountOpened(BaseModel):
    accountId: str
    owner: str


@model.schema("account.credited", version=1)
class AccountCredited(BaseModel):
    amount: float = Field(gt=0)


@model.schema("account.debited", version=1)
class AccountDebited(BaseModel):
    amount: float = Field(gt=0)


# -- schemas: orders ----------------------------------------------------------------


@model.schema("order.placed", version=1)
class OrderPlacedV1(BaseModel):
    "Older orders: items are product ids."

    orderId: str
    customerId: str
    items: list[str]
    total: float = Field(ge=0)


class Line(BaseModel):
    productId: str
    quantity: int = Field(ge=0)
    price: float | None = Field(ge=0)  # null: unknown (orders placed before v2 did not record it)


@model.schema("order.placed", version=2)
class OrderPlacedV2(BaseModel):
    "Newer orders: items carry quantity and price."

    orderId: str
    customerId: str
    items: list[Line]
    total: float = Field(ge=0)


@model.schema("order.item_added", version=1)
class ItemAdded(BaseModel):
    orderId: str
    productId: str
    quantity: int = Field(ge=0)
    price: float = Field(ge=0)


@model.schema("order.shipped", version=1)
class OrderShipped(BaseModel):
    orderId: str
    carrier: str
    trackingNumber: str


@model.schema("order.delivered", version=1)
class OrderDelivered(BaseModel):
    orderId: str


@model.schema("order.cancelled", version=1)
class OrderCancelled(BaseModel):
    orderId: str
    reason: str


# -- schemas: what the checkout reactor appends -------------------------------------


@model.schema("payment.requested", version=1)
class PaymentRequested(BaseModel):
    orderId: str
    customerId: str
    amount: float = Field(ge=0)


@model.schema("stock.reserved", version=1)
class StockReserved(BaseModel):
    orderId: str
    productId: str
    quantity: int = Field(ge=0)


# -- upcasters ----------------------------------------------------------------------
# Older orders stored their items as product ids (["prod_a", ...]); since version 2 an
# item is {"productId", "quantity", "price"}. The upcaster turns each id into one item
# of quantity 1 whose price is unknown (null). Readers, aggregates and projections see
# every order.placed at v2; `evt upcast run` migrates the stored events themselves.


@model.upcaster("order.placed", version=1)
def order_placed_v1_to_v2(data: dict) -> dict:
    "OrderPlacedV1 -> OrderPlacedV2: a product id becomes {productId, quantity: 1, price: null}."
    items = [{"productId": product_id, "quantity": 1, "price": None} for product_id in data["items"]]
    return {**data, "items": items}


# -- aggregates ---------------------------------------------------------------------


@model.aggregate("account")
class Account(BaseModel):
    "A bank account: its owner and balance."

    accountId: str | None = None
    owner: str | None = None
    balance: float = 0

    @on("account.opened")
    def opened(self, event):
        self.accountId = event.data["accountId"]
        self.owner = event.data["owner"]

    @on("account.credited")
    def credited(self, event):
        self.balance = round(self.balance + event.data["amount"], 2)

    @on("account.debited")
    def debited(self, event):
        self.balance = round(self.balance - event.data["amount"], 2)


class OrderLine(BaseModel):
    productId: str
    quantity: int
    price: float | None = None  # unknown for items of an order.placed v1


@model.aggregate("order")
class Order(BaseModel):
    "An order: its status, items and total."

    orderId: str | None = None
    customerId: str | None = None
    status: str = "new"
    items: list[OrderLine] = []
    total: float = 0
    carrier: str | None = None
    trackingNumber: str | None = None
    cancelReason: str | None = None

    @on("order.placed")
    def placed(self, event):
        data = event.data
        self.orderId, self.customerId, self.status = data["orderId"], data["customerId"], "placed"
        self.total = data["total"]
        self.items = [OrderLine(**line) for line in data["items"]]  # v1 orders arrive upcast to v2

    @on("order.item_added")
    def item_added(self, event):
        data = event.data
        self.items.append(OrderLine(productId=data["productId"], quantity=data["quantity"], price=data["price"]))
        self.total = round(self.total + data["quantity"] * data["price"], 2)

    @on("order.shipped")
    def shipped(self, event):
        self.status = "shipped"
        self.carrier = event.data["carrier"]
        self.trackingNumber = event.data["trackingNumber"]

    @on("order.delivered")
    def delivered(self, event):
        self.status = "delivered"

    @on("order.cancelled")
    def cancelled(self, event):
        self.status = "cancelled"
        self.cancelReason = event.data["reason"]


# -- projections ----------------------------------------------------------------------
# SQL projections live in evt.toml (order_summaries); this one is Python.
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


# -- reactors -------------------------------------------------------------------------
# A process manager: when an order is placed, request its payment (one payment stream per
# order, which must not exist yet) and reserve each item's stock (one stream per product).
# `evt replay` runs it beside the projections. evt appends what it returns with
# causationId = the order.placed event's id and the same correlationId, together with the
# reactor's checkpoint in one transaction: each order's reaction is appended exactly once.
# `evt trace` then shows an order fanning out over the streams.

checkout = model.reactor("checkout")


@checkout.on("order.placed")
def request_payment_and_reserve_stock(event):
    order = event.data
    yield NewEvent(
        f"payment-{order['orderId']}",
        "payment.requested",
        {"orderId": order["orderId"], "customerId": order["customerId"], "amount": order["total"]},
        expected=0,
    )
    for item in order["items"]:  # v1 orders arrive upcast: one item of quantity 1 per product
        yield NewEvent(
            f"stock-{item['productId']}",
            "stock.reserved",
            {"orderId": order["orderId"], "productId": item["productId"], "quantity": item["quantity"]},
        )
