"""Shell consumers: a command run once per event, the envelope as one JSON line on stdin.

Exit status 0 acknowledges the event; anything else is a failure, retried with
backoff and then dead-lettered (or, with ``on_error="stop"``, the consumer stops
before it). A consumer's position is kept in the events store and saved after each
event, so a restart resumes after the last acknowledged one: delivery is
at-least-once (an event whose command ran but was not yet acknowledged when evt was
killed runs again), and the event ``id`` is the idempotency key a command should use.

The command runs with ``sh -c``, its stdout passed through, and these variables set:
``EVT_CONSUMER``, ``EVT_POSITION``, ``EVT_EVENT_ID``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Iterable

from ..errors import OutputClosed, UsageError
from ..log.filters import Filter
from ..log.store import Store, row_to_event
from ..model.retry import RetryPolicy
from .deadletters import truncate
from .runner import Runner, Target, describe_exception


class CommandFailed(Exception):
    """A consumer's command exited with a non-zero status.

    Its message is one line: the status and the last line of the command's stderr (where
    the error usually is); ``stderr`` keeps the end of it (``STDERR_LIMIT`` characters).
    """

    def __init__(self, status: str, stderr: str):
        self.status = status
        self.stderr = truncate(stderr)
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        super().__init__(f"command failed with {status}" + (f": {lines[-1]}" if lines else ""))
        self.more = len(lines) > 1

    def detail(self) -> str | None:
        "The status and the end of the command's stderr; None when that is all in the message."
        return f"command failed with {self.status}; its stderr ends:\n{self.stderr}" if self.more else None


class ExecConsumer:
    "A consumer that pipes each event into a shell command."

    kind = "exec"
    writes = False  # runs outside any transaction: appenders never wait for a command

    def __init__(self, name: str, command: str, *, types: Iterable[str] = (), policy: RetryPolicy | None = None):
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise UsageError(f"a consumer name is letters, digits, '-', '_' and '.', not {name!r}")
        self.name = name
        self.command = command
        self.types = tuple(types)
        self.policy = policy or RetryPolicy()
        self.attempt = 0

    def plan(self, type: str) -> list:
        return [self.command]  # ``types`` are matched in the Runner's query, as ``evt read --type`` matches them

    def atomic(self, plan: list) -> bool:
        return True  # the command writes nothing into the target: no savepoint needed

    def setup(self, conn) -> None:
        pass

    def drop(self, conn) -> None:
        pass

    def apply_row(self, conn, plan: list, row: tuple) -> None:
        self.apply_event(conn, plan, row_to_event(row))

    def apply_event(self, conn, plan: list, event) -> None:
        run_command(self.command, event, {"EVT_CONSUMER": self.name})

    def describe(self, error: BaseException) -> str:
        return str(error) if isinstance(error, CommandFailed) else describe_exception(error)

    def detail(self, error: BaseException) -> str | None:
        return error.detail() if isinstance(error, CommandFailed) else None


def run_command(command: str, event, env: dict[str, str]) -> None:
    "Run ``sh -c command`` with the event on stdin; CommandFailed with its stderr unless it exits 0."
    full_env = {**os.environ, **env, "EVT_POSITION": str(event.position), "EVT_EVENT_ID": event.id}
    sys.stdout.flush()
    with survive_unread_stdin():
        proc = subprocess.run(
            ["sh", "-c", command],
            input=(event.to_json() + "\n").encode(),
            stderr=subprocess.PIPE,
            env=full_env,
        )
    stderr = proc.stderr.decode(errors="replace")
    if stderr:
        sys.stderr.write(stderr if stderr.endswith("\n") else stderr + "\n")
        sys.stderr.flush()
    if proc.returncode != 0:
        if stdout_closed():
            raise OutputClosed(f"stdout closed: stopped before position {event.position}")
        status = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        raise CommandFailed(status, stderr)


def stdout_closed() -> bool:
    "True when evt's stdout (which commands inherit) is a pipe whose reader has gone."
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


@contextmanager
def survive_unread_stdin():
    """Ignore SIGPIPE while a command runs, so one that exits without reading its stdin
    (``--exec 'echo "$EVT_EVENT_ID" >> seen'``) is judged by its exit status instead of
    killing evt. The CLI restores SIGPIPE's default for ``evt read | head -1``; the command
    itself still starts with the default (subprocess restores it in the child)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be changed in the main thread, where the CLI runs
        return
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGPIPE, previous)


def consume(
    store: Store,
    consumer: ExecConsumer,
    filter: Filter | None = None,
    *,
    follow: bool = False,
    poll_interval: float = 0.05,
    warn=None,
    sleep=None,
):
    """Run a consumer over the events after its position (then, with ``follow``, forever).

    The position is saved after every event. Returns the run's Summary.
    """
    runner = consumer_runner(store, consumer, filter, warn=warn, sleep=sleep)
    if follow:
        from .runner import follow as follow_runners

        follow_runners([runner], store, poll_interval)
    return runner.catch_up()


def consumer_runner(store: Store, consumer: ExecConsumer, filter: Filter | None = None, *, warn=None, sleep=None) -> Runner:
    "A started runner for a consumer (``catch_up`` or ``runner.follow`` it; its ``summary`` tells what it did)."
    options = {"warn": warn} if sleep is None else {"warn": warn, "sleep": sleep}
    runner = Runner(store, Target(store), consumer, filter=filter, batch_size=1, **options)
    runner.start()
    return runner


def command_of(store: Store, name: str) -> str | None:
    "The command a consumer last ran with (what ``evt dlq retry`` runs)."
    row = store.conn.execute("SELECT command FROM evt_checkpoints WHERE name = ? AND kind = 'exec'", (name,)).fetchone()
    return row[0] if row else None


def positions(store: Store) -> list[tuple[str, str]]:
    "(name, kind) of every shell consumer and relay that keeps its position in this store."
    return store.conn.execute(
        "SELECT name, kind FROM evt_checkpoints WHERE kind IN ('exec', 'relay', 'reactor') ORDER BY name"
    ).fetchall()
