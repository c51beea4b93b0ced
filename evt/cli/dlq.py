"""``evt dlq``: list, show, retry, discard and purge dead letters."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..errors import HandlerFailed, UsageError
from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, Keys, ModelSpec
from .output import Layout, choose_format, emit

# id (for show, retry, discard), consumer and position are never left out; the error
# takes the room that is left; a narrow terminal loses the event id and times first.
COLUMNS = Layout(
    "id", "consumer", "position", "eventId", "type", "error", "attempts", "firstFailedAt", "lastFailedAt",
    keys=("id", "consumer", "position"), flex=("error",),
    drop=("eventId", "firstFailedAt", "attempts", "type", "lastFailedAt"),
)

Consumer = Annotated[Optional[str], typer.Option("--consumer", metavar="NAME", help="Only this projection's or consumer's dead letters.", show_default=False)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would be touched; change nothing.")]
All = Annotated[bool, typer.Option("--all", help="Every dead letter (of --consumer, if given).")]
Ids = Annotated[Optional[list[int]], typer.Argument(metavar="ID", help="Dead-letter ids (evt dlq list shows them).", show_default=False)]

dlq_app = typer.Typer(
    rich_markup_mode=None,  # help text as written: [brackets] are not markup
    help="The dead letters of projections and consumers: list, show, retry, discard, purge.",
    short_help="Dead letters: list, show, retry, discard, purge.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")


def queue(db, config, model, keys):
    from ..processing.dlq import DeadLetterQueue
    from ..processing.projections import configured

    ctx = Context(db, config, model, keys)
    return DeadLetterQueue(ctx.open(), configured(ctx.config, ctx.model()), ctx.config)


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def plural(n: int) -> str:
    return f"{n} dead letter{'' if n == 1 else 's'}"


@dlq_app.command("list", cls=EvtCommand)
def list_(consumer: Consumer = None, format: Format = None, db: Db = None, config: ConfigFile = None, keys: Keys = None, model: ModelSpec = None) -> None:
    """List dead letters, oldest event first."""
    fmt = choose_format(format)
    emit((e.to_dict() for e in queue(db, config, model, keys).entries(consumer)), fmt, COLUMNS)


@dlq_app.command(cls=EvtCommand)
def show(
    id: Annotated[int, typer.Argument(metavar="ID", help="The dead letter's id.", show_default=False)],
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Show one dead letter: its whole error and its event.

    The fields of evt dlq list, then errorDetail (the whole error: a Python handler's traceback, a command's stderr, the failing SQL statement) and the event as evt read prints it. A message evt ingest could not store has no position: the message is shown as payload instead. Exit 4 if there is no dead letter with that id.
    """
    fmt = choose_format(format)
    shown = queue(db, config, model, keys).show(id)
    if fmt != "table":
        emit([shown], fmt)
        return
    # On a terminal: the list's fields as a table, then the long ones whole, below it.
    blocks = ("errorDetail", "event", "payload")
    emit([{"field": k, "value": v} for k, v in shown.items() if k not in blocks], fmt, ("field", "value"))
    for key in blocks:
        if key in shown:
            print(f"\n{key}:\n{indent(shown[key])}")


def indent(value) -> str:
    import json
    import textwrap

    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return textwrap.indent(text, "  ", lambda line: True)


def chosen(q, ids, all, consumer):
    if all and ids:
        raise UsageError("give dead-letter ids or --all, not both")
    if not all and not ids:
        raise UsageError("name the dead letters: ids (evt dlq list shows them), or --all")
    return q.chosen(ids or [], all, consumer)


def announce(q, verb: str, entries: list, dry_run: bool) -> bool:
    """Say how many entries a command will touch; with --dry-run, print them and change
    nothing. Exit 6 first if a file they are kept in cannot be written."""
    if dry_run:
        say(f"would {verb} {plural(len(entries))} (dry run: nothing changed)")
        emit((e.to_dict() for e in entries), "ndjson" if not sys.stdout.isatty() else "table", COLUMNS)
        return False
    q.ensure_writable(entries)
    say(f"{verb.rstrip('e')}ing {plural(len(entries))}")
    return True


@dlq_app.command(cls=EvtCommand)
def retry(
    ids: Ids = None,
    all: All = False,
    consumer: Consumer = None,
    dry_run: DryRun = False,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Run the handler again on dead letters; clear each that succeeds.

    Exit 7 if any fails again (its attempts and error are updated).
    """
    q = queue(db, config, model, keys)
    entries = chosen(q, ids, all, consumer)
    if not announce(q, "retry", entries, dry_run):
        return 0
    failed = [(e, error) for e, error in q.retry(entries) if error is not None]
    for entry, error in failed:
        where = f"position {entry.position}" if entry.position is not None else "a message ingest could not store"
        say(f"evt: dead letter {entry.id} ({entry.consumer}, {where}) failed again: {error}")
    if failed:
        raise HandlerFailed(f"{len(failed)} of {plural(len(entries))} failed again; they stay in the table")
    say(f"retried {plural(len(entries))}: all succeeded")
    return 0


@dlq_app.command(cls=EvtCommand)
def discard(
    ids: Ids = None,
    all: All = False,
    consumer: Consumer = None,
    dry_run: DryRun = False,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Delete dead letters without handling their events."""
    q = queue(db, config, model, keys)
    entries = chosen(q, ids, all, consumer)
    if announce(q, "discard", entries, dry_run):
        q.discard(entries)
    return 0


@dlq_app.command(cls=EvtCommand)
def purge(
    consumer: Consumer = None,
    dry_run: DryRun = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Purge every consumer's dead letters without asking (needed when stdin is not a terminal).")] = False,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Delete every dead letter (of --consumer, if given).

    Dead letters are kept in every file projections write to; purge clears them all. Without --consumer it asks first on a terminal; elsewhere (a script) it needs --yes.
    """
    q = queue(db, config, model, keys)
    entries = q.entries(consumer)
    if consumer is None and not dry_run and not yes and not confirmed(entries):
        say("nothing purged")
        return 0
    if announce(q, "purge", entries, dry_run):
        q.discard(entries)
    return 0


def confirmed(entries: list) -> bool:
    """Ask on the terminal before purging every consumer's dead letters; a script must say
    --yes (UsageError, exit 2): a destructive command run unattended does nothing unasked."""
    consumers = sorted({e.consumer for e in entries})
    if not sys.stdin.isatty():
        raise UsageError(
            f"dlq purge without --consumer deletes the dead letters of every consumer ({plural(len(entries))}): "
            "pass --yes to confirm, or --consumer NAME to purge one consumer's"
        )
    if not entries:
        return True
    whose = ", ".join(consumers) if len(consumers) <= 5 else f"{len(consumers)} consumers"
    sys.stderr.write(f"delete {plural(len(entries))} of {whose}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")
