"""Write the sample streams, bank.ndjson and orders.ndjson, deterministically.

    python sample_streams/generate.py          # rewrites both files next to this script
    python sample_streams/generate.py --check  # exit 1 if the committed files differ

Every line is an envelope that ``evt append --ndjson`` takes as it is: stream, type,
version, data, id, timestamp (increasing through each file), source, correlationId,
causationId and metadata. The same seed always gives the same bytes, so the files are
committed and a test checks that they still match this script.

Only the standard library is used, so the script runs without evt installed.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED = 20261128
HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 16, 8, 0, tzinfo=timezone.utc)  # a Monday; the samples span about a week

# The one event that later work is meant to trip over: a free sample added to an order
# as an `order.item_added` with quantity 0. It is valid JSON and valid for a schema with
# quantity >= 0, but a revenue projection that divides by quantity (average unit price)
# or refuses zero quantities fails on it. Set FREE_SAMPLE_QUANTITY to 1 to make it an
# ordinary line, or FREE_SAMPLE_ORDER to None to leave it out.
FREE_SAMPLE_ORDER = 27  # ord_0027 (a version-2 order that is shipped and delivered)
FREE_SAMPLE_PRODUCT = "prod_mug"
FREE_SAMPLE_QUANTITY = 0

OWNERS = [
    "Alice Martin", "Bruno Keller", "Chiara Rossi", "Dmitri Volkov", "Emma Johansson",
    "Farid Haddad", "Grace O'Neill", "Hiroshi Tanaka", "Ines Duarte", "Jonas Weber",
    "Kavya Iyer", "Lucía Fernández",
]
TELLERS = ["teller-01", "teller-02", "teller-03"]
SALARY_PAYERS = ["Acme Corp", "Globex", "Initech", "Umbrella Health"]
SHOPS = ["grocery", "rent", "utilities", "restaurant", "pharmacy", "bookshop", "transport"]

PRODUCTS = {  # product id -> unit price
    "prod_espresso_beans": 14.5,
    "prod_grinder": 89.0,
    "prod_kettle": 39.9,
    "prod_mug": 8.5,
    "prod_filter_papers": 4.25,
    "prod_scale": 24.0,
    "prod_french_press": 32.0,
    "prod_tea_sampler": 12.75,
    "prod_milk_frother": 19.99,
    "prod_cleaning_tablets": 6.5,
}
CUSTOMERS = [f"cust_{n:03d}" for n in range(1, 19)]
CARRIERS = {"DHL": "JD01460000", "UPS": "1Z999AA1", "PostNL": "3SPNL0"}
CANCEL_REASONS = ["customer request", "payment declined", "out of stock", "duplicate order"]
ORDERS = 40
FIRST_V2_ORDER = 21  # orders before this one are placed at version 1 (items: product ids)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def money(x: float) -> float:
    return round(x + 1e-9, 2)


class Log:
    """The events of one file. Ids are numbered in file order (time order) once all are
    known, so a causation is recorded as the causing event and resolved to its id then."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.pending: list[tuple[datetime, int, dict, dict | None]] = []

    def add(self, when: datetime, stream: str, type: str, data: dict, *, source: str,
            correlation: str, cause: dict | None = None, version: int = 1,
            metadata: dict | None = None) -> dict:
        event = {
            "stream": stream, "type": type, "version": version, "data": data, "id": None,
            "timestamp": stamp(when), "source": source, "correlationId": correlation,
            "causationId": None, "metadata": metadata or {},
        }
        self.pending.append((when, len(self.pending), event, cause))
        return event

    def lines(self) -> list[str]:
        "The events as NDJSON lines, sorted by time (ties keep the order they were added)."
        ordered = sorted(self.pending, key=lambda p: (p[0], p[1]))
        for number, (_, _, event, _) in enumerate(ordered, 1):
            event["id"] = f"evt_{self.prefix}_{number:04d}"
        for _, _, event, cause in ordered:
            if cause is not None:
                event["causationId"] = cause["id"]
        return [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for _, _, e, _ in ordered]


# -- bank ------------------------------------------------------------------------------


def bank() -> list[str]:
    rng = random.Random(SEED)
    log = Log("bank")
    balances: dict[str, float] = {}
    requests = iter(range(1, 10_000))
    t = START

    def event(stream, type, data, correlation, cause=None, metadata=None):
        return log.add(t, stream, type, data, source="bank", correlation=correlation, cause=cause, metadata=metadata)

    def credit(account: str, amount: float, correlation: str, cause=None, metadata=None):
        balances[account] = money(balances[account] + amount)
        return event(f"account-{account}", "account.credited", {"amount": amount}, correlation, cause, metadata)

    def debit(account: str, amount: float, correlation: str, cause=None, metadata=None):
        assert balances[account] - amount >= -1e-9, f"account-{account} would go negative"
        balances[account] = money(balances[account] - amount)
        return event(f"account-{account}", "account.debited", {"amount": amount}, correlation, cause, metadata)

    # Accounts open over the first two days, most with a first deposit in the same request.
    for n, owner in enumerate(OWNERS, 1):
        t += timedelta(minutes=rng.randint(20, 240), seconds=rng.randint(0, 59), milliseconds=rng.randint(0, 999))
        account = str(n)
        balances[account] = 0.0
        correlation = f"req_bank_{next(requests):04d}"
        teller = {"user": rng.choice(TELLERS)}
        opened = event(f"account-{account}", "account.opened", {"accountId": account, "owner": owner}, correlation, metadata=teller)
        if n % 4 != 0:
            t += timedelta(seconds=rng.randint(1, 30))
            credit(account, money(rng.choice([50, 100, 250, 500, 1000]) + rng.randint(0, 99) / 100), correlation, opened, teller)

    # Then a week of everyday banking: salaries, card payments, cash, transfers.
    while len(log.pending) < 220:
        t += timedelta(minutes=rng.randint(5, 75), seconds=rng.randint(0, 59), milliseconds=rng.randint(0, 999))
        kind = rng.choices(["salary", "payment", "cash", "transfer"], weights=[2, 6, 2, 3])[0]
        account = str(rng.randint(1, len(OWNERS)))
        correlation = f"req_bank_{next(requests):04d}"
        if kind == "salary":
            credit(account, money(rng.uniform(1200, 3200)), correlation, metadata={"payer": rng.choice(SALARY_PAYERS)})
        elif kind == "cash":
            credit(account, float(rng.choice([20, 40, 60, 100, 200])), correlation, metadata={"user": rng.choice(TELLERS)})
        elif kind == "payment":
            amount = money(rng.uniform(3, 180))
            if balances[account] >= amount:
                debit(account, amount, correlation, metadata={"merchant": rng.choice(SHOPS)})
        else:
            target = str(rng.randint(1, len(OWNERS)))
            amount = float(rng.choice([10, 25, 50, 75, 120, 300]))
            if target != account and balances[account] >= amount:
                out = debit(account, amount, correlation, metadata={"transferTo": f"account-{target}"})
                t += timedelta(milliseconds=rng.randint(5, 400))
                credit(target, amount, correlation, out, {"transferFrom": f"account-{account}"})
    return log.lines()


# -- orders ----------------------------------------------------------------------------


def orders() -> list[str]:
    rng = random.Random(SEED + 1)
    log = Log("orders")
    product_ids = sorted(PRODUCTS)

    def event(when, stream, type, data, source, correlation, cause=None, version=1, metadata=None):
        return log.add(when, stream, type, data, source=source, correlation=correlation,
                       cause=cause, version=version, metadata=metadata)

    # Orders are placed over about six days; each one then moves on at its own pace.
    placed_at = START + timedelta(hours=1)
    for n in range(1, ORDERS + 1):
        placed_at += timedelta(minutes=rng.randint(30, 330), seconds=rng.randint(0, 59), milliseconds=rng.randint(0, 999))
        order_id = f"ord_{n:04d}"
        stream = f"order-{order_id}"
        customer = rng.choice(CUSTOMERS)
        user = {"user": customer}
        correlation = f"req_checkout_{n:04d}"
        chosen = rng.sample(product_ids, rng.randint(1, 3))
        if n < FIRST_V2_ORDER:
            data = {"orderId": order_id, "customerId": customer, "items": chosen,
                    "total": money(sum(PRODUCTS[p] for p in chosen))}
            version = 1
        else:
            items = [{"productId": p, "quantity": rng.randint(1, 3), "price": PRODUCTS[p]} for p in chosen]
            data = {"orderId": order_id, "customerId": customer, "items": items,
                    "total": money(sum(i["quantity"] * i["price"] for i in items))}
            version = 2
        placed = event(placed_at, stream, "order.placed", data, "checkout", correlation, version=version, metadata=user)

        # Items added in the same checkout request share its correlation id.
        t = placed_at
        for product in rng.sample([p for p in product_ids if p not in chosen], rng.choice([0, 0, 1, 2])):
            t += timedelta(seconds=rng.randint(2, 40), milliseconds=rng.randint(0, 999))
            event(t, stream, "order.item_added",
                  {"orderId": order_id, "productId": product, "quantity": rng.randint(1, 2), "price": PRODUCTS[product]},
                  "checkout", correlation, placed, metadata=user)
        if n == FREE_SAMPLE_ORDER:  # the free sample (see FREE_SAMPLE_QUANTITY above)
            t += timedelta(seconds=rng.randint(2, 40))
            event(t, stream, "order.item_added",
                  {"orderId": order_id, "productId": FREE_SAMPLE_PRODUCT, "quantity": FREE_SAMPLE_QUANTITY,
                   "price": PRODUCTS[FREE_SAMPLE_PRODUCT]},
                  "checkout", correlation, placed, metadata={"user": customer, "promotion": "free-sample"})

        # A few customers come back later and add something in a new request.
        if rng.random() < 0.15:
            t += timedelta(minutes=rng.randint(10, 90))
            product = rng.choice(product_ids)
            event(t, stream, "order.item_added",
                  {"orderId": order_id, "productId": product, "quantity": 1, "price": PRODUCTS[product]},
                  "checkout", f"req_checkout_{n:04d}_b", placed, metadata=user)

        fate = "delivered" if n == FREE_SAMPLE_ORDER else rng.choices(
            ["delivered", "shipped", "cancelled", "placed"], weights=[6, 2, 2, 1])[0]
        if fate == "cancelled":
            t += timedelta(hours=rng.randint(1, 20), minutes=rng.randint(0, 59))
            reason = rng.choice(CANCEL_REASONS)
            source = "payments" if reason == "payment declined" else "checkout"
            event(t, stream, "order.cancelled", {"orderId": order_id, "reason": reason}, source,
                  f"req_cancel_{n:04d}", placed,
                  metadata=user if reason == "customer request" else {})
        elif fate in ("shipped", "delivered"):
            t += timedelta(hours=rng.randint(4, 30), minutes=rng.randint(0, 59))
            carrier = rng.choice(sorted(CARRIERS))
            tracking = f"{CARRIERS[carrier]}{rng.randint(10_000_000, 99_999_999)}"
            correlation = f"req_shipping_{n:04d}"
            shipped = event(t, stream, "order.shipped", {"orderId": order_id, "carrier": carrier, "trackingNumber": tracking},
                            "shipping", correlation, placed, metadata={"user": "warehouse-bot"})
            if fate == "delivered":
                t += timedelta(hours=rng.randint(12, 60), minutes=rng.randint(0, 59))
                event(t, stream, "order.delivered", {"orderId": order_id}, "shipping", correlation, shipped,
                      metadata={"carrier": carrier})

    return log.lines()


# -- files -----------------------------------------------------------------------------


def render() -> dict[str, str]:
    "The files' contents, by name."
    return {
        "bank.ndjson": "\n".join(bank()) + "\n",
        "orders.ndjson": "\n".join(orders()) + "\n",
    }


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [name for name, text in files.items() if (HERE / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{name} differs from what generate.py writes; run python sample_streams/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {name}: {text.count(chr(10))} events")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
