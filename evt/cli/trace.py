"""``evt trace``: the causal tree of a request, across streams."""

from __future__ import annotations

from typing import Annotated, Iterable, Optional

import typer

from ..errors import UsageError
from ..log.envelope import dumps
from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, Keys, ModelSpec, Raw
from .output import cell, choose_format, console, write_json_lines


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(trace)


def trace(
    id: Annotated[Optional[str], typer.Argument(metavar="ID", help="An event's id: the tree it belongs to, from its root.", show_default=False)] = None,
    correlation_id: Annotated[Optional[str], typer.Option("--correlation-id", metavar="ID", help="A request chain's id instead: the tree of its first event.", show_default=False)] = None,
    raw: Raw = False,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Show a request's causal tree of events, across streams.

    The tree around an event (ID) or a request (--correlation-id). Events are linked to the event their causationId names; one with no stored cause,
    to the first event of its correlationId. From any event of the tree evt finds the
    root. On a terminal a tree (type, stream, revision, time, delay since its cause);
    --format json is one nested object (children under "children"), ndjson one event
    per line with its depth, parent id, link and delaySeconds. Exit 4 if no event has
    that id.
    """
    from ..log.trace import nested
    from ..log.trace import trace as run_trace

    if (id is None) == (correlation_id is None):
        raise UsageError("give an event ID or --correlation-id ID (one of them)")
    ctx = Context(db, config, model, keys)
    fmt = choose_format(format)
    steps = run_trace(ctx.open(), id, correlation_id=correlation_id, raw=raw)
    if fmt == "ndjson":
        write_json_lines((dumps(step.to_dict()) for step in steps), fmt)
    elif fmt == "json":
        import json

        print(json.dumps(nested(steps), indent=2, ensure_ascii=False))
    else:
        print_tree(steps)


def print_tree(steps: Iterable) -> None:
    "The trace as a rich tree: one line per event, under its cause."
    from rich.text import Text
    from rich.tree import Tree

    root = None
    path: list = []
    for step in steps:
        event = step.event
        label = Text()
        label.append(event.type, style="bold")
        label.append(f"  {cell(event.stream)} #{event.revision}", style="cyan")
        label.append(f"  pos {event.position}  {cell(event.timestamp)}")
        if step.parent is not None:
            label.append(f"  {human_delay(step.delay)}", style="green")
            if step.link == "correlation":
                label.append("  (by correlation)", style="dim")
        del path[step.depth:]
        if path:
            node = path[-1].add(label)
        else:
            node = root = Tree(label, guide_style="dim")
        path.append(node)
    if root is not None:
        console().print(root)


def human_delay(seconds: float) -> str:
    "A delay as people read it: +0.012s, +14.64s, +58m 22s, +2h 03m, +3d 4h (negative: a cause stamped later)."
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    whole = int(seconds)
    if whole < 3600:
        return f"{sign}{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{sign}{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{sign}{whole // 86400}d {whole % 86400 // 3600}h"
