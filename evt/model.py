"""The user's model: event schemas, upcasters, aggregates and projections.

A model is a Python module (a file path or a dotted name) that creates one
``evt.Model`` and registers its parts with decorators::

    from evt import Model
    model = Model()

    @model.schema("account.credited", version=1)
    class Credited(pydantic.BaseModel): ...

``load_model`` imports such a module; a module that fails to import is a
ConfigError naming the file and line.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from typing import Any, Callable

from .errors import ConfigError, InvalidInput, UpcastFailed, one_line  # noqa: F401 (UpcastFailed: re-exported)


class Model:
    """The registry of a user's schemas, upcasters, aggregates and projections.

    Schemas are pydantic models registered per (type, version); ``validate`` checks
    an event against the schema of its type and version. Upcasters turn (type,
    version N) data into version N+1, optionally renaming the type; they chain.
    """

    def __init__(self) -> None:
        caller = sys._getframe(1)
        self.created_at = (caller.f_code.co_filename, caller.f_lineno)  # for error messages
        self.schemas: dict[tuple[str, int], Any] = {}
        self.upcasters: dict[tuple[str, int], tuple[str, Callable[[dict], dict]]] = {}
        self.aggregates: dict[str, Any] = {}
        self.projections: dict[str, Any] = {}

    # -- schemas -------------------------------------------------------------------

    def schema(self, type: str, version: int = 1) -> Callable:
        "Register a pydantic model as the schema of ``type`` at ``version``."

        _check_version(version, f"@model.schema({type!r})")

        def register(cls):
            if not (hasattr(cls, "model_validate") and hasattr(cls, "model_json_schema")):
                raise ConfigError(f"schema {type} v{version}: {getattr(cls, '__name__', cls)!s} is not a pydantic model (class {getattr(cls, '__name__', 'Schema')}(pydantic.BaseModel))")
            if (type, version) in self.schemas:
                raise ConfigError(f"two schemas for {type} v{version} ({self.schemas[(type, version)].__name__} and {cls.__name__}); give the newer one version={version + 1}")
            self.schemas[(type, version)] = cls
            return cls

        return register

    def validate(self, event) -> None:
        "Check a new event's data against its schema (none registered: it passes)."
        schema = self.schemas.get((event.type, event.version))
        if schema is not None:
            validate_data(schema, event.data, f"{event.type} v{event.version}")

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
        See ``evt.projections.PythonProjection``.
        """
        from .projections import PythonProjection

        if name in self.projections:
            raise ConfigError(f"two projections named {name}")
        self.projections[name] = PythonProjection(name, **options)
        return self.projections[name]

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
        from .upcasting import upcast_data

        type_, version, data = upcast_data(self, event.type, event.version, event.data, event.position)
        return event.replace(type=type_, version=version, data=data)

    def type_condition(self, store):
        """How ``--type`` globs select stored events, as readers see types after upcasting.

        None when no upcaster renames a type (the stored type is the type readers see);
        otherwise a function of the globs giving (SQL condition, params).
        """
        from .upcasting import type_condition

        return type_condition(self, store)


def _check_version(version: Any, where: str) -> None:
    "Versions are whole numbers >= 1, as stored events carry them."
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{where}: version must be a whole number >= 1, not {version!r}")


def validate_data(schema, data: dict, what: str) -> None:
    "Validate data against a pydantic model; InvalidInput naming every bad field."
    from pydantic import ValidationError

    try:
        schema.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(data)'}: {err['msg']}" for err in e.errors()
        )
        raise InvalidInput(f"{what} is invalid: {problems}") from None


def load_model(spec: str, search_path: list[str] | tuple[str, ...] = ()) -> Model:
    """Import the user's model from a ``.py`` path or a dotted module name.

    A dotted name is looked up in ``search_path`` first (evt passes the current folder
    and evt.toml's folder, as ``python -m`` would), then on ``sys.path``.
    The module must define exactly one ``evt.Model`` instance (conventionally ``model``).
    """
    for folder in reversed(search_path):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module = _import(spec)
    if isinstance(getattr(module, "model", None), Model):
        return module.model
    found: dict[int, tuple[str, Model]] = {}
    for name, value in vars(module).items():
        if isinstance(value, Model):
            found.setdefault(id(value), (name, value))  # one instance under two names is one model
    if not found:
        raise ConfigError(f"model {spec} defines no evt.Model (add: model = evt.Model())")
    if len(found) > 1:
        several = _several_models(list(found.values()), getattr(module, "__file__", None))
        raise ConfigError(f"model {spec}: {several}; name the one to use 'model'")
    return next(iter(found.values()))[1]


def _several_models(found: list[tuple[str, Model]], module_file: str | None) -> str:
    "'FILE, line N: N evt.Model instances, a (line 2) and b (line 3)' — where each was created."
    found = sorted(found, key=lambda item: (item[1].created_at[0] == module_file, item[1].created_at))
    files = {model.created_at[0] for _, model in found}
    last_file, last_line = found[-1][1].created_at  # the module's own file when it made one

    def where(model: Model) -> str:
        filename, line = model.created_at
        return f"line {line}" if len(files) == 1 else f"{filename}, line {line}"

    named = [f"{name} ({where(model)})" for name, model in found]
    listed = ", ".join(named[:-1]) + " and " + named[-1]
    return f"{last_file}, line {last_line}: {len(found)} evt.Model instances, {listed}"


def _import(spec: str):
    is_path = spec.endswith(".py") or os.sep in spec or "/" in spec
    try:
        if not is_path:
            return importlib.import_module(spec)
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise ConfigError(f"model file {spec} not found")
        name = "evt_user_model_" + os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        sys.path.insert(0, os.path.dirname(path))  # so the model can import its neighbours
        module_spec.loader.exec_module(module)
        return module
    except ConfigError as e:
        where = _where(e)  # a registration the model made wrongly (two upcasters, a bad aggregate)
        if where:
            raise ConfigError(f"model {spec}: {where}{e}") from None
        raise
    except ModuleNotFoundError as e:
        if not is_path and e.name is not None and (spec == e.name or spec.startswith(e.name + ".")):  # the model itself, or its package
            raise ConfigError(f"model module {spec!r} not found (give a .py path, or a module in the current folder, evt.toml's folder or on PYTHONPATH)") from None
        raise ConfigError(f"model {spec}: {_where(e)}{type(e).__name__}: {one_line(e)}") from None
    except SyntaxError as e:
        raise ConfigError(f"model {spec}: {e.filename}, line {e.lineno}: SyntaxError: {e.msg}") from None
    except (Exception, SystemExit) as e:  # SystemExit: a model that calls sys.exit() while importing
        raise ConfigError(f"model {spec}: {_where(e)}{type(e).__name__}: {one_line(e)}") from None


def _where(error: BaseException) -> str:
    """The innermost frame of the user's code where an import failed: 'file, line N: '.

    Frames in evt, the standard library and installed packages (pydantic raising on a
    bad field, json on bad text) are passed over: the line to fix is the user's.
    """
    evt_folder = os.path.join(os.path.dirname(__file__), "")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "importlib" not in f.filename and not f.filename.startswith(evt_folder)]
    user = [f for f in frames if not _library_file(f.filename)] or frames[:1]  # [:1]: a model installed as a package
    if not user:
        return ""
    frame = user[-1]
    return f"{frame.filename}, line {frame.lineno}: "


def _library_file(filename: str) -> bool:
    "Whether a file is the standard library's or an installed package's."
    import sysconfig

    paths = sysconfig.get_paths()
    folders = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    path = os.path.abspath(filename)
    return any(path.startswith(os.path.join(folder, "")) for folder in folders)
