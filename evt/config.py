"""Configuration: command-line option > environment variable > evt.toml > default.

``evt.toml`` is the nearest one in the current folder or above it (or ``--config``);
paths inside it are relative to the folder that holds it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .errors import ConfigError, UsageError

CONFIG_NAME = "evt.toml"
SETTINGS = ("db", "model", "busy_timeout", "synchronous", "projections", "keys")

# SQLite waits at most 2**31 - 1 milliseconds for a lock; a longer (or infinite) wait
# would silently become no wait at all.
MAX_BUSY_TIMEOUT = 2_147_483
# The longest wait in seconds evt takes anywhere else (a retry's backoff, a broker's
# timeouts; about 31 years): Python cannot sleep much longer (time.sleep(1e10)
# overflows), a socket timeout holds it, and nan or inf is no number of seconds.
MAX_SECONDS = 1e9


def current_folder() -> str | None:
    "The current folder, or None when it has been deleted (evt still runs there, with absolute paths)."
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def find_config(start: str | None = None) -> str | None:
    "The nearest evt.toml in ``start`` (default: the current folder) or above it."
    start = start or current_folder()
    if start is None:
        return None
    folder = os.path.abspath(start)
    while True:
        candidate = os.path.join(folder, CONFIG_NAME)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def read_toml(path: str) -> dict:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8
        with open(path, "rb") as f:
            line = f.read()[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not valid UTF-8 (byte {e.object[e.start]:#04x}); TOML files are UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


class Config:
    "The settings in force for one command."

    def __init__(self, path: str | None = None, data: dict | None = None):
        self.path = path
        self.data = data or {}
        self.folder = os.path.dirname(path) if path else (current_folder() or os.curdir)

    @classmethod
    def load(cls, explicit: str | None = None) -> "Config":
        "``--config PATH`` if given, else the nearest evt.toml, else no file."
        if explicit is not None:
            if explicit == "":
                raise ConfigError("--config needs a file path, not an empty string")
            if not os.path.isfile(explicit):
                raise ConfigError(f"config file {explicit} not found")
            path = os.path.abspath(explicit)
        else:
            path = find_config()
        if not path:
            return cls()
        data = read_toml(path)
        unknown = sorted(set(data) - set(SETTINGS))
        if unknown:  # a typo (dbb = …) would otherwise be silently ignored
            raise ConfigError(f"{path}: unknown setting {unknown[0]!r} (settings: {', '.join(SETTINGS)})")
        return cls(path, data)

    def get(self, key: str, kind: type = str) -> Any:
        value = self.data.get(key)
        if value is not None and not isinstance(value, kind):
            expected = getattr(kind, "__name__", "number")
            raise ConfigError(f"{self.where(key)}: {key} must be a {expected}, not {value!r}")
        return value

    def where(self, key: str) -> str:
        "The file, and the line that sets a top-level key, for messages."
        try:
            with open(self.path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if line.startswith("["):
                        break
                    if re.match(rf"\s*{re.escape(key)}\s*=", line):
                        return f"{self.path}, line {number}"
        except (OSError, ValueError):
            pass
        return f"{self.path}"

    def resolve_path(self, value: str) -> str:
        "A path from evt.toml, relative to its folder."
        return os.path.join(self.folder, os.path.expanduser(value))

    def db(self, option: str | None = None) -> str:
        if option == "":  # --db "$UNSET": not a reason to write to ./events.db instead
            raise UsageError("--db needs a file path, not an empty string")
        if option:
            path = option
        elif os.environ.get("EVT_DB"):
            path = os.environ["EVT_DB"]
        else:
            value = self.get("db")
            path = self.resolve_path(value) if value else "events.db"
        if not os.path.isabs(path) and current_folder() is None:
            raise UsageError(f"the current folder no longer exists, so {path!r} names nothing; give --db an absolute path (or cd somewhere)")
        return path

    def keys(self, option: str | None = None) -> str | None:
        "The key file of personal fields' keys (``--keys``, EVT_KEYS, evt.toml keys); None: the store keeps them."
        if option == "":  # --keys "$UNSET": not a reason to keep keys in the store instead
            raise UsageError("--keys needs a file path, not an empty string")
        if option:
            return option
        if os.environ.get("EVT_KEYS"):
            return os.environ["EVT_KEYS"]
        value = self.get("keys")
        return self.resolve_path(value) if value else None

    def model(self, option: str | None = None) -> str | None:
        "The user's model: a file path or a dotted module name, or None."
        if option == "":  # --model "$UNSET": not a reason to use another model
            raise UsageError("--model needs a file path or a module name, not an empty string")
        if option:
            return option
        if os.environ.get("EVT_MODEL"):
            return os.environ["EVT_MODEL"]
        value = self.get("model")
        if value and (value.endswith(".py") or os.sep in value or "/" in value):
            return self.resolve_path(value)
        return value

    def busy_timeout(self) -> float:
        "Seconds a writer waits for the lock: a number from 0 to MAX_BUSY_TIMEOUT (about 24 days)."
        text = os.environ.get("EVT_BUSY_TIMEOUT")
        if text is None:
            value = self.get("busy_timeout", (int, float))
            if value is None:
                return 10.0
            source, shown = f"{self.where('busy_timeout')}: busy_timeout", value
        else:
            try:
                value = float(text)
            except ValueError:
                value = None
            source, shown = "EVT_BUSY_TIMEOUT", text
        if isinstance(value, bool) or value is None or not 0 <= value <= MAX_BUSY_TIMEOUT:  # nan fails both
            raise ConfigError(f"{source} must be a number of seconds from 0 to {MAX_BUSY_TIMEOUT}, not {shown!r}")
        return float(value)

    def synchronous(self) -> str:
        from_env = os.environ.get("EVT_SYNCHRONOUS")
        value = from_env or self.get("synchronous") or "full"
        if value.lower() not in ("full", "normal"):
            source = "EVT_SYNCHRONOUS" if from_env else f"{self.where('synchronous')}: synchronous"
            raise ConfigError(f"{source} must be 'full' or 'normal', not {value!r}")
        return value.lower()
