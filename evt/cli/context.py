"""What a command runs against: the configuration, the store and the user's model."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

from ..config import Config, current_folder
from ..errors import ConfigError, StoreMissing
from ..log.keys import set_notice
from ..log.store import Store


def _note(line: str) -> None:
    sys.stderr.write(f"evt: {line}\n")
    sys.stderr.flush()


class Context:
    "The options every command shares (``--db``, ``--config``, ``--model``), resolved."

    def __init__(self, db: str | None = None, config: str | None = None, model: str | None = None, keys: str | None = None):
        self.config = Config.load(config)
        self.db_path = self.config.db(db)
        self.keys_path = self.config.keys(keys)
        set_notice(_note)  # values read without their key: said once, on stderr
        if self.db_path == ":memory:":  # a file of that name: a path is never one of SQLite's special names
            self.db_path = os.path.join(os.curdir, self.db_path)
        self.model_spec = self.config.model(model)
        self.model_from_toml = not model and not os.environ.get("EVT_MODEL") and bool(self.model_spec)
        self._model = None

    def model(self):
        "The user's model, loaded once; None when none is configured."
        if self._model is None and self.model_spec:
            from ..model.loader import load_model

            try:
                folders = [f for f in (current_folder(), self.config.folder) if f]
                self._model = load_model(self.model_spec, search_path=folders)
            except ConfigError as e:
                if self.model_from_toml:  # say where the setting came from
                    raise ConfigError(f"{e} (model = {self.config.data.get('model')!r} in {self.config.path})") from None
                raise
        return self._model

    def require_model(self):
        "The user's model; ConfigError when none is configured."
        model = self.model()
        if model is None:
            raise ConfigError(
                'no model configured: pass --model FILE.py (or a dotted module), set EVT_MODEL, or add model = "model.py" to evt.toml'
            )
        return model

    def write_creating(self, events, *, validate: bool = True) -> tuple[Store, list[int]]:
        "Append to the store, creating it only if the append succeeds (``Store.write_creating``)."
        return Store.write_creating(self.db_path, events, validate=validate, **self._options())

    def open(self, *, create: bool = False, with_model: bool = True, write: bool = False) -> Store:
        """The store; read commands never create one (``create=False``). ``write``: a
        command that writes it, refused (exit 6) before it starts if it cannot."""
        store = Store(self.db_path, create=create, **self._options(with_model))
        if write:
            try:
                store.ensure_writable()
            except BaseException:
                store.close()
                raise
        return store

    def open_when_created(self, idle: Callable[[], None] | None = None, poll_interval: float = 0.05) -> tuple[Store, bool]:
        """The store, waiting for the first append to create it if there is none yet.

        Returns the store and whether it had to wait (then every event in it is new).
        ``idle`` is called once per poll interval while waiting (it may raise to stop).
        """
        try:
            return self.open(), False
        except StoreMissing:
            sys.stderr.write(f"evt: no store at {self.db_path} yet; waiting for the first append (Ctrl-C to stop)\n")
            sys.stderr.flush()
        while True:
            if idle is not None:
                idle()
            time.sleep(poll_interval)
            try:
                return self.open(), True
            except StoreMissing:
                pass

    def _options(self, with_model: bool = True) -> dict:
        return {
            "busy_timeout": self.config.busy_timeout(),
            "synchronous": self.config.synchronous(),
            "model": self.model() if with_model else None,
            "keys": self.keys_path,
        }
