"""evt backup: a consistent, verified copy of the store while writers keep appending."""

from __future__ import annotations

from typing import Annotated

import typer

from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format
from .output import Layout, choose_format, emit

COLUMNS = Layout("path", "head", "headHash", "events", "bytes", "seconds", "verified", keys=("path",), flex=("headHash",))


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(backup)


def backup(
    dest: Annotated[str, typer.Argument(metavar="DEST", help="The backup file to write (a new file: never overwritten).", show_default=False)],
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
) -> None:
    """Back the store up into DEST: a consistent copy, verified.

    Writers keep appending meanwhile. The copy is one snapshot of the log (appends made meanwhile are not in it), written
    beside DEST and given its name only once verified and synced. An existing DEST is
    exit 3. Prints path, head, headHash, events, bytes, seconds and verified.
    """
    from ..ops.backup import backup as take_backup

    fmt = choose_format(format)
    store = Context(db, config).open(with_model=False)
    try:
        result = take_backup(store, dest)
    finally:
        store.close()
    emit([result], fmt, COLUMNS)
