"""The user's model: the layer above the log.

- ``registry``: ``Model`` and ``on``, where a model registers its parts; ``Model``
  implements the log's hooks (``evt.log.hooks``);
- ``loader``: ``load_model``, importing a model from a path or a dotted name;
- ``schemas``: validation of event data against pydantic models, and JSON Schema;
- ``upcasters``: the chain that reads old event versions as new;
- ``aggregates``: folding a stream into state (time travel, history, find);
- ``snapshots``: aggregate states stored so a long stream loads fast;
- ``expressions``: the ``--find`` expression language;
- ``diff``: what changed between two states;
- ``projections``: projections declared in Python (processing runs them);
- ``reactors``: reactors (process managers) declared in Python (processing runs them);
- ``retry``: a handler's failure policy (attempts, backoff, on_error).

It imports the log, never processing, relay, ops or the CLI.
"""

from .loader import load_model
from .registry import Model, on

__all__ = ["Model", "load_model", "on"]
