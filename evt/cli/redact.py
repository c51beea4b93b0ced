"""``evt redact``: take values out of stored events, for good, with an audit record."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..errors import StoreLocked, UsageError
from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, ModelSpec, at_least, not_empty
from .output import Layout, choose_format, emit, print_table


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(redact)


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def redact(
    stream: Annotated[Optional[list[str]], typer.Option("--stream", metavar="STREAM", callback=not_empty, help="Every event of this stream; repeatable.", show_default=False)] = None,
    id: Annotated[Optional[list[str]], typer.Option("--id", metavar="ID", callback=not_empty, help="The event with this id; repeatable.", show_default=False)] = None,
    position: Annotated[Optional[list[int]], typer.Option("--position", metavar="N", callback=at_least(1), help="The event at this position; repeatable.", show_default=False)] = None,
    field: Annotated[Optional[list[str]], typer.Option("--field", metavar="PATH", callback=not_empty, help="Only this field: data.PATH or metadata.PATH (keys joined by dots; a number picks an array element, * every one); repeatable. Default: every value of data and of metadata.", show_default=False)] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", metavar="TEXT", callback=not_empty, help="Why (kept in the audit record); required unless --dry-run.", show_default=False)] = None,
    by: Annotated[Optional[str], typer.Option("--by", metavar="NAME", callback=not_empty, help="Who asked, for the audit record (default: the user running evt).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show which events and fields would be redacted (never their values); change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Redact without asking (needed when stdin is not a terminal).")] = False,
    rebuild_projections: Annotated[bool, typer.Option("--rebuild-projections", help="Rebuild the projections that had read the redacted events.")] = False,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    model: ModelSpec = None,
) -> int:
    """Replace values of stored events by "[redacted]", for good.

    Choose events with --stream, --id and --position (at least one), and the values with
    --field (default: all of data and metadata). One checked rewrite: a backup next to the
    store first (it still holds the values), an audit record in evt_redactions (who, when,
    why, positions, fields; never the values), snapshots of the streams dropped; then the
    old bytes are wiped from the store's files (secure delete, WAL truncated, VACUUM).
    Earlier backups and copies still hold them. It asks first on a terminal; a script
    needs --yes.
    """
    from ..ops import redact as redaction

    selection = redaction.Selection(tuple(stream or ()), tuple(id or ()), tuple(position or ()))
    fields = redaction.fields_of(field or ())
    if reason is None and not dry_run:
        raise UsageError("evt redact needs --reason TEXT: why these events are redacted (it is kept in the audit record)")
    fmt = choose_format(format)
    ctx = Context(db, config, model)
    store = ctx.open(write=not dry_run)
    if dry_run:
        result = redaction.dry_run(store, selection, fields)
    elif not yes and not confirmed(redaction.dry_run(store, selection, fields)):
        say("nothing redacted")
        return 0
    else:
        result = redaction.redact(store, selection, fields, reason=reason, by=by, on_backup=report_backup)
        changes = result.pop("changes")
        result.update(dependents(store, changes, result["snapshotsDropped"], rebuild_projections, ctx))
        result["scrubbed"] = redaction.scrub(store)  # after the rebuilds: their old rows go too
        result["changes"] = changes
    store.close()
    if fmt == "table":
        print_result(result)
    else:
        emit([result], fmt)
    if result["mode"] == "redact":
        tell_what_remains(result)
    return 0


def confirmed(plan: dict) -> bool:
    """Ask on the terminal first; a script must say --yes (UsageError, exit 2): a command that
    destroys data does nothing unasked."""
    count = plan["redacted"]
    what = f"{count} event{'' if count == 1 else 's'}"
    if not sys.stdin.isatty():
        raise UsageError(f"evt redact rewrites {what} for good: pass --yes to confirm (--dry-run shows what it would redact)")
    if not count:
        return True
    positions = ", ".join(str(c["position"]) for c in plan["changes"][:10]) + (", …" if count > 10 else "")
    sys.stderr.write(f"redact {', '.join(plan['fields'])} of {what} (position {positions}) in {plan['store']}? This cannot be undone [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def report_backup(path: str) -> None:
    say(f"backup: {path} (it holds the values being redacted: delete it once the redaction is checked)")


def dependents(store, changes: list[dict], snapshots: int, rebuild: bool, ctx: Context) -> dict:
    """What depended on the redacted events: the snapshots (dropped in the redaction's own
    transaction), and the processors that had read them, named or rebuilt."""
    from ..ops.dependents import after_erasure

    if snapshots:
        say(f"dropped {snapshots} snapshot(s) of the affected streams")
    first = changes[0]["position"] if changes else None
    found = after_erasure(store, [], first, rebuild=rebuild, config=ctx.config, model=ctx.model(), say=say).to_dict()
    return {"affected": found["affected"], "rebuilt": found["rebuilt"]}


def tell_what_remains(result: dict) -> None:
    "Where the redacted values still are; a scrub a reader kept from finishing fails the command (exit 6)."
    store = result["store"]
    if result["backup"]:
        say(f"the values are gone from {store}; the backup {result['backup']} and any earlier backup or copy of {store} still hold them")
    else:
        say(f"nothing to redact: the selected values are redacted already; any backup or copy of {store} taken before still holds them")
    if not result["scrubbed"]:
        raise StoreLocked(
            f"the events are redacted, but a reader kept {store}-wal from being truncated past the busy timeout: "
            "old bytes may remain in it; run the same evt redact again when readers are done"
        )


def print_result(result: dict) -> None:
    facts = [
        {"key": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
        for k, v in result.items()
        if k != "changes"
    ]
    print_table(facts, ("key", "value"), title="redact --dry-run" if result["mode"] == "dry-run" else "redact")
    print_table(
        ({"position": c["position"], "stream": c["stream"], "fields": ", ".join(c["fields"])} for c in result["changes"]),
        Layout("position", "stream", "fields", keys=("position",), flex=("fields",)),
        title="events",
    )
