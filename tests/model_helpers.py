"""A small bank model for the model/aggregate tests, and helpers to put events in a store."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

BANK_MODEL = '''
from pydantic import BaseModel, Field

from evt import Model, on

model = Model()


@model.schema("account.opened")
class Opened(BaseModel):
    owner: str


@model.schema("account.credited")
class Credited(BaseModel):
    amount: float = Field(gt=0)


@model.schema("account.debited")
class Debited(BaseModel):
    amount: float = Field(gt=0)
    reason: str


@model.aggregate("account", snapshot_every=SNAPSHOT_EVERY)
class Account(BaseModel):
    owner: str | None = None
    balance: float = 0

    @on("account.opened")
    def opened(self, event):
        self.owner = event.data["owner"]

    @on("account.credited")
    def credited(self, event):
        self.balance += event.data["amount"]

    @on("account.debited")
    def debited(self, event):
        self.balance -= event.data["amount"]
'''


def write_model(folder: Path | str = ".", name: str = "model.py", snapshot_every: int | None = 100, extra: str = "") -> Path:
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BANK_MODEL.replace("SNAPSHOT_EVERY", repr(snapshot_every)) + textwrap.dedent(extra))
    return path


def envelope(stream: str, type_: str, data: dict, n: int, **extra) -> dict:
    "An NDJSON envelope with a fixed id and timestamp (minute n of 2026-11-20)."
    return {
        "stream": stream,
        "type": type_,
        "data": data,
        "id": f"e{n}",
        "timestamp": f"2026-11-20T10:{n:02d}:00Z",
        **extra,
    }


ACCOUNT_7 = [
    envelope("account-7", "account.opened", {"owner": "Ann"}, 1),
    envelope("account-7", "account.credited", {"amount": 100}, 2),
    envelope("account-7", "account.debited", {"amount": 30, "reason": "rent"}, 3),
    envelope("account-7", "account.debited", {"amount": 90, "reason": "car"}, 4),
    envelope("account-7", "account.credited", {"amount": 50}, 5),
]


def ndjson(events: list[dict]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)
