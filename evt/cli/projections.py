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
    ModelSpec,
    Since,
    Types,
    Until,
    at_least,
)
from .output import Layout, choose_format, emit

SUMMARY_COLUMNS = Layout(
    "name", "kind", "events", "seconds", "rate", "failures", "checkpoint",
    flex=(), drop=("kind", "seconds", "checkpoint", "rate", "events", "failures"),
)
STATUS_COLUMNS = Layout(
    "name", "kind", "checkpoint", "head", "lag", "deadLetters", "lastRunAt",
    flex=(), drop=("head", "lastRunAt", "checkpoint", "kind", "deadLetters", "lag"),
)


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(replay)
    app.command(cls=EvtCommand)(projections)
    app.command(cls=EvtCommand, no_args_is_help=True)(consume)


def warn(line: str) -> None:
    sys.stderr.write(f"evt: {line}\n")
    sys.stderr.flush()


def replay(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="NAME", help="The projections to replay [default: all].", show_default=False)] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the projections' tables and dead letters, and replay from the start.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stay live: keep applying new events as they are appended, until interrupted.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", callback=at_least(1), help="Commit (tables and checkpoint together) every N events, or every 0.2 s.")] = 1000,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    model: ModelSpec = None,
) -> int:
    """Bring projections up to date; print a summary per projection.

    The summary (name, kind, events, seconds, rate, failures, checkpoint) is one JSON
    object per projection on stdout, or a table on a terminal. Failed events go to the
    dead-letter table (evt dlq) unless a projection stops on errors: it stops at the
    event, the others still run, and evt exits 7.
    """
    from ..processing.projections import configured, runner, select
    from ..processing.runner import follow as follow_runners

    ctx = Context(db, config, model)
    fmt = choose_format(format)
    store = ctx.open()
    chosen = select(configured(ctx.config, ctx.model()), names or [])
    runners, stopped = [], []
    try:
        for projection in chosen:
            run = runner(store, projection, ctx.config, batch_size=batch_size, warn=warn)
            runners.append(run)
            run.start(rebuild=rebuild)
            try:
                with progress_bar(projection.name, store.head(), run.position) as progress:
                    run.progress = progress
                    run.catch_up()
            except HandlerFailed as e:  # this projection stops; the others still run
                warn(str(e))
                stopped.append(run)
            if not follow and fmt == "ndjson":
                emit([run.summary.to_dict()], fmt, SUMMARY_COLUMNS)  # scripts see each as it ends
        if not follow and fmt != "ndjson":  # a table, or one JSON array
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


def projections(
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    model: ModelSpec = None,
) -> None:
    """Where projections and consumers stand: lag, dead letters.

    One object each: name, kind, checkpoint, head, lag, deadLetters, lastRunAt.
    """
    from ..processing.projections import configured, status

    ctx = Context(db, config, model)
    fmt = choose_format(format)
    emit(status(ctx.open(), configured(ctx.config, ctx.model())), fmt, STATUS_COLUMNS)


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

    ctx = Context(db, config, model)
    store = ctx.open()
    if name in configured(ctx.config, ctx.model()):
        raise UsageError(f"{name} is a projection; name the consumer differently")
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
