"""evt upcast: the stored versions of each type, and the checked migration of the log."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..errors import ConfigError, UsageError
from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, Keys, ModelSpec, at_least
from .output import Layout, choose_format, emit, print_table

upcast_app = typer.Typer(
    rich_markup_mode=None,  # help text as written: [brackets] are not markup
    help="Migrate stored events to their latest version: status, dry run, copy or in place.",
    short_help="Migrate stored events to their latest version.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def register(app: typer.Typer) -> None:
    app.add_typer(upcast_app, name="upcast")


def versions_text(versions: dict) -> str:
    return ", ".join(f"v{v}: {n}" for v, n in versions.items())


@upcast_app.command(cls=EvtCommand)
def status(
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Stored versions per type, and what a run would change.

    Per stored type: its versions and counts, the latest version, and how many events
    a run would change.
    """
    from ..ops.upcast import status as upcast_status

    ctx = Context(db, config, model, keys)
    rows = upcast_status(ctx.open())
    fmt = choose_format(format)
    if fmt == "table":
        layout = Layout("type", "versions", "latest", "pending", flex=("versions",), drop=("latest",))
        print_table(({**r, "versions": versions_text(r["versions"])} for r in rows), layout)
    else:
        emit(rows, fmt)


@upcast_app.command(cls=EvtCommand)
def run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change (counts, a sample before and after); change nothing.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", metavar="NEW.db", help="Write the migrated log to this NEW file (never overwritten); the store is untouched.", show_default=False)] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite the store itself, after a backup next to it.")] = False,
    sample: Annotated[int, typer.Option("--sample", metavar="N", callback=at_least(0), help="With --dry-run: how many events to show before and after.")] = 3,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Upcast the stored events to their latest version, verified.

    Choose one: --dry-run, --out NEW.db (a copy; the default way) or --in-place.
    An upcaster that fails stops the run with the event's position (exit 5); nothing changes.
    """
    from ..ops import upcast as upcasting

    modes = [name for name, on in (("--dry-run", dry_run), ("--out", out is not None), ("--in-place", in_place)) if on]
    if len(modes) != 1:
        raise UsageError("evt upcast run needs exactly one of --dry-run, --out NEW.db, --in-place" + (f" (got {' and '.join(modes)})" if modes else ""))
    fmt = choose_format(format)
    ctx = Context(db, config, model, keys)
    if ctx.model() is None:
        raise ConfigError("no model: upcasters are declared in the user's model (pass --model, set EVT_MODEL, or add model = \"model.py\" to evt.toml)")
    store = ctx.open(write=in_place)
    if dry_run:
        result = upcasting.dry_run(store, sample)
    elif out is not None:
        result = upcasting.migrate_copy(store, out)
    else:
        result = upcasting.migrate_in_place(store, on_backup=report_backup)
    store.close()
    if fmt == "table":
        print_run(result)
    else:
        emit([result], fmt)


def report_backup(path: str) -> None:
    "Say where the backup went before the rewrite starts (stderr: stdout is the result)."
    sys.stderr.write(f"backup: {path}\n")
    sys.stderr.flush()


def print_run(result: dict) -> None:
    from ..log.envelope import dumps
    from .output import console

    term = console()
    facts = [{"key": k, "value": v} for k, v in result.items() if k not in ("changes", "sample")]
    print_table(facts, ("key", "value"), title=f"upcast {result['mode']}")
    print_table(
        ({"from": f"{c['type']} v{c['version']}", "to": f"{c['toType']} v{c['toVersion']}", "events": c["count"]} for c in result["changes"]),
        Layout("from", "to", "events", keys=("from", "to"), flex=()),
        title="changes",
    )
    for shown in result.get("sample", []):
        before, after = shown["before"], shown["after"]
        term.print(
            f"\nposition {shown['position']} ({before['stream']} revision {before['revision']}): "
            f"{before['type']} v{before['version']} -> {after['type']} v{after['version']}",
            markup=False,
        )
        term.print("  before: " + dumps(before["data"]), markup=False, soft_wrap=True)
        term.print("  after:  " + dumps(after["data"]), markup=False, soft_wrap=True)
