"""Processing: handlers fed the log from their checkpoints, above the model.

- ``runner``: ``Runner`` and ``Target``: checkpoints, batched commits, retries, dead letters;
- ``projections``: SQL projections from evt.toml, and the model's Python ones, run;
- ``reactors``: the model's reactors, run: what their handlers return appended exactly once;
- ``shadows``: rebuilding a projection without downtime (shadow tables, one short swap),
  with ``sqlnames`` renaming its tables in SQL token by token;
- ``resets``: moving a checkpoint back or forward, previewed first;
- ``consumers``: shell commands run once per event (``evt consume``);
- ``deadletters``: the dead-letter table of one file;
- ``dlq``: the dead letters of every projection and consumer, wherever they are kept.
"""

from .runner import Runner, Target

__all__ = ["Runner", "Target"]
