"""The registry of the user's model: ``Model`` and ``on``.

A model is a Python module (a file path or a dotted name, see ``evt.model.loader``)
that creates one ``evt.Model`` and registers its parts with decorators::

    from evt import Model, on
    model = Model()

    @model.schema("account.credited", version=1)
    class Credited(pydantic.BaseModel): ...

``Model`` implements the log's ``ModelHooks`` (``evt.log.hooks``): a store given a
model validates appends against its schemas and reads events through its upcasters.
Its projections are declarations only; processing runs them.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from ..errors import ConfigError, InvalidInput
from .schemas import validate_data


def on(*types: str) -> Callable:
    """Mark a method of an aggregate's state class as the handler of these event types.

    Types may be globs (``order.*``); an exact type wins over a glob, and globs are
    tried in the order the handlers are declared.
    """
    if not types or not all(isinstance(t, str) and t for t in types):
        raise TypeError("@on needs one or more event types, e.g. @on('account.credited')")

    def mark(fn: Callable) -> Callable:
        fn.__evt_on__ = getattr(fn, "__evt_on__", ()) + types
        return fn

    return mark


class Model:
    """The registry of a user's schemas, upcasters, aggregates, projections and reactors.

    Schemas are pydantic models registered per (type, version); ``validate`` checks
    an event against the schema of its type and version. Upcasters turn (type,
    version N) data into version N+1, optionally renaming the type; they chain.
    """

    def __init__(self) -> None:
        caller = sys._getframe(1)
        self.created_at = (caller.f_code.co_filename, caller.f_lineno)  # for error messages
        self.schemas: dict[tuple[str, int], Any] = {}
        # (type, version) -> (the subject's field, the personal fields): encrypted on append.
        self.personal_fields: dict[tuple[str, int], tuple[str, tuple[str, ...]]] = {}
        self.upcasters: dict[tuple[str, int], tuple[str, Callable[[dict], dict]]] = {}
        self.aggregates: dict[str, Any] = {}
        self.projections: dict[str, Any] = {}
        self.reactors: dict[str, Any] = {}

    # -- schemas -------------------------------------------------------------------

    def schema(self, type: str, version: int = 1, *, personal: Any = (), subject: str | None = None) -> Callable:
        """Register a pydantic model as the schema of ``type`` at ``version``.

        ``personal`` names fields of the data holding personal data, and ``subject`` the
        field naming whose they are (a customer id, say): those fields are stored encrypted
        with that subject's key, and ``evt forget SUBJECT`` makes them unreadable for good.
        """
        _check_version(version, f"@model.schema({type!r})")
        fields = _personal_spec(type, version, personal, subject)

        def register(cls):
            if not (hasattr(cls, "model_validate") and hasattr(cls, "model_json_schema")):
                raise ConfigError(f"schema {type} v{version}: {getattr(cls, '__name__', cls)!s} is not a pydantic model (class {getattr(cls, '__name__', 'Schema')}(pydantic.BaseModel))")
            if (type, version) in self.schemas:
                raise ConfigError(f"two schemas for {type} v{version} ({self.schemas[(type, version)].__name__} and {cls.__name__}); give the newer one version={version + 1}")
            known = getattr(cls, "model_fields", None)
            missing = [f for f in (fields[1] if fields else ()) + ((fields[0],) if fields else ()) if known is not None and f not in known]
            if missing:
                raise ConfigError(f"schema {type} v{version}: personal or subject field {missing[0]!r} is not a field of {cls.__name__}")
            self.schemas[(type, version)] = cls
            if fields:
                self.personal_fields[(type, version)] = fields
            return cls

        return register

    def validate(self, event) -> None:
        """Check a new event's data against its schema (none registered: it passes).

        A version above the highest this model knows for a type it knows (from schemas and
        upcasters) is refused: such an event could never be validated or upcast, and every
        reader would take it for the latest version.
        """
        schema = self.schemas.get((event.type, event.version))
        if schema is not None:
            validate_data(schema, event.data, f"{event.type} v{event.version}")
            return
        highest = self.highest_versions().get(event.type)
        if highest is not None and event.version > highest:
            raise InvalidInput(
                f"{event.type} v{event.version} is unknown: the model knows {event.type} up to v{highest} "
                "(register a schema or upcaster for it, or append with --no-validate)"
            )

    def highest_versions(self) -> dict[str, int]:
        "The highest version of each type the model knows: its schemas, what its upcasters read and write."
        signature = (len(self.schemas), len(self.upcasters))
        cached = getattr(self, "_highest", None)
        if cached is not None and cached[0] == signature:
            return cached[1]
        highest: dict[str, int] = {}
        known = list(self.schemas) + list(self.upcasters)
        known += [(to_type, version + 1) for (_, version), (to_type, _) in self.upcasters.items()]
        for type_, version in known:
            highest[type_] = max(highest.get(type_, 0), version)
        self._highest = (signature, highest)
        return highest

    # -- aggregates ----------------------------------------------------------------

    def aggregate(
        self,
        name: str,
        *,
        initial: Any = None,
        snapshot_every: int | None = 100,
        version: int | str | None = None,
    ) -> Callable:
        """Register how a stream folds into state, as aggregate ``name``.

        Decorate a state class (a pydantic model or a dataclass whose fields all have
        defaults) with ``@on(type)`` methods, or a function ``fold(state, event)`` with
        ``initial=`` its starting state (JSON data). ``snapshot_every`` events a snapshot
        is stored (None: never); ``version`` is part of the snapshot fingerprint — bump
        it when code the aggregate calls (outside its own source) changes.
        """
        from .aggregates import define_aggregate

        if not isinstance(name, str) or not name:
            raise ConfigError('an aggregate needs a name: @model.aggregate("account")')

        def register(target):
            if name in self.aggregates:
                raise ConfigError(f"two aggregates named {name!r}")
            self.aggregates[name] = define_aggregate(
                self, name, target, initial=initial, snapshot_every=snapshot_every, version=version
            )
            return target

        return register

    # -- projections ---------------------------------------------------------------

    def projection(self, name: str, **options: Any):
        """Declare a Python projection; returns it, to register handlers with ``.on(type, ...)``.

        Options: ``tables`` (what ``evt replay --rebuild`` drops), ``target`` (another
        SQLite file, relative to evt.toml), ``max_attempts``, ``backoff``, ``on_error``.
        See ``evt.model.projections.DeclaredProjection``.
        """
        from .projections import DeclaredProjection

        if name in self.projections:
            raise ConfigError(f"two projections named {name}")
        if name in self.reactors:
            raise ConfigError(f"a projection and a reactor are both named {name}")
        self.projections[name] = DeclaredProjection(name, **options)
        return self.projections[name]

    # -- reactors ------------------------------------------------------------------

    def reactor(self, name: str, **options: Any):
        """Declare a reactor (a process manager); returns it, to register handlers with ``.on(type, ...)``.

        A handler takes an event and returns the events to append (a ``NewEvent``, a list
        of them, or None); ``evt replay`` appends them with the reactor's checkpoint, in
        one transaction. Options: ``max_attempts``, ``backoff``, ``on_error``. See
        ``evt.model.reactors.DeclaredReactor``.
        """
        from .reactors import DeclaredReactor

        if name in self.reactors:
            raise ConfigError(f"two reactors named {name}")
        if name in self.projections:
            raise ConfigError(f"a projection and a reactor are both named {name}")
        self.reactors[name] = DeclaredReactor(name, **options)
        return self.reactors[name]

    # -- upcasting -----------------------------------------------------------------

    def upcaster(self, type: str, version: int, *, to_type: str | None = None) -> Callable:
        """Register a function turning ``type`` data at ``version`` into ``version + 1``.

        ``to_type`` renames the type on the way (the next upcaster is looked up under it).
        """
        _check_version(version, f"@model.upcaster({type!r})")

        def register(fn: Callable[[dict], dict]):
            if (type, version) in self.upcasters:
                raise ConfigError(f"two upcasters for {type} v{version}")
            self.upcasters[(type, version)] = (to_type or type, fn)
            return fn

        return register

    # -- the log's hooks (evt.log.hooks.ModelHooks) --------------------------------

    @property
    def upcastable(self) -> frozenset:
        "The stored (type, version) pairs an upcaster applies to."
        return frozenset(self.upcasters)

    def latest(self, type: str, version: int) -> tuple[str, int]:
        "The (type, version) an event of ``type`` at ``version`` reads as."
        while (type, version) in self.upcasters:
            type, version = self.upcasters[(type, version)][0], version + 1
        return type, version

    def upcast(self, event):
        "The event at its latest version; UpcastFailed (with its position) if an upcaster fails."
        if (event.type, event.version) not in self.upcasters:
            return event
        from .upcasters import upcast_data

        type_, version, data = upcast_data(self, event.type, event.version, event.data, event.position)
        return event.replace(type=type_, version=version, data=data)

    def personal(self, type: str, version: int, data: dict) -> tuple[str, tuple[str, ...]] | None:
        """(subject, personal fields) of an event's data, or None when its schema declares none.

        InvalidInput when the data lacks its subject, or the subject is not a string or a whole number.
        """
        spec = self.personal_fields.get((type, version))
        if spec is None:
            return None
        field, fields = spec
        subject = data.get(field) if isinstance(data, dict) else None
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str) or not subject:
            shown = "is missing" if subject is None else f"is {subject!r}"
            raise InvalidInput(
                f"{type} v{version} has personal fields of the subject named by data.{field}, which {shown} "
                "(a non-empty string or a whole number)"
            )
        return subject, fields

    def renamed_types(self) -> dict[tuple[str, int], str]:
        "The stored (type, version) pairs that read under another type (an upcaster renames it), and that type."
        renamed = {}
        for key in self.upcasters:
            final = self.latest(*key)[0]
            if final != key[0]:
                renamed[key] = final
        return renamed


def _personal_spec(type: str, version: int, personal: Any, subject: Any) -> tuple[str, tuple[str, ...]] | None:
    "(subject field, personal fields) of a schema, or None; ConfigError when they do not make sense."
    where = f"@model.schema({type!r}, version={version})"
    if isinstance(personal, str):
        personal = [personal]
    fields = tuple(personal or ())
    if not all(isinstance(f, str) and f for f in fields):
        raise ConfigError(f"{where}: personal= names data fields, e.g. personal=['email', 'address']")
    if not fields:
        if subject is not None:
            raise ConfigError(f"{where}: subject= names whose the personal fields are; give personal=[...] too")
        return None
    if not isinstance(subject, str) or not subject:
        raise ConfigError(f"{where}: personal fields need subject=, the data field naming whose they are (e.g. subject='customer_id')")
    if subject in fields:
        raise ConfigError(f"{where}: the subject field {subject!r} cannot be personal: it stays readable, naming whose the personal fields are")
    return subject, fields


def _check_version(version: Any, where: str) -> None:
    "Versions are whole numbers >= 1, as stored events carry them."
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{where}: version must be a whole number >= 1, not {version!r}")
