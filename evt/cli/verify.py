"""evt verify: the hash chain, positions, revisions, append-only triggers and file of the store."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, at_least
from .output import choose_format, print_table, write_json_lines


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand, short_help="Prove the log is as appended: its hash chain, checked.")(verify)


def verify(
    from_position: Annotated[Optional[int], typer.Option("--from", metavar="N", callback=at_least(1), help="Verify from this position on (chained to the stored hash before it).", show_default=False)] = None,
    expect_head: Annotated[Optional[str], typer.Option("--expect-head", metavar="HASH", help="A headHash an earlier verify printed: fail unless an event still has exactly that hash (nothing before it was rewritten).", show_default=False)] = None,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
) -> None:
    """Prove the log is what evt appended: every event's hash chains to the one before.

    Stops at the first position where the chain, the positions (gapless), a stream's
    revisions, the append-only triggers or SQLite's integrity check break: one line on
    stderr, exit 8. A clean log prints its head and headHash; keep that hash elsewhere
    and pass it to --expect-head later. Read-only: never writes to the store.
    """
    from ..ops.verify import parse_hash
    from ..ops.verify import verify as verify_store

    fmt = choose_format(format)
    expected = None if expect_head is None else parse_hash(expect_head)
    ctx = Context(db, config)
    report = verify_store(ctx.db_path, from_position=from_position or 1, expect_head=expected).check()
    summary = report.to_dict()
    if fmt != "table":
        write_json_lines([_dumps(summary)], "ndjson")  # one object, in either JSON format
        return
    print_table(({"key": k, "value": v} for k, v in summary.items()), ("key", "value"), title="verified")


def _dumps(value) -> str:
    from ..log.envelope import dumps

    return dumps(value)
