"""The upcaster chain: old event versions read as new, as pure functions over data.

Upcasters live in the user's model (``@model.upcaster(type, version, to_type=None)``):
each turns the data of ``(type, version N)`` into ``version N+1``, optionally renaming
the type; they chain. Each step's result is validated against the schema of the version
it produces, where one is registered. ``Model.upcast`` runs them for readers; the checked
migration of what is stored (``evt upcast run``) is ``evt.ops.upcast``.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from ..errors import InvalidInput, UpcastFailed, one_line
from ..log.envelope import dumps, json_kind, load_stored
from ..log.keys import MARK, PLACEHOLDERS, holds_placeholder, is_encrypted
from .schemas import validate_data

if TYPE_CHECKING:
    from .registry import Model


class Step:
    "One upcaster: (type, version) data into (to_type, version + 1), validated if a schema exists."

    __slots__ = ("type", "version", "to_type", "to_version", "fn", "schema", "validate")

    def __init__(self, model: "Model", type_: str, version: int):
        self.type, self.version = type_, version
        self.to_type, self.fn = model.upcasters[(type_, version)]
        self.to_version = version + 1
        self.schema = model.schemas.get((self.to_type, self.to_version))
        self.validate = validate_data

    def __call__(self, data: dict) -> dict:
        "The upcast data; raises ValueError(reason) when the upcaster fails."
        try:
            data = self.fn(data)
        except Exception as e:
            raise ValueError(f"upcaster {self.type} v{self.version} raised {type(e).__name__}: {one_line(e)}") from e
        if not isinstance(data, dict):
            raise ValueError(f"upcaster {self.type} v{self.version} returned {json_kind(data)}, not an object")
        if self.schema is not None and not holds_placeholder(data):  # a forgotten field reads as a placeholder
            try:
                self.validate(self.schema, data, f"{self.to_type} v{self.to_version}")
            except InvalidInput as e:
                raise ValueError(f"upcaster {self.type} v{self.version} produced invalid data: {e}") from None
        return data


def chain(model: "Model", type_: str, version: int) -> list[Step]:
    "The upcasters an event of (type, version) goes through, in order (empty: it is current)."
    steps = []
    while (type_, version) in model.upcasters:
        step = Step(model, type_, version)
        steps.append(step)
        type_, version = step.to_type, step.to_version
    return steps


def run_chain(steps: list[Step], data: dict, position: int | None) -> dict:
    for step in steps:
        try:
            data = step(data)
        except ValueError as e:
            first = steps[0]
            raise UpcastFailed(position, first.type, first.version, str(e)) from e.__cause__
    return data


def upcast_data(model: "Model", type_: str, version: int, data: dict, position: int | None = None) -> tuple[str, int, dict]:
    """(type, version, data) at the latest version; UpcastFailed naming the position and the
    reason — an upcaster that fails, or returns data that is not JSON (a set, a date, NaN)."""
    steps = compiled(model).chains.get((type_, version))
    if not steps:
        return type_, version, data
    data = run_chain(steps, data, position)
    _dumps(data, (position, None, None, None, type_, version), steps)  # what readers get must be JSON
    return steps[-1].to_type, steps[-1].to_version, data


_compiled: "weakref.WeakKeyDictionary[Model, tuple[tuple[int, int], Upcaster]]" = weakref.WeakKeyDictionary()


def compiled(model: "Model") -> "Upcaster":
    "The model's chains, compiled once (again if upcasters or schemas are registered later)."
    signature = (len(model.upcasters), len(model.schemas))
    cached = _compiled.get(model)
    if cached is None or cached[0] != signature:
        cached = _compiled[model] = (signature, Upcaster(model))
    return cached[1]


class Upcaster:
    "The model's chains compiled per stored (type, version): the hot loop of a migration."

    def __init__(self, model: "Model"):
        self.model = model
        self.chains = {key: chain(model, *key) for key in model.upcasters}

    @property
    def pairs(self) -> list[tuple[str, int]]:
        return sorted(self.chains)

    def target(self, type_: str, version: int) -> tuple[str, int]:
        steps = self.chains[(type_, version)]
        return steps[-1].to_type, steps[-1].to_version

    def rows(self, rows: list[tuple], crypt: "Crypt | None" = None) -> list[tuple]:
        """Stored rows (columns of ``COLUMNS``) with type, version and data upcast.

        The rows come from a selection of upcastable (type, version) pairs only. With
        ``crypt``, the upcasters see personal fields decrypted, and the result is stored
        encrypted again (``Crypt``).
        """
        out = []
        chains = self.chains
        for row in rows:
            steps = chains[(row[4], row[5])]
            last = steps[-1]
            if crypt is not None and MARK in row[10]:
                stored = load_stored(row[10])
                opened = crypt.decrypt.data(row[3], stored, row[0])
                data = crypt.reseal(row[3], stored, opened, run_chain(steps, opened, row[0]), last.to_type, last.to_version)
            else:
                data = run_chain(steps, load_stored(row[10]), row[0])
                if crypt is not None:
                    data = crypt.reseal(row[3], {}, {}, data, last.to_type, last.to_version)
            out.append(row[:4] + (last.to_type, last.to_version, row[6], row[7], row[8], row[9], _dumps(data, row, steps), row[11]))
        return out


class Crypt:
    """Personal fields through a stored upcast: decrypted for the upcasters, encrypted again after.

    A value the upcasters left as it was keeps its stored ciphertext (bound to the same
    event and field; a forgotten one stays forgotten). A personal field of the target
    schema holding a new value is encrypted with its subject's key (``encrypt``: the
    log's ``Encryptor`` in the write transaction; None for a dry run, which stores nothing).
    """

    def __init__(self, model: "Model", decrypt, encrypt=None):
        self.model = model
        self.decrypt = decrypt
        self.encrypt = encrypt

    def reseal(self, event_id: str, stored: dict, opened: dict, data: dict, type_: str, version: int) -> dict:
        from ..log.batch import same_json

        out = dict(data)
        for field, value in stored.items():
            if is_encrypted(value) and field in out and same_json(out[field], opened[field]):
                out[field] = value
        personal = self.model.personal(type_, version, out) if self.encrypt is not None else None
        if personal is None:
            return out
        subject, fields = personal
        fresh = [f for f in fields if f in out and not is_encrypted(out[f]) and not (isinstance(out[f], str) and out[f] in PLACEHOLDERS)]
        return self.encrypt.data(event_id, out, subject, tuple(fresh)) if fresh else out


def _dumps(data: dict, row: tuple, steps: list[Step]) -> str:
    """Upcast data as stored JSON text: orjson, with the standard library's rules.

    orjson would quietly write datetimes, dataclasses and subclasses as JSON, and NaN and
    infinity as null; they are passed through to the standard library instead, which
    refuses what is not JSON (UpcastFailed) and writes integers beyond 64 bits exactly.
    """
    import orjson

    try:
        text = orjson.dumps(data, option=_STRICT)
        if b"null" not in text:  # orjson writes NaN and infinity as null: those go to the standard library
            return text.decode()
    except TypeError:
        pass
    try:
        return dumps(data)
    except (TypeError, ValueError, RecursionError) as e:
        raise UpcastFailed(row[0], row[4], row[5], f"upcaster {steps[-1].type} v{steps[-1].version} returned data that is not JSON: {e}") from e


def _strict_options() -> int:
    import orjson

    return orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


_STRICT = _strict_options()
