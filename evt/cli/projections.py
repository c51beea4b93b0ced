"""Commands that run handlers over the log: replay, projections, consume."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..errors import HandlerFailed, UsageError
from .command import EvtCommand
from .context import Context
from .options import (
    Category,
    ConfigFile,
    Correlation,
    Db,
    Format,
    Keys,
    ModelSpec,
    Since,
    Types,
    Until,
    at_least,
)
from .output import Layout, choose_format, emit, print_table

SUMMARY_COLUMNS = Layout(
    "name", "kind", "events", "seconds", "rate", "failures", "checkpoint",
    flex=(), drop=("kind", "seconds", "checkpoint", "rate", "events", "failures"),
)
STATUS_COLUMNS = Layout(
    "name", "kind", "checkpoint", "head", "lag", "deadLetters", "lastRunAt",
    flex=(), drop=("head", "lastRunAt", "checkpoint", "kind", "deadLetters", "lag"),
)


RESET_COLUMNS = Layout(
    "name", "kind", "checkpoint", "to", "head", "again", "skipped", "handled", "deadLetters", "executed",
    flex=(), drop=("executed", "head", "handled", "deadLetters", "kind", "skipped", "again"),
)

projections_app = typer.Typer(
    rich_markup_mode=None,  # help text as written: [brackets] are not markup
    short_help="Where projections and consumers stand: lag, dead letters.",
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(replay)
    app.add_typer(projections_app, name="projections", subcommand_metavar="[COMMAND [ARGS]...]")
    app.command(cls=EvtCommand, no_args_is_help=True)(consume)


def warn(line: str) -> None:
    sys.stderr.write(f"evt: {line}\n")
    sys.stderr.flush()


def replay(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="NAME", help="The projections to replay [default: all].", show_default=False)] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the projections' tables and dead letters, and replay from the start.")] = False,
    shadow: Annotated[bool, typer.Option("--shadow", help="With --rebuild: build into shadow tables beside the live ones, then swap them in, in one short transaction; readers never see a table empty or half built.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="With --shadow or --swap: also print the rows that differ (by primary key, else whole rows).")] = False,
    no_swap: Annotated[bool, typer.Option("--no-swap", help="With --shadow: keep the shadow for inspection, not swapped in.")] = False,
    swap: Annotated[bool, typer.Option("--swap", help="Swap in the shadow --no-swap kept, caught up first.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stay live: keep applying new events as they are appended, until interrupted.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", callback=at_least(1), help="Commit (tables and checkpoint together) every N events, or every 0.2 s.")] = 1000,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Bring projections up to date; print a summary per projection.

    The summary (name, kind, events, seconds, rate, failures, checkpoint) is one JSON
    object per projection on stdout, or a table on a terminal. Failed events go to the
    dead-letter table (evt dlq) unless a projection stops on errors: it stops at the
    event, the others still run, and evt exits 7. Reactors run first, so projections
    see what they append.

    --rebuild --shadow rebuilds without downtime: before the swap it prints, per table,
    the rows before and after (projection, table, before, after), and with --diff each
    row that differs (change, key, before, after).
    """
    from ..processing.projections import configured, runner, select
    from ..processing.runner import follow as follow_runners

    check_shadow_options(rebuild, shadow, diff, no_swap, swap, follow)
    ctx = Context(db, config, model, keys)
    fmt = choose_format(format)
    store = ctx.open()
    chosen = select(configured(ctx.config, ctx.model()), names or [])
    if rebuild or swap:
        for reactor in (p for p in chosen if p.kind == "reactor" and p.name in (names or [])):
            raise UsageError(
                f"reactor {reactor.name} has nothing to rebuild (what it appended stays in the log); "
                f"to react again from an earlier position: evt projections reset {reactor.name} --to POSITION"
            )
    chosen.sort(key=lambda p: p.kind != "reactor")  # reactors first: projections then see what they append
    runners, stopped, changes = [], [], []

    def report(change: dict) -> None:
        if fmt == "ndjson":
            emit([change], fmt)  # as it comes
        else:
            changes.append(change)

    try:
        for projection in chosen:
            in_shadow = (shadow or swap) and projection.kind != "reactor"
            if in_shadow:
                rebuilding = start_shadow(store, projection, ctx.config, kept=swap, diff=diff, batch_size=batch_size, report=report)
                run = rebuilding.runner
            else:
                run = runner(store, projection, ctx.config, batch_size=batch_size, warn=warn)
                runners.append(run)
                run.start(rebuild=rebuild and projection.kind != "reactor")
            if in_shadow:
                runners.append(run)
            try:
                with progress_bar(projection.name + (" (shadow)" if in_shadow else ""), store.head(), run.position) as progress:
                    run.progress = progress
                    run.catch_up()
                if in_shadow:
                    finish_shadow(rebuilding, keep=no_swap)
            except HandlerFailed as e:  # this projection stops; the others still run
                warn(str(e))
                stopped.append(run)
            if not follow and fmt == "ndjson":
                emit([run.summary.to_dict()], fmt, SUMMARY_COLUMNS)  # scripts see each as it ends
        if not follow and fmt == "json":
            emit(changes + [run.summary.to_dict() for run in runners], fmt)
        elif not follow and fmt == "table":
            print_changes(changes)
            emit([run.summary.to_dict() for run in runners], fmt, SUMMARY_COLUMNS)
        if follow:
            try:
                follow_runners([run for run in runners if run not in stopped], store)
            except KeyboardInterrupt:
                emit([run.summary.to_dict() for run in runners], fmt, SUMMARY_COLUMNS)
                return 130
    finally:
        for run in runners:
            run.target.close()
    return HandlerFailed.exit_code if stopped else 0


def check_shadow_options(rebuild: bool, shadow: bool, diff: bool, no_swap: bool, swap: bool, follow: bool) -> None:
    "UsageError for options of shadow rebuilds that do not go together."
    if shadow and not rebuild:
        raise UsageError("--shadow is a way to rebuild: evt replay NAME --rebuild --shadow")
    if swap and (rebuild or shadow or no_swap):
        raise UsageError("--swap puts a kept shadow in place; it does not go with --rebuild, --shadow or --no-swap")
    if no_swap and not shadow:
        raise UsageError("--no-swap keeps a shadow: evt replay NAME --rebuild --shadow --no-swap")
    if diff and not (shadow or swap):
        raise UsageError("--diff shows what a shadow changes: give it with --rebuild --shadow or --swap")
    if follow and (shadow or swap):
        raise UsageError(
            "--follow does not go with --shadow or --swap: keep the projection's evt replay --follow running beside it "
            "(it goes on from the new tables once they are swapped in), or start one after"
        )


def start_shadow(store, projection, config, *, kept: bool, diff: bool, batch_size: int, report):
    "A projection's new shadow (or the one --no-swap kept), set up and ready to catch up (``.runner``)."
    from ..processing.projections import open_target
    from ..processing.shadows import ShadowRebuild

    target = open_target(store, projection, config)
    try:
        rebuilding = ShadowRebuild(store, target, projection, report=report, warn=warn, batch_size=batch_size, diff=diff)
        if kept:
            rebuilding.kept()
        else:
            rebuilding.new()
    except BaseException:
        target.close()
        raise
    return rebuilding


def finish_shadow(rebuilding, keep: bool) -> None:
    "Report what a caught-up shadow changes, then swap it in (or keep it)."
    name = rebuilding.projection.name
    rebuilding.changes()
    if keep:
        rebuilding.keep()
        tables = ", ".join(rebuilding.names.shadow(t) for t in rebuilding.names.tables)
        say(f"{name}: the shadow is kept for inspection ({tables}); evt replay {name} --swap puts it in place")
        return
    position = rebuilding.swap()
    rebuilding.runner.summary.checkpoint = position
    say(f"{name}: the shadow is in place (checkpoint {position}); the old tables are dropped")


def print_changes(changes: list[dict]) -> None:
    "What shadows change, on a terminal: rows per table, then the rows that differ."
    counts = [c for c in changes if "change" not in c]
    rows = [c for c in changes if "change" in c]
    if counts:
        print_table(counts, Layout("projection", "table", "before", "after", keys=("projection", "table"), flex=()), title="rows before and after")
    if rows:
        print_table(rows, Layout("table", "change", "key", "before", "after", keys=("table", "change"), flex=("before", "after")), title="rows that differ")


class progress_bar:
    "A rich progress bar on stderr when it is a terminal; otherwise nothing at all."

    def __init__(self, name: str, head: int, start: int):
        self.name, self.head, self.start = name, head, start
        self.bar = None

    def __enter__(self):
        if not sys.stderr.isatty() or self.head <= self.start:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from .output import console

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console(stderr=True), transient=True)
        self.bar.start()
        task = self.bar.add_task(self.name, total=self.head - self.start)
        return lambda position: self.bar.update(task, completed=min(position, self.head) - self.start)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


@projections_app.callback(invoke_without_command=True)
def projections(
    context: typer.Context,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Where projections and consumers stand: lag, dead letters.

    One object each — projections, reactors, shell consumers and relays: name, kind,
    checkpoint, head, lag, deadLetters, lastRunAt. 'evt projections reset NAME --to
    POSITION' moves a checkpoint, after a preview.
    """
    from ..processing.projections import configured, status

    if context.invoked_subcommand is not None:
        return
    ctx = Context(db, config, model, keys)
    fmt = choose_format(format)
    emit(status(ctx.open(), configured(ctx.config, ctx.model())), fmt, STATUS_COLUMNS)


@projections_app.command(cls=EvtCommand, no_args_is_help=True)
def reset(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A projection, reactor, shell consumer or relay.", show_default=False)],
    to: Annotated[str, typer.Option("--to", metavar="POSITION|TIME|start|end", help="The new checkpoint: a position, a time (RFC 3339 or an age: 2h, 7d; events from then on are handled again), start or end.", show_default=False)],
    execute: Annotated[bool, typer.Option("--execute", help="Move the checkpoint [default: only show what would change].")] = False,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Move a checkpoint back or forward; a preview unless --execute.

    Prints the current and the new checkpoint and how many events would be handled
    again (back) or skipped (forward): again, skipped, handled (of those, the ones
    its handlers take) and the dead letters a reset back clears (their events are
    handled anew). Nothing changes without --execute. Stop what runs under NAME first.
    """
    from ..processing.projections import configured
    from ..processing.resets import Resetter

    ctx = Context(db, config, model, keys)
    fmt = choose_format(format)
    resetter = Resetter(ctx.open(), configured(ctx.config, ctx.model()), ctx.config)
    done = resetter.execute(name, to) if execute else resetter.plan(name, to)
    warning = done.warning()
    if warning:
        say(f"warning: {warning}")
    if done.executed:
        say(f"reset {name} from position {done.checkpoint} to {done.to}")
    elif done.to == done.checkpoint:
        say(f"{name} is at position {done.to} already: nothing to do")
    else:
        say(f"would reset {name} from position {done.checkpoint} to {done.to} (a preview: nothing changed; --execute does it)")
    emit([done.to_dict()], fmt, RESET_COLUMNS)
    return 0


def consume(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The consumer's name: its position and dead letters are kept under it.", show_default=False)],
    stream: Annotated[Optional[str], typer.Argument(metavar="STREAM", help="Only this stream [default: the whole log].", show_default=False)] = None,
    exec_: Annotated[Optional[str], typer.Option("--exec", metavar="COMMAND", help="The shell command run per event (envelope on stdin) [default: the consumer's last one].", show_default=False)] = None,
    category: Category = None,
    type: Types = None,
    correlation_id: Correlation = None,
    since: Since = None,
    until: Until = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep consuming new events as they are appended, until interrupted.")] = False,
    max_attempts: Annotated[int, typer.Option("--max-attempts", metavar="N", callback=at_least(1), help="Tries per event before giving up on it.")] = 3,
    backoff: Annotated[float, typer.Option("--backoff", metavar="SECONDS", callback=at_least(0), help="Seconds before the second try; doubling after.")] = 0.1,
    on_error: Annotated[str, typer.Option("--on-error", metavar="POLICY", help="After the last try: dlq (dead-letter it, go on), stop (exit 7 before it), park-stream (dead-letter it and the stream's later events).")] = "dlq",
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> int:
    """Run a shell command per event (the envelope on its stdin).

    The command gets the envelope as one JSON line on its stdin; its exit 0
    acknowledges the event. The consumer's position is saved in the store after
    each one, so a restart resumes. At-least-once: use the event's id to make the
    command idempotent. Catches up and exits 0, or keeps going with --follow.
    """
    from ..model.retry import RetryPolicy
    from ..processing.consumers import ExecConsumer, command_of, consumer_runner
    from ..processing.projections import configured
    from ..processing.runner import follow as follow_runners
    from .log import build_filter

    ctx = Context(db, config, model, keys)
    store = ctx.open(write=True)  # a consumer's position is kept in the store
    known = configured(ctx.config, ctx.model())
    if name in known:
        what = "reactor" if known[name].kind == "reactor" else "projection"
        raise UsageError(f"{name} is a {what}; name the consumer differently")
    command = exec_ or command_of(store, name)
    if not command:
        raise UsageError(f"consumer {name} has never run: give the command with --exec 'CMD'")
    policy = RetryPolicy(max_attempts, backoff, on_error)
    consumer = ExecConsumer(name, command, types=type or (), policy=policy)
    filter = build_filter(stream, category, correlation_id=correlation_id, since=since, until=until)
    run = consumer_runner(store, consumer, filter, warn=warn)
    try:
        if follow:
            follow_runners([run], store)
        run.catch_up()
    except KeyboardInterrupt:
        report(run.summary)
        return 130
    report(run.summary)
    return 0


def report(summary) -> None:
    """A consumer's summary, on stderr (stdout belongs to its commands) and only on a
    terminal; not an error, so without the ``evt:`` prefix. ``events`` are those it ran
    its command for (dead-lettered ones included)."""
    if not sys.stderr.isatty():
        return
    line = summary.to_dict()
    say(f"{line['name']}: {line['events']} event{'' if line['events'] == 1 else 's'} in {line['seconds']} s, {line['failures']} dead-lettered")


def say(line: str) -> None:
    "A line of information on stderr: a summary, a count (errors and warnings go through warn)."
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
