"""The module paths of evt 0.1, still importable for a while (with a DeprecationWarning).

evt 0.2 put the package in layers (``evt.log``, ``evt.model``, ``evt.processing``,
``evt.relay``, ``evt.ops``, ``evt.cli``); ``import evt.aggregates`` and the like keep
working, warning once, and give the names of the module's new home.
"""

from __future__ import annotations

import sys

MOVED = {
    "evt.store": "evt.log.store",
    "evt.envelope": "evt.log.envelope",
    "evt.query": "evt.log.filters",
    "evt.ndjson": "evt.log.ndjson",
    "evt.migrations": "evt.log.migrations",
    "evt.timeutil": "evt.log.timestamps",
    "evt.schemas": "evt.model.schemas",
    "evt.aggregates": "evt.model.aggregates",
    "evt.snapshots": "evt.model.snapshots",
    "evt.expressions": "evt.model.expressions",
    "evt.diff": "evt.model.diff",
    "evt.retry": "evt.model.retry",
    "evt.upcasting": "evt.ops.upcast",
    "evt.projections": "evt.processing.projections",
    "evt.consumers": "evt.processing.consumers",
    "evt.deadletters": "evt.processing.deadletters",
    "evt.dlq": "evt.processing.dlq",
    "evt.output": "evt.cli.output",
}


class MovedModules:
    "A finder on ``sys.meta_path`` that answers the old names with the new modules' contents."

    def find_spec(self, name: str, path=None, target=None):
        if name not in MOVED:
            return None
        from importlib.util import spec_from_loader

        return spec_from_loader(name, self)

    def create_module(self, spec):
        return None  # a fresh module, filled by exec_module

    def exec_module(self, module) -> None:
        import importlib
        import warnings

        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} is now {new}; the old name will go in a later release", DeprecationWarning, stacklevel=2)
        real = importlib.import_module(new)
        module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
