"""Loading the user's model: a ``.py`` path or a dotted module name.

A module that fails to import is a ConfigError naming the user's file and line (not
evt's, nor a library's).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

from ..errors import ConfigError, one_line
from .registry import Model


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
        several = _several_models(spec, list(found.values()), getattr(module, "__file__", None))
        raise ConfigError(f"{several}; name the one to use 'model'")
    return next(iter(found.values()))[1]


def _several_models(spec: str, found: list[tuple[str, Model]], module_file: str | None) -> str:
    "'model SPEC, line N: N evt.Model instances, a (line 2) and b (line 3)' — where each was created."
    found = sorted(found, key=lambda item: (item[1].created_at[0] == module_file, item[1].created_at))
    files = {model.created_at[0] for _, model in found}
    last_file, last_line = found[-1][1].created_at  # the module's own file when it made one

    def where(model: Model) -> str:
        filename, line = model.created_at
        return f"line {line}" if len(files) == 1 else f"{filename}, line {line}"

    named = [f"{name} ({where(model)})" for name, model in found]
    listed = ", ".join(named[:-1]) + " and " + named[-1]
    return f"{_model_at(spec, last_file, last_line)}: {len(found)} evt.Model instances, {listed}"


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
        frame = user_frame(e)  # a registration the model made wrongly (two upcasters, a bad aggregate)
        if frame is not None:
            raise ConfigError(f"{_model_at(spec, *frame)}: {e}") from None
        raise
    except ModuleNotFoundError as e:
        if not is_path and e.name is not None and (spec == e.name or spec.startswith(e.name + ".")):  # the model itself, or its package
            raise ConfigError(f"model module {spec!r} not found (give a .py path, or a module in the current folder, evt.toml's folder or on PYTHONPATH)") from None
        raise ConfigError(f"{_model_at(spec, *(user_frame(e) or (None, None)))}: {type(e).__name__}: {one_line(e)}") from None
    except SyntaxError as e:
        raise ConfigError(f"{_model_at(spec, e.filename, e.lineno)}: SyntaxError: {e.msg}") from None
    except (Exception, SystemExit) as e:  # SystemExit: a model that calls sys.exit() while importing
        raise ConfigError(f"{_model_at(spec, *(user_frame(e) or (None, None)))}: {type(e).__name__}: {one_line(e)}") from None


def _model_at(spec: str, filename: str | None, line: int | None) -> str:
    """'model SPEC, line N' when the line is in the model's own file; 'model SPEC: FILE, line N'
    when it is in a module the model imports; 'model SPEC' when nobody knows."""
    if filename is None:
        return f"model {spec}"
    if os.path.abspath(filename) == os.path.abspath(spec):
        return f"model {spec}, line {line}"
    return f"model {spec}: {filename}, line {line}"


def user_frame(error: BaseException) -> tuple[str, int] | None:
    """The innermost frame of the user's code in an error's traceback: (file, line).

    Frames in evt, the standard library and installed packages (pydantic raising on a
    bad field, json on bad text) are passed over: the line to fix is the user's.
    """
    evt_folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "importlib" not in f.filename and not f.filename.startswith(evt_folder)]
    user = [f for f in frames if not _library_file(f.filename)] or frames[:1]  # [:1]: a model installed as a package
    if not user:
        return None
    return user[-1].filename, user[-1].lineno


def _library_file(filename: str) -> bool:
    "Whether a file is the standard library's or an installed package's."
    import sysconfig

    paths = sysconfig.get_paths()
    folders = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    path = os.path.abspath(filename)
    return any(path.startswith(os.path.join(folder, "")) for folder in folders)
