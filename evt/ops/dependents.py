"""What depends on events that were just erased (``evt forget``, ``evt redact``).

Erasing an event's values does not reach what was computed from them before:

- an aggregate's snapshot of the stream holds a state folded from the old values: it
  is dropped (the next ``evt aggregate`` folds the stream again);
- a projection that handled the events holds rows made from them: it is named, and
  rebuilt when asked (``--rebuild-projections``);
- a reactor, a shell consumer or a relay that handled them acted outside the
  projection's tables (appended events, ran commands, sent messages): it is named, so
  the user can follow up there; evt cannot call those effects back.

"Handled" is read from checkpoints: a processor whose checkpoint is at or after the
first erased position has read at least that event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

# Kinds whose effects a rebuild replaces (the others act outside evt's tables).
REBUILDABLE = ("sql", "python")


@dataclass
class Dependents:
    "What an erasure reached: snapshots dropped, processors that had read the events, and those rebuilt."

    snapshots: int = 0
    affected: list[dict] = field(default_factory=list)  # {"name", "kind", "checkpoint"}
    rebuilt: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "snapshotsDropped": self.snapshots,
            "affected": [row["name"] for row in self.affected],
            "rebuilt": list(self.rebuilt),
        }


def drop_snapshots(conn, streams: Iterable[str]) -> int:
    "Delete the snapshots of these streams, in the caller's transaction; how many were deleted."
    dropped = 0
    for stream in set(streams):
        dropped += conn.execute("DELETE FROM snapshots WHERE stream = ?", (stream,)).rowcount
    return dropped


def affected(store, first_position: int, projections: dict) -> list[dict]:
    """Every projection (of ``projections``, as ``configured`` gives them), reactor, consumer
    and relay whose checkpoint is at or after ``first_position``, in the order ``evt
    projections`` lists them."""
    from ..processing.projections import status

    rows = status(store, projections)
    return [
        {"name": row["name"], "kind": row["kind"], "checkpoint": row["checkpoint"]}
        for row in rows
        if row["checkpoint"] >= first_position
    ]


def after_erasure(
    store,
    streams: Iterable[str],
    first_position: int | None,
    *,
    rebuild: bool = False,
    config=None,
    model=None,
    say: Callable[[str], None] = lambda line: None,
) -> Dependents:
    """Drop the snapshots of ``streams``, name (via ``say``) what had read events at or
    after ``first_position``, and with ``rebuild`` rebuild those projections.

    ``first_position`` None: nothing was erased (only snapshots are considered).
    """
    from ..config import Config
    from ..processing.projections import configured, replay

    config = config or Config()
    found = Dependents()
    streams = sorted(set(streams))
    if streams:
        with store.transaction() as conn:
            found.snapshots = drop_snapshots(conn, streams)
    if found.snapshots:
        say(f"dropped {found.snapshots} snapshot(s) of the affected streams")
    if first_position is None:
        return found
    projections = configured(config, model)
    found.affected = affected(store, first_position, projections)
    for row in found.affected:
        name, kind = row["name"], row["kind"]
        if kind in REBUILDABLE and rebuild:
            replay(store, projections[name], rebuild=True, config=config)
            found.rebuilt.append(name)
            say(f"rebuilt projection {name}")
        elif kind in REBUILDABLE:
            say(f"projection {name} has read the erased events (checkpoint {row['checkpoint']}): rebuild it with evt replay {name} --rebuild")
        else:
            say(f"{kind} {name} has read the erased events (checkpoint {row['checkpoint']}): evt cannot undo what it did with them")
    return found
