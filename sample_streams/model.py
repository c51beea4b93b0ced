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
