"""evt forget: erase a person's personal fields by destroying their key."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .command import EvtCommand
from .context import Context
from .options import ConfigFile, Db, Format, Keys, ModelSpec
from .output import choose_format, print_table, write_json_lines


def register(app: typer.Typer) -> None:
    app.command(cls=EvtCommand)(forget)


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def forget(
    subject: Annotated[str, typer.Argument(metavar="SUBJECT", help="Whose personal fields to erase: the value of the subject field the model names (a customer id, say).", show_default=False)],
    rebuild_projections: Annotated[bool, typer.Option("--rebuild-projections", help="Rebuild the projections that had read the subject's events.")] = False,
    format: Format = None,
    db: Db = None,
    config: ConfigFile = None,
    keys: Keys = None,
    model: ModelSpec = None,
) -> None:
    """Erase a subject's personal fields: destroy their key.

    The events stay (and the hash chain with them); from now on every reader sees those
    fields as "[forgotten]". The act is recorded in the store (when, the subject's
    SHA-256, how many events), with no personal data. Snapshots of the affected streams
    are dropped, and the projections, reactors, consumers and relays that had read the
    events are named on stderr. Exit 4 when no key was ever made for the subject.
    """
    from ..ops.forget import forget as forget_subject

    fmt = choose_format(format)
    ctx = Context(db, config, model, keys)
    store = ctx.open(write=True)
    try:
        result = forget_subject(store, subject, rebuild=rebuild_projections, config=ctx.config, model=ctx.model(), say=say)
    finally:
        store.close()
    if fmt == "table":
        facts = [{"key": k, "value": ", ".join(v) if isinstance(v, list) else v} for k, v in result.items()]
        print_table(facts, ("key", "value"), title="forgotten")
    else:
        from ..log.envelope import dumps

        write_json_lines([dumps(result)], "ndjson")  # one object, in either JSON format
